"""Build the measurements of this machine's CPU (or GPU): its profile, the operator table and the model table.

    python -m fairspeech.hardware.calibrate                 # the CPU, everything, about twenty minutes
    python -m fairspeech.hardware.calibrate --quick         # a small version (smoke test of the pipeline)
    python -m fairspeech.hardware.calibrate --device cuda   # a CUDA GPU of this host, as profile gpu_host

Writes, under ``fairspeech/hardware/``:

* ``profiles/cpu_host.toml``: peak rate, bandwidth, lanes, cache, precisions (:mod:`fairspeech.hardware.host`);
* ``measurements/cpu_host_operators.csv.gz``: the operator sweep and the in-context operators of the
  *fitting* architectures, one row per (source, signature);
* ``measurements/cpu_host_models.csv``: whole-model latencies of the fitting architectures and of the
  held-out *validation* architectures (never decomposed into the table) and the named built-ins;
* ``measurements/cpu_host_meta.json``: settings, load averages during measurement, versions.

Fitting and validation architectures are disjoint seeded draws (:func:`fairspeech.hardware.zoo.sample_specs`)
and are measured alternately, so both see the same machine conditions. One torch thread throughout.
Every timing is paired with the reference workload; seconds in the tables are reference ratios times
the reference's median over the session (see :mod:`fairspeech.hardware.timing`). On a GPU the same
pipeline runs on CUDA events (models, inputs and operators on the device, float32).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from fairspeech.hardware import zoo
from fairspeech.hardware.graph import trace
from fairspeech.hardware.host import measure_cuda_profile, measure_host_profile, profile_toml
from fairspeech.hardware.measure import (MEASUREMENTS_DIR, ReferenceProbe, context_bytes, measure_model, measure_model_and_operators,
                                         model_table_path, operator_rows, operator_table_path, rows_to_frame, to_reference_seconds)
from fairspeech.accelerator import PROFILES_DIR
from fairspeech.hardware.sweep import SWEEP_KINDS, measure_sweep, sample_operator_specs
from fairspeech.hardware.timing import THREAD_CLOCK, CudaEventClock, LoadLog, ThreadClock, clock_for, wait_for_quiet
from fairspeech.utils import io

FIT_SEED, VALIDATION_SEED, SWEEP_SEED = 1, 2, 0
MODEL_COLUMNS = ["name", "family", "split", "spec", "median_s", "iqr_s", "ratio_median", "ratio_iqr", "raw_median_s", "raw_iqr_s",
                 "wall_median_s", "samples", "ops_ratio_sum", "ops_sum_s", "n_ops", "module_calls", "flops", "param_bytes",
                 "peak_activation_bytes", "load_average"]


@dataclass
class CalibrationSettings:
    profile: str = "cpu_host"
    device: str = "cpu"  # or "cuda", "cuda:1": the device measured
    fit_architectures: int = 300
    validation_architectures: int = 100
    sweep_scale: float = 1.0  # multiplies the number of operator shapes per kind
    rounds: int = 11  # in-context passes per fitting architecture (and per sweep group)
    validation_repeats: int = 60  # whole-model timings per validation architecture
    quiet_load: float = 1.2
    max_wait_s: float = 180.0


def _model_row(name: str, family: str, split: str, spec: str, samples, graph, ops_ratio_sum: float, load: float) -> dict:
    """A model table row in reference ratios; :func:`to_reference_seconds` fills the seconds at the end."""
    return {"name": name, "family": family, "split": split, "spec": spec, "ratio_median": samples.ratio_median,
            "ratio_iqr": samples.ratio_iqr, "raw_median_s": samples.median, "raw_iqr_s": samples.iqr,
            "wall_median_s": samples.wall_median, "samples": len(samples.cpu), "ops_ratio_sum": ops_ratio_sum,
            "n_ops": len(graph.calls), "module_calls": graph.module_calls, "flops": graph.flops, "param_bytes": graph.param_bytes,
            "peak_activation_bytes": graph.peak_activation_bytes(), "load_average": load}


def to_reference_seconds_models(rows: list[dict], reference_s: float) -> list[dict]:
    for row in rows:
        row["median_s"] = row["ratio_median"] * reference_s
        row["iqr_s"] = row["ratio_iqr"] * reference_s
        row["ops_sum_s"] = row["ops_ratio_sum"] * reference_s
    return rows


def _on_device(spec: zoo.ArchSpec, clock: ThreadClock | CudaEventClock) -> tuple[torch.nn.Module, tuple]:
    return zoo.build(spec).to(clock.device), tuple(t.to(clock.device) for t in zoo.example_input(spec.seconds))


def measure_fit_architecture(spec: zoo.ArchSpec, rounds: int, probe: ReferenceProbe, load: LoadLog,
                             clock: ThreadClock | CudaEventClock = THREAD_CLOCK) -> tuple[dict, list[dict]]:
    model, inputs = _on_device(spec, clock)
    graph, _ = trace(model, inputs)
    samples, timings = measure_model_and_operators(model, inputs, probe, rounds=rounds, clock=clock)
    ops_ratio_sum = sum(timings.samples[c.signature].ratio_median for c in timings.calls)
    row = _model_row(spec.name, spec.family, "fit", spec.to_json(), samples, graph, ops_ratio_sum, load.sample())
    return row, operator_rows(timings, spec.name, context_bytes(graph))


def measure_validation_architecture(name: str, spec: zoo.ArchSpec, repeats: int, probe: ReferenceProbe, load: LoadLog,
                                    clock: ThreadClock | CudaEventClock = THREAD_CLOCK) -> dict:
    model, inputs = _on_device(spec, clock)
    graph, _ = trace(model, inputs)
    samples = measure_model(model, inputs, probe, repeats=repeats, warmup=3, clock=clock)
    return _model_row(name, spec.family, "validation", spec.to_json(), samples, graph, float("nan"), load.sample())


def architecture_sets(settings: CalibrationSettings) -> tuple[list[zoo.ArchSpec], list[tuple[str, zoo.ArchSpec]]]:
    """Fitting draws, and validation draws (disjoint from them) plus the named built-ins."""
    fit = zoo.sample_specs(settings.fit_architectures, FIT_SEED)
    held_out = zoo.sample_specs(settings.validation_architectures, VALIDATION_SEED, exclude={s.name for s in fit})
    validation = [(s.name, s) for s in held_out] + list(zoo.BUILTIN.items())
    return fit, validation


def calibrate(settings: CalibrationSettings, log=print) -> dict:
    clock = clock_for(settings.device)
    torch.set_num_threads(1)  # on a GPU too: the host thread that launches the kernels
    load = LoadLog()
    started_load = wait_for_quiet(settings.quiet_load, settings.max_wait_s, log=log)
    load.sample()
    log(f"load average at start {started_load:.2f}")

    if isinstance(clock, CudaEventClock):
        profile = measure_cuda_profile(settings.profile, clock)
    else:
        profile = measure_host_profile(settings.profile)
    note = (f"Measured by `python -m fairspeech.hardware.calibrate --device {settings.device}` on {datetime.date.today().isoformat()},\n"
            f"one torch thread, {clock.name} (see fairspeech/hardware/timing.py). Re-run it on another machine to re-measure.")
    io.write_text(PROFILES_DIR / f"{settings.profile}.toml", profile_toml(profile, note))
    log(f"profile: {profile}")

    probe = ReferenceProbe(clock)
    counts = {kind: max(2, round(n * settings.sweep_scale)) for kind, n in SWEEP_KINDS.items()}
    op_rows = measure_sweep(sample_operator_specs(SWEEP_SEED, counts), probe, rounds=settings.rounds, progress=log, clock=clock)
    load.sample()

    fit, validation = architecture_sets(settings)
    model_rows = []
    for i in range(max(len(fit), len(validation))):  # alternate, so both sets see the same conditions
        if i < len(fit):
            row, rows = measure_fit_architecture(fit[i], settings.rounds, probe, load, clock)
            model_rows.append(row)
            op_rows.extend(rows)
            log(f"fit {i + 1}/{len(fit)} {row['name']}: {row['ratio_median']:.3f} x reference (operators {row['ops_ratio_sum']:.3f})")
        if i < len(validation):
            name, spec = validation[i]
            row = measure_validation_architecture(name, spec, settings.validation_repeats, probe, load, clock)
            model_rows.append(row)
            log(f"validation {i + 1}/{len(validation)} {name}: {row['ratio_median']:.3f} x reference")

    reference_s = probe.reference_s
    operators = rows_to_frame(to_reference_seconds(op_rows, reference_s))
    models = pd.DataFrame(to_reference_seconds_models(model_rows, reference_s), columns=MODEL_COLUMNS)
    with io.atomic_path(operator_table_path(settings.profile)) as tmp:
        operators.to_csv(tmp, index=False, compression={"method": "gzip", "mtime": 0})  # mtime 0: same bytes for same data
    with io.atomic_path(model_table_path(settings.profile)) as tmp:
        models.to_csv(tmp, index=False)
    meta = {
        "profile": profile.to_dict(), "settings": vars(settings), "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__, "python": platform.python_version(), "threads": 1, "clock": clock.name,
        "device": settings.device,
        "load_average": load.summary(), "operator_rows": len(operators), "model_rows": len(models),
        "reference": {"spec": zoo.REFERENCE.to_json(), "median_s": reference_s, "timings": len(probe.times),
                      "iqr_s": float(np.subtract(*np.percentile(probe.times, [75, 25])))},
    }
    io.write_json(MEASUREMENTS_DIR / f"{settings.profile}_meta.json", meta)
    return meta


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Measure this CPU (or a CUDA GPU): profile, operator table, model table.")
    parser.add_argument("--quick", action="store_true", help="a small run: few shapes and architectures")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    parser.add_argument("--profile", help="profile name to write (default: cpu_host, or gpu_host on a GPU)")
    parser.add_argument("--max-wait", type=float, default=180.0, help="seconds to wait for a quiet machine (default: %(default)s)")
    args = parser.parse_args(argv)
    profile = args.profile or ("cpu_host" if args.device == "cpu" else "gpu_host")
    settings = CalibrationSettings(profile=profile, device=args.device, max_wait_s=args.max_wait)
    if args.quick:
        settings.fit_architectures, settings.validation_architectures, settings.sweep_scale, settings.rounds = 4, 4, 0.1, 5
    meta = calibrate(settings, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
