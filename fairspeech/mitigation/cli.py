"""``fairspeech finetune --model hf:PATH|fairspeech:PATH --manifest M --target QUERY --out DIR``: EWC
fine-tuning of the user's recognizer for its worst cohorts (:mod:`fairspeech.mitigation.user_finetune`), every
cohort before and after.

The comparison of mitigations on fairspeech's own recognizer (none, fine-tuning, replay, EWC, EWC plus
focal distillation) is a recipe: ``recipes/ewc_finetune/run.sh`` (``local/compare.py``).
"""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("finetune", help="fine-tune an ASR model for its worst cohorts (EWC, replay, distillation) and measure negative flips")
    parser.add_argument("--seed", type=int, default=None, help="seed for the Fisher sample and training (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    mine = parser.add_argument_group("your model and data")
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
    from fairspeech.errors import InputError
    from fairspeech.mitigation.user_finetune import finetune_model

    missing = [flag for flag, value in (("--model", args.model), ("--manifest", args.manifest), ("--target", args.target), ("--out", args.out))
               if not value]
    if missing:
        raise InputError(f"finetune needs {', '.join(missing)} (the EWC comparison on fairspeech's own recognizer is recipes/ewc_finetune/run.sh)")
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
