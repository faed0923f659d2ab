"""The ARW verifier recipe's results file: every run's figures, means over seeds, relative changes against
the baseline beside the paper's, and resemblyzer's pretrained encoder on the same trials.

    python -m fairspeech.verification.results runs/arw_verifier --config recipes/arw_verifier/config.toml \
        --started EPOCH_SECONDS --out benchmarks/results/arw_verifier.json

Runs are found as ``RUNS/<variant>-s<seed>/eval.json`` for variants ``baseline``, ``arw-sum``, ``arw-pair``.
Relative improvement = (baseline - variant) / baseline on the seed means (positive: the variant is better).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

from fairspeech.utils import io

VARIANTS = ("baseline", "arw-sum", "arw-pair")
# Jin et al.'s relative improvements of ARW over their baseline (overall EER, gender EER gap, spread across nationalities).
PAPER = {"overall_eer": 0.077, "gender_gap": 0.17, "group_spread": 0.095}


def run_figures(report: dict, spread_attribute: str = "voice_family", gap_attribute: str = "gender") -> dict:
    o = report["overall"]
    gap, spread = report["fairness"][gap_attribute], report["fairness"][spread_attribute]
    figures = {
        "overall_eer": o["eer"], "overall_eer_interval": [o["eer_low"], o["eer_high"]],
        "min_dcf": o["min_dcf"], "min_dcf_interval": [o["min_dcf_low"], o["min_dcf_high"]],
        "gender_gap": gap["gap"], "gender_gap_interval": [gap["gap_low"], gap["gap_high"]],
        "group_spread": spread["std"], "group_spread_interval": [spread["std_low"], spread["std_high"]],
    }
    for attribute, groups in report["groups"].items():
        for group, entry in groups.items():
            figures[f"eer[{attribute}={group}]"] = entry["eer"]
    return figures


def summarize(runs_dir: str | Path, reference: dict | None = None) -> dict:
    runs_dir = Path(runs_dir)
    per_run: dict[str, dict[int, dict]] = {v: {} for v in VARIANTS}
    for path in sorted(runs_dir.glob("*/eval.json")):
        match = re.fullmatch(r"(baseline|arw-sum|arw-pair)-s(\d+)", path.parent.name)
        if not match:
            continue
        report = json.loads(path.read_text())
        train = json.loads((path.parent / "train_summary.json").read_text())
        per_run[match.group(1)][int(match.group(2))] = run_figures(report) | {
            "train_minutes": train["train_minutes"], "steps": train["steps"], "pretrained_from": train.get("pretrained_from")}
    if not per_run["baseline"]:
        raise FileNotFoundError(f"{runs_dir}: no baseline-s<seed>/eval.json")
    out = {"variants": {}, "relative_improvement_vs_baseline": {}, "paper_relative_improvement": PAPER}
    for variant, seeds in per_run.items():
        if not seeds:
            continue
        keys = [k for k, v in next(iter(seeds.values())).items() if isinstance(v, float) and k != "train_minutes"]
        out["variants"][variant] = {
            "seeds": sorted(seeds),
            "mean": {k: float(np.mean([seeds[s][k] for s in seeds])) for k in keys},
            "std_over_seeds": {k: float(np.std([seeds[s][k] for s in seeds], ddof=1)) if len(seeds) > 1 else None for k in keys},
            "per_seed": {str(s): seeds[s] for s in sorted(seeds)},
        }
    base = out["variants"]["baseline"]["mean"]
    for variant in VARIANTS[1:]:
        if variant not in out["variants"]:
            continue
        mean = out["variants"][variant]["mean"]
        shared = sorted(set(per_run[variant]) & set(per_run["baseline"]))
        out["relative_improvement_vs_baseline"][variant] = {
            k: {"of_means": (base[k] - mean[k]) / base[k],
                "per_seed": {str(s): (per_run["baseline"][s][k] - per_run[variant][s][k]) / per_run["baseline"][s][k] for s in shared}}
            for k in ("overall_eer", "min_dcf", "gender_gap", "group_spread")
        }
    if reference is not None:
        out["resemblyzer_reference"] = run_figures(reference)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Summarize the ARW verifier recipe's runs into one JSON.")
    parser.add_argument("runs", help="the recipe's runs directory")
    parser.add_argument("--config", required=True, help="the recipe config (for resemblyzer's reference on the same trials)")
    parser.add_argument("--started", type=float, default=None, help="recipe start (epoch seconds) for the wall time")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    from fairspeech.verification.evaluate import evaluate_reference
    from fairspeech.verification.train import load_config

    config = load_config(args.config)
    reference = evaluate_reference(config)
    result = {"recipe": "recipes/arw_verifier", "config": config.to_dict(), "trials": reference["trials"]} | summarize(args.runs, reference)
    result["groups"] = {"gap": "gender", "spread": "voice_family (std of per-family EER)"}
    if args.started is not None:
        result["wall_minutes"] = (time.time() - args.started) / 60
    io.write_json(args.out, result)
    print(json.dumps({v: result["variants"][v]["mean"] for v in result["variants"]}, indent=1))
    print(json.dumps(result["relative_improvement_vs_baseline"], indent=1))


if __name__ == "__main__":
    main()
