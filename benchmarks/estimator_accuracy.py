"""How well the learned estimator predicts whole-model latency on this CPU, on architectures it never saw.

    python benchmarks/estimator_accuracy.py              # evaluate on the stored measurements
    python benchmarks/estimator_accuracy.py --measure    # re-measure first (python -m fairspeech.hardware.calibrate)

The estimator is fitted on the operator table (the sweep and the in-context operators of the
*fitting* architectures) and composed on the fitting architectures' whole-model timings only. The
*validation* architectures are a disjoint seeded draw of the same space (other widths, depths,
kernel sizes, head counts, input lengths), measured whole, alternately with the fitting ones; they
are decomposed here only to be predicted. The built-in ASR variants (the stack's baseline, its
amortized and block-gated variants, and three named models) are reported apart: the amortized and
gated variants' per-frame routing makes thousands of tiny operators, unlike anything in fitting.

"Measured" is the model's median time in units of the reference workload timed beside it, converted
to seconds with the reference's median over the session (see fairspeech/hardware/timing.py: on this
shared machine plain CPU-time medians of one model differed by up to 70% minutes apart). The
figure against plain CPU-time medians is reported too. For comparison the same models are predicted
by the roofline of the measured host profile (peak rate and bandwidth only), the fallback for
profiles without measurements.

Writes benchmarks/results/estimator_accuracy.json (estimator_accuracy_PROFILE.json for another profile,
e.g. a GPU measured with ``--measure --device cuda --profile gpu_host``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, save  # noqa: E402
from fairspeech.hardware import zoo  # noqa: E402
from fairspeech.hardware.estimator import LatencyModel  # noqa: E402
from fairspeech.hardware.graph import trace  # noqa: E402
from fairspeech.hardware.measure import MEASUREMENTS_DIR, call_from_json, model_table_path, operator_table_path  # noqa: E402
from fairspeech.accelerator import load_profile  # noqa: E402
from fairspeech.hardware.roofline import roofline_latencies  # noqa: E402

TOLERANCE = 0.10


def accuracy(errors: np.ndarray) -> dict:
    errors = np.asarray(errors, dtype=float)
    if not len(errors):
        return {"models": 0}
    return {
        "models": int(len(errors)),
        "within_10pct": float(np.mean(np.abs(errors) <= TOLERANCE)),
        "within_20pct": float(np.mean(np.abs(errors) <= 0.20)),
        "median_abs_error": float(np.median(np.abs(errors))),
        "mean_error": float(np.mean(errors)),
        "max_abs_error": float(np.max(np.abs(errors))),
    }


def operator_holdout(operators: pd.DataFrame, profile, fit_names: set[str], seed: int = 0) -> dict:
    """Operator-level check: refit without a third of the fitting architectures, predict their operators."""
    rng = np.random.default_rng(seed)
    names = sorted(fit_names)
    held = set(rng.choice(names, size=max(1, len(names) // 3), replace=False))
    train = operators[~operators["source"].isin(held)]
    test = operators[operators["source"].isin(held)]
    model = LatencyModel.fit(train, profile, seed=seed)
    errors, weights = [], []
    for source, group in test.groupby("source"):
        calls = [call_from_json(c) for c in group["call"]]
        predicted = model.predict_operators(calls, float(group["context_bytes"].iloc[0]))
        errors.extend(predicted / group["median_s"].to_numpy() - 1)
        weights.extend(group["median_s"].to_numpy() * group["occurrences"].to_numpy())
    errors, weights = np.asarray(errors), np.asarray(weights)
    return {
        "held_out_architectures": len(held), "operators": int(len(errors)),
        "within_10pct": float(np.mean(np.abs(errors) <= 0.10)),
        "within_25pct": float(np.mean(np.abs(errors) <= 0.25)),
        "time_weighted_within_10pct": float(np.sum(weights * (np.abs(errors) <= 0.10)) / np.sum(weights)),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", action="store_true", help="re-measure the host first (about ten minutes)")
    parser.add_argument("--profile", default="cpu_host", help="a measured profile (gpu_host: after calibrate --device cuda)")
    parser.add_argument("--device", default="cpu", help="the device --measure times (default: %(default)s)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.measure:
        from fairspeech.hardware.calibrate import CalibrationSettings, calibrate

        calibrate(CalibrationSettings(profile=args.profile, device=args.device), log=lambda m: print(m, file=sys.stderr, flush=True))

    operators = pd.read_csv(operator_table_path(args.profile))
    models = pd.read_csv(model_table_path(args.profile))
    meta = json.loads((MEASUREMENTS_DIR / f"{args.profile}_meta.json").read_text())
    profile = load_profile(args.profile)

    started = time.perf_counter()
    estimator = LatencyModel.fit(operators, profile, models)
    fit_seconds = time.perf_counter() - started

    rows = []
    for _, row in models.iterrows():
        spec = zoo.ArchSpec.from_json(row["spec"])
        graph, _ = trace(zoo.build(spec), zoo.example_input(spec.seconds))
        predicted, _ = estimator.predict_graph(graph)
        roofline = float(np.sum(roofline_latencies(graph, profile)))
        builtin = row["name"] in zoo.BUILTIN
        rows.append({
            "name": row["name"], "family": row["family"], "split": "builtin" if builtin else row["split"],
            "measured_ms": 1e3 * row["median_s"], "measured_iqr_ms": 1e3 * row["iqr_s"],
            "raw_cpu_ms": 1e3 * row["raw_median_s"], "wall_ms": 1e3 * row["wall_median_s"],
            "predicted_ms": 1e3 * predicted, "error": predicted / row["median_s"] - 1,
            "error_vs_raw_cpu_time": predicted / row["raw_median_s"] - 1,
            "roofline_ms": 1e3 * roofline, "roofline_error": roofline / row["median_s"] - 1,
            "mflops": graph.flops / 1e6, "operators": len(graph.calls), "load_average": row["load_average"],
        })
    table = pd.DataFrame(rows)
    held_out = table[table["split"] == "validation"]
    result = {
        "question": "fraction of whole-model latency predictions within +/-10% of measured, on architectures not used in fitting",
        "profile": profile.to_dict(),
        "answer_within_10pct": accuracy(held_out["error"])["within_10pct"],
        "validation": accuracy(held_out["error"]),
        "validation_by_family": {f: accuracy(g["error"]) for f, g in held_out.groupby("family")},
        "builtin_asr_models": accuracy(table[table["split"] == "builtin"]["error"]),
        "fit_in_sample": accuracy(table[table["split"] == "fit"]["error"]),
        "validation_against_raw_cpu_time": accuracy(held_out["error_vs_raw_cpu_time"]),
        "roofline_on_validation": accuracy(held_out["roofline_error"]),
        "operator_holdout": operator_holdout(operators, profile, set(models[models["split"] == "fit"]["name"])),
        "composition": vars(estimator.composition),
        "table": {"operator_rows": len(operators), "by_kind": operators["kind"].value_counts().to_dict(),
                  "fit_architectures": int((models["split"] == "fit").sum())},
        "measurement": {k: meta[k] for k in ("date", "torch", "threads", "clock", "load_average", "settings", "reference")},
        "fit_seconds": fit_seconds,
        "machine": machine(),
        "models": rows,
    }
    save("estimator_accuracy" if args.profile == "cpu_host" else f"estimator_accuracy_{args.profile}", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
