"""Benchmark JSON for the ASR recipes, assembled from experiment folders (nothing is re-measured here).

    python -m fairspeech.asr.results baseline exp/asr_baseline --out benchmarks/results/asr_baseline.json
    python -m fairspeech.asr.results amortized --reference exp/asr_baseline/eval --variant branched=exp/asr_branched/eval \\
        --variant slow_only=exp/asr_branched/eval_slow ... --train exp/asr_branched --out benchmarks/results/asr_amortized.json
    python -m fairspeech.asr.results sweep --reference exp/asr_baseline/eval --variant w0.05=exp/gated_0.05/eval ... \\
        --plot exp/gating_sweep.png --out benchmarks/results/asr_block_gating.json
    python -m fairspeech.asr.results costs --variant baseline=exp/asr_baseline/eval --model baseline=exp/asr_baseline/model.safetensors \\
        ... --out benchmarks/results/asr_costs.csv     # per-cohort WER x estimated cost on every shipped profile

Each experiment folder holds ``train_summary.json`` (from training) and ``eval/eval.json`` (from
evaluation); comparisons are made against a reference evaluation (the slow-encoder-only model).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import pandas as pd

from fairspeech.utils import io


def load_eval(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def machine() -> dict:
    return {"cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(), "platform": platform.platform(),
            "torch": __import__("torch").__version__}


def cohort_wers(split_eval: dict) -> dict:
    """{attribute: {cohort: WER}} from one split's evaluation."""
    return {attr: {c: v["wer"] for c, v in table["cohorts"].items()} for attr, table in split_eval["by"].items()}


def split_view(split_eval: dict) -> dict:
    """The compact per-split record: WER with its interval, cohort WERs with intervals, efficiency, routing."""
    keep = {k: split_eval[k] for k in ("efficiency", "routing_rate", "routing_by_cohort", "flops_per_frame_by_cohort", "latency_ms_by_cohort") if k in split_eval}
    out = {
        "wer": split_eval["overall"]["wer"], "wer_interval": [split_eval["overall"]["wer_low"], split_eval["overall"]["wer_high"]],
        "utterances": split_eval["overall"]["utterances"], "speakers": split_eval["overall"]["speakers"],
        "by": {attr: {c: {"wer": v["wer"], "interval": [v["wer_low"], v["wer_high"]], "speakers": v["speakers"]} for c, v in t["cohorts"].items()}
               for attr, t in split_eval["by"].items()},
        **keep,
    }
    if "prior_recognizer" in split_eval:  # the corpus's own hypotheses: pocketsphinx's on the demo corpus
        prior = split_eval["prior_recognizer"]
        out["prior_recognizer"] = {"wer": prior["overall"]["wer"], "by": cohort_wers(prior)}
    return out


def cohort_cost(reference: dict, variant: dict) -> dict:
    """Per attribute: WER change of every cohort, and whether the reference's worst cohort lost more than the rest.

    ``worst_cohort_extra_loss`` = the worst cohort's absolute WER increase minus the mean increase of
    the other cohorts (positive: compute savings cost the worst-served speakers more).
    """
    out = {}
    ref, var = cohort_wers(reference), cohort_wers(variant)
    for attr, cohorts in ref.items():
        shared = [c for c in cohorts if c in var.get(attr, {}) and cohorts[c] is not None and var[attr][c] is not None]
        if len(shared) < 2:
            continue
        delta = {c: var[attr][c] - cohorts[c] for c in shared}
        worst = max(shared, key=lambda c: cohorts[c])
        others = [delta[c] for c in shared if c != worst]
        extra = delta[worst] - sum(others) / len(others)
        out[attr] = {"wer_change": delta, "worst_cohort": worst, "worst_cohort_change": delta[worst],
                     "others_mean_change": sum(others) / len(others), "worst_cohort_extra_loss": extra}
    return out


def comparison(reference: dict, variant: dict) -> dict:
    """Compute reduction and relative WER increase of ``variant`` against ``reference`` (one split each)."""
    out = {"relative_wer_increase": variant["overall"]["wer"] / reference["overall"]["wer"] - 1 if reference["overall"]["wer"] else None}
    if "efficiency" in reference and "efficiency" in variant:
        out["compute_reduction"] = 1 - variant["efficiency"]["flops_per_frame"] / reference["efficiency"]["flops_per_frame"]
    out["cohorts"] = cohort_cost(reference, variant)
    return out


def baseline_results(exp_dir: Path) -> dict:
    train = load_eval(exp_dir / "train_summary.json")
    evaluation = load_eval(exp_dir / "eval" / "eval.json")
    config = load_eval(exp_dir / "model.json")["config"]
    return {
        "benchmark": "asr_baseline",
        "machine": machine(),
        "model": {"kind": config["kind"], **config["model"], "tokenizer": config["data"]["tokenizer"], "parameters": train["parameters"]},
        "train": {k: train[k] for k in ("stopped", "steps", "epochs_completed", "train_minutes", "threads", "train_utterances",
                                        "train_utterances_infeasible_for_ctc", "train_audio_hours", "dev_by_epoch")},
        "decode": next(iter(evaluation.values()))["decode"],
        "splits": {split: split_view(e) for split, e in evaluation.items()},
        **({"beam_search": {split: {"wer": e["overall"]["wer"], "by": cohort_wers(e)} for split, e in load_eval(beam).items()}}
           if (beam := exp_dir / "eval_beam" / "eval.json").exists() else {}),
    }


def variants_results(name: str, reference_dir: Path, variants: dict[str, Path], train_dirs: dict[str, Path]) -> dict:
    reference = load_eval(reference_dir / "eval.json")
    out = {"benchmark": name, "machine": machine(), "reference": {"eval": str(reference_dir), "splits": {s: split_view(e) for s, e in reference.items()}}, "variants": {}}
    for label, eval_dir in variants.items():
        evaluation = load_eval(eval_dir / "eval.json")
        record = {"eval": str(eval_dir), "splits": {}}
        for split, e in evaluation.items():
            record["splits"][split] = {**split_view(e), "vs_reference": comparison(reference[split], e) if split in reference else None}
        if label in train_dirs:
            train = load_eval(train_dirs[label] / "train_summary.json")
            record["train"] = {k: train.get(k) for k in ("stopped", "steps", "epochs_completed", "train_minutes", "parameters", "init")}
            record["train"]["last_log"] = train["log"][-1] if train.get("log") else None
        out["variants"][label] = record
    return out


def plot_sweep(results: dict, split: str, path: Path, sweep_prefix: str = "w") -> None:
    """WER against compute per frame: the sweep's variants (labels starting with ``sweep_prefix``) as a
    line, the reference and any other variant as labelled markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def point(split_record: dict) -> tuple[float, float]:
        return split_record["efficiency"]["flops_per_frame"] / 1e6, 100 * split_record["wer"]

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    sweep = sorted((point(v["splits"][split]), label) for label, v in results["variants"].items()
                   if label.startswith(sweep_prefix) and "efficiency" in v["splits"][split])
    ax.plot([p[0][0] for p in sweep], [p[0][1] for p in sweep], "o-", label="block gating (compute weight)")
    others = [(point(results["reference"]["splits"][split]), "reference")] + [
        (point(v["splits"][split]), label) for label, v in results["variants"].items()
        if not label.startswith(sweep_prefix) and "efficiency" in v["splits"][split]]
    for (x, y), label in sweep:
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for i, ((x, y), label) in enumerate(others):  # ungated points sit close together: labels stacked to their left
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(-6, 8 - 11 * i), fontsize=8, ha="right")
    ax.plot([p[0][0] for p in others], [p[0][1] for p in others], "s", color="black", label="ungated")
    ax.set_xlabel("MFLOPs per 40 ms encoder frame (torch FLOP counter)")
    ax.set_ylabel(f"{split} WER (%)")
    ax.set_title("Block gating: WER against compute")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _pairs(items: list[str]) -> dict[str, Path]:
    return {label: Path(path) for label, _, path in (item.partition("=") for item in items)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Assemble ASR benchmark JSON from experiment folders.")
    sub = parser.add_subparsers(dest="command", required=True)
    base = sub.add_parser("baseline")
    base.add_argument("exp_dir")
    base.add_argument("--out", required=True)
    for name in ("amortized", "sweep"):
        p = sub.add_parser(name)
        p.add_argument("--reference", required=True, help="eval folder of the reference (slow-encoder-only) model")
        p.add_argument("--variant", action="append", default=[], metavar="LABEL=EVAL_DIR")
        p.add_argument("--train", action="append", default=[], metavar="LABEL=EXP_DIR", help="experiment folder whose train summary to include")
        p.add_argument("--plot", default=None, help="PNG of WER against compute (sweep)")
        p.add_argument("--plot-split", default="test")
        p.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.command == "baseline":
        results = baseline_results(Path(args.exp_dir))
    else:
        results = variants_results(f"asr_{args.command}", Path(args.reference), _pairs(args.variant), _pairs(args.train))
        if args.plot:
            plot_sweep(results, args.plot_split, Path(args.plot))
            results["plot"] = args.plot
    io.write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
