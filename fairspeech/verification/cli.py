"""``fairspeech train-verifier``: train a speaker verifier (baseline or ARW) and evaluate it on held-out speakers.

    fairspeech train-verifier --config recipes/arw_verifier/config.toml --seed 0 --out runs/arw_verifier/baseline-s0
    fairspeech train-verifier --config ... --arw --pair-weight sum --init-pretrained runs/arw_verifier/baseline-s0 --out ...

Writes ``OUT/model.safetensors`` (+ .json), ``OUT/train_summary.json`` and ``OUT/eval.json`` (EER, minDCF
per group, fairness figures with speaker-bootstrap intervals). Rerunning resumes training from the newest
checkpoint, and skips the evaluation when ``eval.json`` already belongs to the current model file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

DEFAULT_CONFIG = "recipes/arw_verifier/config.toml"


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("train-verifier", help="train a speaker verifier (optionally with adversarial reweighting) and report per-group EER")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="recipe TOML, or 'none' for the defaults (default: %(default)s)")
    parser.add_argument("--arw", action="store_true", help="adversarial reweighting after the pretraining steps")
    parser.add_argument("--pair-weight", choices=["sum", "pair"], default=None, help="ARW pair weights: sum of sample weights, or a pair adversary (default: the config's)")
    parser.add_argument("--seed", type=int, default=None, help="training seed (default: the config's train.seed)")
    parser.add_argument("--out", required=True, help="run directory (checkpoints, model, eval.json); rerun to resume")
    parser.add_argument("--init-pretrained", default=None, help="a baseline run directory of the same seed and settings: start ARW from its pretraining checkpoint")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value (repeatable)")
    parser.add_argument("--skip-eval", action="store_true", help="train only")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(handler=run)
    return parser


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def run(args: argparse.Namespace) -> int:
    from fairspeech.utils import distributed, io
    from fairspeech.verification.evaluate import evaluate_model
    from fairspeech.verification.train import load_config, train

    overrides = list(args.set)
    if args.arw:
        overrides.append("arw.enabled=true")
    if args.pair_weight:
        overrides.append(f'arw.pair_weight="{args.pair_weight}"')
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    if args.init_pretrained:
        overrides.append(f'train.init_pretrained="{args.init_pretrained}"')
    if args.no_progress:
        overrides.append("train.progress=false")
    config = load_config(None if args.config == "none" else args.config, overrides)
    out = Path(args.out)
    summary = train(config, out)
    print(f"{summary['stopped']}: {summary['steps']} steps, {summary['train_minutes']:.1f} min")
    if args.skip_eval or not distributed.is_main():
        return 0
    model_path = out / "model.safetensors"
    eval_path = out / "eval.json"
    sha = _sha(model_path)
    if eval_path.exists() and json.loads(eval_path.read_text()).get("model_sha") == sha:
        report = json.loads(eval_path.read_text())
    else:
        report = evaluate_model(model_path) | {"model_sha": sha}
        io.write_json(eval_path, report)
    o = report["overall"]
    print(f"EER {_pct(o['eer'])}% [{_pct(o['eer_low'])}, {_pct(o['eer_high'])}], minDCF {o['min_dcf']:.3f} "
          f"on {report['trials']['trials']} trials ({report['trials']['target']} target)")
    for attribute, fair in report["fairness"].items():
        groups = ", ".join(f"{g} {_pct(report['groups'][attribute][g]['eer'])}%" for g in fair["groups"])
        print(f"  {attribute}: {groups}; gap {_pct(fair['gap'])} pts, std {_pct(fair['std'])} pts")
    print(f"wrote {eval_path}")
    return 0


def main(argv=None) -> int:
    from fairspeech.errors import cli_status

    parser = argparse.ArgumentParser(prog="fairspeech")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return cli_status(args.handler, args)


if __name__ == "__main__":
    raise SystemExit(main())
