"""What rounding channel counts to a profile's parallelism factor does to latency: estimated on every
shipped profile, measured on this CPU.

    python benchmarks/channel_alignment.py

For each model with misaligned widths, the widths are rounded up and down to multiples of the
profile's parallelism (:func:`fairspeech.hardware.channels.align_widths`; 16 fp32 lanes on this
CPU, 32 on the neural-engine-like profile). The estimated change is the estimator's (regression on
this CPU, roofline elsewhere); the measured change on this CPU is the median of paired ratios
``time(aligned) / time(original)`` from runs that alternate the two models, so the machine's
momentary speed cancels out of each pair.

Writes benchmarks/results/channel_alignment.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, save  # noqa: E402
from fairspeech.hardware import zoo  # noqa: E402
from fairspeech.hardware.channels import align_widths  # noqa: E402
from fairspeech.hardware.costs import load_profiles, shipped_profile_names  # noqa: E402
from fairspeech.hardware.estimator import estimate_graph  # noqa: E402
from fairspeech.hardware.graph import output_frames, trace  # noqa: E402
from fairspeech.hardware.timing import LoadLog  # noqa: E402

MISALIGNED = [
    zoo.ArchSpec("transformer", {"dim": 252, "heads": 2, "ff_dim": 1000, "layers": 4, "subsampling_channels": 30}, 3.0),
    zoo.ArchSpec("transformer", {"dim": 136, "heads": 4, "ff_dim": 540, "layers": 4, "subsampling_channels": 20}, 3.0),
    zoo.ArchSpec("conformer", {"dim": 150, "heads": 2, "ff_dim": 600, "layers": 3, "kernel": 15}, 3.0),
    zoo.ArchSpec("conv", {"channels": 250, "blocks": 5, "kernel": 11}, 3.0),
    zoo.ArchSpec("conv", {"channels": 200, "blocks": 6, "kernel": 21}, 3.0),
]


def paired_ratio(first, second, inputs, pairs: int = 40) -> dict:
    """Median and IQR of time(second)/time(first) over alternating runs (thread CPU time)."""
    ratios = []
    with torch.inference_mode():
        for _ in range(3):
            first(*inputs)
            second(*inputs)
        for i in range(pairs):
            order = (first, second) if i % 2 == 0 else (second, first)  # alternate which runs first
            times = {}
            for model in order:
                start = time.thread_time_ns()
                model(*inputs)
                times[id(model)] = time.thread_time_ns() - start
            ratios.append(times[id(second)] / times[id(first)])
    q1, median, q3 = np.percentile(ratios, [25, 50, 75])
    return {"change": float(median - 1), "iqr": float(q3 - q1), "pairs": pairs}


def main() -> int:
    torch.set_num_threads(1)
    profiles = load_profiles(shipped_profile_names())
    load = LoadLog()
    results = []
    for spec in MISALIGNED:
        inputs = zoo.example_input(spec.seconds)
        original = zoo.build(spec)
        graph, output = trace(original, inputs)
        frames = output_frames(output)
        entry = {"model": spec.name, "widths": spec.config, "profiles": {}}
        for profile in profiles:
            before = estimate_graph(graph, frames, profile)
            per_mode = {}
            for mode in ("up", "down"):
                aligned_spec = align_widths(spec, profile.parallelism, mode)
                if aligned_spec.config == spec.config:
                    continue
                aligned = zoo.build(aligned_spec)
                aligned_graph, aligned_output = trace(aligned, inputs)
                after = estimate_graph(aligned_graph, output_frames(aligned_output), profile)
                row = {"aligned_widths": {k: v for k, v in aligned_spec.config.items() if spec.config.get(k) != v},
                       "params_change": after.params_bytes / before.params_bytes - 1,
                       "flops_change": after.flops / before.flops - 1,
                       "estimated_latency_change": after.latency_s / before.latency_s - 1,
                       "estimated_ms": [1e3 * before.latency_s, 1e3 * after.latency_s], "method": after.method}
                if profile.name == "cpu_host":
                    load.sample()
                    row["measured_latency_change"] = paired_ratio(original, aligned, inputs)
                per_mode[mode] = row
            entry["profiles"][profile.name] = {"parallelism": profile.parallelism, **per_mode}
        results.append(entry)
        print(spec.name, {p: {m: round(v["estimated_latency_change"], 3) for m, v in d.items() if isinstance(v, dict) and "estimated_latency_change" in v}
                          for p, d in entry["profiles"].items()}, file=sys.stderr, flush=True)

    measured = [(m["estimated_latency_change"], m["measured_latency_change"]["change"])
                for r in results for mode, m in r["profiles"]["cpu_host"].items() if isinstance(m, dict) and "measured_latency_change" in m]
    save("channel_alignment", {
        "question": "estimated and measured effect on latency of rounding channel counts to the profile's parallelism factor",
        "summary": {
            "cpu_host_pairs": len(measured),
            "cpu_host_mean_estimated_change": float(np.mean([e for e, _ in measured])) if measured else None,
            "cpu_host_mean_measured_change": float(np.mean([m for _, m in measured])) if measured else None,
            "cpu_host_estimate_minus_measured": [e - m for e, m in measured],
        },
        "models": results,
        "load_average": load.summary(),
        "machine": machine(),
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
