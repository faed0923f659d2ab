"""The learning curve of recipes/asr_baseline/learning_curve.sh: test and unseen-voice WER against training
hours, one point per corpus share plus the full corpus (benchmarks/results/asr_baseline.json), a
power-law fit WER = a * hours^-b on the test points (least squares in log-log), the hours that fit puts
at 20% and 10% WER, and a PNG beside the JSON.

    python recipes/asr_baseline/local/learning_curve.py runs/asr_learning_curve \
        --full benchmarks/results/asr_baseline.json --out benchmarks/results/asr_learning_curve.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from fairspeech.asr.results import baseline_results, machine
from fairspeech.utils.io import atomic_path, write_json

TARGETS = (0.20, 0.10)
SPLITS = ("test", "unseen")


def point(label: str, result: dict) -> dict:
    """One curve point from an asr_baseline-shaped result (baseline_results or the committed JSON)."""
    train = result["train"]
    return {
        "corpus": label,
        "train_audio_hours": round(train["train_audio_hours"], 3), "train_utterances": train["train_utterances"],
        "epochs": train["epochs_completed"], "steps": train["steps"], "train_minutes": round(train["train_minutes"], 1),
        "dev_by_epoch": [{k: d[k] for k in ("epoch", "step", "wer")} for d in train["dev_by_epoch"]],
        **{split: {"wer": result["splits"][split]["wer"], "interval": result["splits"][split]["wer_interval"],
                   "speakers": result["splits"][split]["speakers"],
                   "by_voice_family": {c: v["wer"] for c, v in result["splits"][split]["by"].get("voice_family", {}).items()}}
           for split in SPLITS if split in result["splits"]},
    }


def power_law(hours: list[float], wers: list[float]) -> dict:
    """WER = a * hours^-b fitted in log-log; the hours it puts at each target (None where b <= 0)."""
    slope, intercept = np.polyfit(np.log(hours), np.log(wers), 1)
    a, b = math.exp(intercept), -slope
    residual = np.log(wers) - (intercept + slope * np.log(hours))
    return {"a": a, "b": b, "rms_log_residual": float(np.sqrt(np.mean(residual ** 2))),
            "hours_for_wer": {f"{t:.2f}": (a / t) ** (1 / b) if b > 0 else None for t in TARGETS}}


def plot(points: list[dict], fit: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    hours = [p["train_audio_hours"] for p in points]
    for split, marker in zip(SPLITS, "os"):
        ys = [100 * p[split]["wer"] for p in points]
        err = [[y - 100 * p[split]["interval"][0] for y, p in zip(ys, points)],
               [100 * p[split]["interval"][1] - y for y, p in zip(ys, points)]]
        ax.errorbar(hours, ys, yerr=err, fmt=marker + "-", capsize=3, label=f"{split} (speaker-bootstrap 95%)")
    grid = np.geomspace(min(hours), max(max(hours), fit["hours_for_wer"]["0.20"] or 0) * 1.05, 50)
    ax.plot(grid, 100 * fit["a"] * grid ** -fit["b"], ":", color="gray", label=f"test fit: {fit['a']:.2f} h^-{fit['b']:.3f}")
    ax.axhline(20, color="red", lw=0.8, ls="--", label="target 20%")
    ax.set_xscale("log")
    ax.set_xlabel("training audio (hours), 10 epochs each")
    ax.set_ylabel("WER (%), greedy")
    ax.set_title("fairspeech recognizer: WER against training hours")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path, help="folder with one share*/exp per corpus share")
    parser.add_argument("--full", type=Path, help="the full corpus's asr_baseline.json, the curve's last point")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    points = [point(d.name, baseline_results(d / "exp")) for d in sorted(args.root.glob("share*"))
              if (d / "exp" / "eval" / "eval.json").exists()]
    if args.full:
        points.append(point("full", json.loads(args.full.read_text(encoding="utf-8"))))
    points.sort(key=lambda p: p["train_audio_hours"])
    if len(points) < 3:
        raise SystemExit(f"{len(points)} curve points under {args.root}: at least 3 are needed for a fit")
    fit = power_law([p["train_audio_hours"] for p in points], [p["test"]["wer"] for p in points])
    write_json(args.out, {"benchmark": "asr_learning_curve", "machine": machine(), "points": points, "test_fit": fit})
    plot(points, fit, args.out.with_suffix(".png"))
    print(json.dumps({"points": [(p["corpus"], p["train_audio_hours"], round(100 * p["test"]["wer"], 1)) for p in points],
                      "test_fit": fit}, indent=1))


if __name__ == "__main__":
    main()
