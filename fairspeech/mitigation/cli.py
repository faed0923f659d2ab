"""``fairspeech finetune``: fine-tune a recognizer for its worst cohorts.

* ``--model hf:PATH|fairspeech:PATH --manifest M --target QUERY --out DIR``: the user's model, EWC
  (:mod:`fairspeech.mitigation.user_finetune`), every cohort before and after;
* ``--recipe ewc --config ...``: the comparison of mitigations on fairspeech's own recognizer
  (none, fine-tuning, replay, EWC, EWC plus focal distillation; :mod:`fairspeech.mitigation.finetune`).
"""

from __future__ import annotations

import argparse

RECIPES = ("ewc",)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("finetune", help="fine-tune an ASR model for its worst cohorts (EWC, replay, distillation) and measure negative flips")
    parser.add_argument("--recipe", choices=RECIPES, default="ewc", help="mitigation recipe (default: %(default)s)")
    parser.add_argument("--config", default=None, help="recipe TOML, e.g. recipes/ewc_finetune/config.toml (default: built-in defaults)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting, e.g. lambdas=[1,10] or train.epochs=2 (repeatable)")
    parser.add_argument("--seed", type=int, default=None, help="seed for cohorts, Fisher sample, replay and training (default: the config's seed)")
    parser.add_argument("--variants", default=None, help="comma-separated subset of none,finetune,replay,ewc_<lambda>,ewc_distill")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    mine = parser.add_argument_group("your own model (instead of --recipe)")
    mine.add_argument("--model", default=None, help="hf:PATH (a transformers *ForCTC or Whisper folder) or fairspeech:PATH (model.safetensors)")
    mine.add_argument("--manifest", default=None, help="training manifest with audio_path, reference, speaker_id")
    mine.add_argument("--target", default=None, help="pandas query picking the rows to adapt to, e.g. \"accent == 'scottish'\"")
    mine.add_argument("--eval-manifest", default=None, help="manifest decoded before and after (default: --manifest)")
    mine.add_argument("--by", default="", help="comma-separated cohort attributes of the before/after report")
    mine.add_argument("--audio-dir", default=None, help="folder relative audio paths are under (default: beside the manifest)")
    mine.add_argument("--out", default=None, help="output folder: model, hypotheses before/after, finetune_report.json")
    mine.add_argument("--lambda", dest="lam", type=float, default=100.0, help="EWC strength (default: %(default)s)")
    mine.add_argument("--epochs", type=int, default=3, help="epochs over the target rows (default: %(default)s)")
    mine.add_argument("--lr", type=float, default=1e-5, help="peak learning rate (default: %(default)s)")
    mine.add_argument("--fisher-samples", type=int, default=500, help="population utterances for the Fisher (default: %(default)s)")
    mine.add_argument("--device", default=None, help="cpu, cuda, ... (default: where the model loads)")
    parser.set_defaults(handler=run)
    return parser


def run(args) -> int:
    if args.model is not None:
        return run_user_model(args)
    from fairspeech.mitigation.finetune import load_settings, run_comparison

    overrides = list(args.set)
    if args.variants:
        overrides.append("variants=[" + ",".join(f'"{v.strip()}"' for v in args.variants.split(",")) + "]")
    if args.no_progress:
        overrides.append("progress=false")
    settings = load_settings(args.config, overrides, seed=args.seed)
    report = run_comparison(settings)
    print(f"wrote {settings.result} ({report['wall_minutes']:.1f} min)")
    return 0


def run_user_model(args) -> int:
    from fairspeech.errors import InputError
    from fairspeech.mitigation.user_finetune import finetune_model

    missing = [flag for flag, value in (("--manifest", args.manifest), ("--target", args.target), ("--out", args.out)) if not value]
    if missing:
        raise InputError(f"--model needs {', '.join(missing)}")
    report = finetune_model(args.model, args.manifest, args.target, args.out, args.eval_manifest, [b.strip() for b in args.by.split(",") if b.strip()],
                            args.audio_dir, args.lam, args.epochs, args.lr, args.fisher_samples, args.seed if args.seed is not None else 0,
                            args.device, progress=not args.no_progress)
    o = report["overall"]
    print(f"WER {100 * o['old_wer']:.2f}% -> {100 * o['new_wer']:.2f}%, negative flips {100 * o['negative_flip_rate']:.2f}% "
          f"of utterances; wrote {args.out}/finetune_report.json and the model to {report['saved']}")
    return 0


def main(argv=None) -> int:
    from fairspeech.errors import cli_status

    parser = argparse.ArgumentParser(prog="fairspeech")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["finetune", *(argv if argv is not None else __import__("sys").argv[1:])])
    return cli_status(args.handler, args)


if __name__ == "__main__":
    raise SystemExit(main())
