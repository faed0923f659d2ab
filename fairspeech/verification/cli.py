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
    parser.add_argument("--compatible-with", metavar="OLD_MODEL", default=None,
                        help="an earlier run's model.safetensors: train through its frozen classifier (backward-compatible, BCT) "
                             "so new queries score against its gallery; then compare with it (OUT/update.json)")
    parser.add_argument("--compare-with", metavar="OLD_MODEL", default=None,
                        help="compare the trained model with this earlier one (old-old, new-new, new-old EER, negative flips, gate) in OUT/update.json")
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
    if args.compatible_with:
        overrides.append(f'compat.old_model="{args.compatible_with}"')
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
    old_model = args.compare_with or config.compat.old_model
    if old_model:
        _compare(Path(old_model), model_path, out / "update.json", sha)
    return 0


def _compare(old_model: Path, model_path: Path, path: Path, sha: str) -> None:
    from fairspeech.utils import io
    from fairspeech.verification.compat import compare_models

    key = {"model_sha": sha, "old_model_sha": _sha(old_model)}
    if path.exists() and {k: json.loads(path.read_text()).get(k) for k in key} == key:
        report = json.loads(path.read_text())
    else:
        report = compare_models(old_model, model_path) | key
        io.write_json(path, report)
    eers = ", ".join(f"{name} {_pct(report['systems'][name]['overall']['eer'])}%" for name in report["systems"])
    print(f"against {old_model}: EER {eers}; compatible (new-old below old-old): {report['compatible']}")
    for name, update in report["updates"].items():
        row = update["rows"][0]
        print(f"  {name} vs old-old: negative flips {_pct(row['negative_flip_rate'])}% [{_pct(row['negative_flip_rate_low'])}, "
              f"{_pct(row['negative_flip_rate_high'])}], gate {'FLAGGED' if report['gate'][name]['flagged'] else 'passed'}")
    print(f"wrote {path}")


def main(argv=None) -> int:
    from fairspeech.errors import cli_status

    parser = argparse.ArgumentParser(prog="fairspeech")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return cli_status(args.handler, args)


if __name__ == "__main__":
    raise SystemExit(main())
