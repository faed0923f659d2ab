"""The measurement harness: time every operator of a forward pass where it runs, and whole models.

Operators are timed *in context*: a pass is recorded once by the decomposition's recorder
(:mod:`fairspeech.hardware.graph`), then run again and again under :class:`OperatorClock`, which
reads the thread's CPU clock around each real operator call and does nothing else. Timing each
operator alone, call after call, would find its weights and inputs in cache every time; inside a
model the other layers have evicted them, and on this CPU the isolated timings came out 1.3-1.8x
below the model's. In context, the operators' times add up to most of the model's, the rest being
Python's own work between operators (module calls, argument parsing), which the estimator's
composition step accounts for. On a CUDA device, :class:`CudaOperatorClock` records events around each
call instead and the device's time between them is the operator's (see :mod:`fairspeech.hardware.timing`).

Each timed pass is one *round*; many rounds give each signature (operator + shapes + arguments)
many samples. Every round, and every whole-model timing, is paired with a run of the reference
workload (:class:`ReferenceProbe`), and the table holds ``median(time / reference time)``
(``ratio_median``) and that ratio times the reference's median over the session (``median_s``), so
the machine's momentary speed cancels out (see :mod:`fairspeech.hardware.timing`). Rounds alternate
with whole-model timings, so a model and its parts are measured under the same conditions.

The table has one row per signature and source: the call as JSON (to rebuild its features with the
current code), FLOPs and bytes, the *context* (bytes of weights and activations the surrounding
model keeps in play, which decides what is still in cache), and median, IQR and wall-clock median.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fairspeech.hardware.graph import ModelGraph, OperatorRecorder, parameter_pointers
from fairspeech.hardware.operators import OpCall, TensorInfo, describe
from fairspeech.hardware.timing import THREAD_CLOCK, CudaEventClock, Samples, ThreadClock, measure

MEASUREMENTS_DIR = Path(__file__).resolve().parent / "measurements"
OPERATOR_COLUMNS = ["op", "kind", "source", "context_bytes", "occurrences", "flops", "bytes_in", "bytes_out",
                    "median_s", "iqr_s", "ratio_median", "ratio_iqr", "raw_median_s", "wall_median_s", "samples", "call"]


class ReferenceProbe:
    """The reference workload (:data:`fairspeech.hardware.zoo.REFERENCE`) on the clock's device, timed on
    demand; keeps every timing."""

    def __init__(self, clock: ThreadClock | CudaEventClock = THREAD_CLOCK):
        from fairspeech.hardware import zoo

        self.clock = clock
        self.model = zoo.build(zoo.REFERENCE).to(clock.device)
        self.inputs = tuple(t.to(clock.device) for t in zoo.example_input(zoo.REFERENCE.seconds))
        self.times: list[float] = []
        with torch.inference_mode():
            for _ in range(3):
                self.model(*self.inputs)

    def __call__(self) -> float:
        with torch.inference_mode():
            seconds, _ = self.clock.interval(lambda: self.model(*self.inputs))
        self.times.append(seconds)
        return seconds

    @property
    def reference_s(self) -> float:
        """The reference's median over every timing so far: the unit ratios are converted back with."""
        return float(np.median(self.times))


class OperatorClock(TorchDispatchMode):
    """Reads the thread's CPU clock (and the wall clock) around every operator call, nothing more.

    Kept this light on purpose: whatever Python runs between operators evicts the kernels' code and
    data from the caches, and a recorder that builds a full :class:`OpCall` per call (tens of
    microseconds of Python) inflated small operators several-fold. The calls are identified by
    position against a separately recorded pass, which requires the pass to be deterministic.
    """

    def __init__(self):
        super().__init__()
        self.cpu_ns: list[int] = []
        self.wall_ns: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        cpu0, wall0 = time.thread_time_ns(), time.perf_counter_ns()
        out = func(*args, **(kwargs or {}))
        cpu1, wall1 = time.thread_time_ns(), time.perf_counter_ns()
        self.cpu_ns.append(cpu1 - cpu0)
        self.wall_ns.append(wall1 - wall0)
        return out

    def finish(self) -> None:
        """Called after the pass; the times are final already."""


class CudaOperatorClock(OperatorClock):
    """Records a pair of CUDA events around every operator call; :meth:`finish` waits for the device and
    reads the kernels' time between them (``cpu_ns`` then holds device nanoseconds, ``wall_ns`` the
    host's launch time)."""

    def __init__(self):
        super().__init__()
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        wall0 = time.perf_counter_ns()
        start.record()
        out = func(*args, **(kwargs or {}))
        end.record()
        self.wall_ns.append(time.perf_counter_ns() - wall0)
        self._events.append((start, end))
        return out

    def finish(self) -> None:
        torch.cuda.synchronize()
        self.cpu_ns = [int(start.elapsed_time(end) * 1e6) for start, end in self._events]


def operator_clock(clock: ThreadClock | CudaEventClock) -> OperatorClock:
    return CudaOperatorClock() if isinstance(clock, CudaEventClock) else OperatorClock()


@dataclass
class OperatorTimings:
    """In-context samples of every operator signature of one pass."""

    calls: list[OpCall]  # the recorded pass
    samples: dict[str, Samples]  # signature -> per-call seconds, all occurrences in all rounds
    occurrences: dict[str, int]  # signature -> calls per pass
    examples: dict[str, OpCall]  # signature -> one call


def measure_operators(run: Callable[[], object], param_ptrs: set[int], rounds: int, probe: ReferenceProbe,
                      between_rounds: Callable[[], None] | None = None, warmup: int = 1,
                      clock: ThreadClock | CudaEventClock = THREAD_CLOCK) -> OperatorTimings:
    """Record the operators ``run()`` executes, then time each in context on ``clock`` over ``rounds``
    passes (after ``warmup`` untimed ones), each pass between two runs of ``probe``; ``between_rounds``
    runs between passes (whole-model timings, for interleaving)."""
    with torch.inference_mode():
        for _ in range(warmup):
            run()
    recorder = OperatorRecorder(param_ptrs)
    with torch.inference_mode(), recorder:
        run()
    calls = recorder.calls
    overhead = clock.overhead_s()
    samples: dict[str, Samples] = {}
    for _ in range(rounds):
        before = probe()
        timer = operator_clock(clock)
        with torch.inference_mode(), timer:
            run()
        timer.finish()
        reference = (before + probe()) / 2
        if len(timer.cpu_ns) != len(calls):
            raise RuntimeError(f"the pass ran {len(timer.cpu_ns)} operators, the recorded one {len(calls)}: not deterministic")
        for call, cpu, wall in zip(calls, timer.cpu_ns, timer.wall_ns):
            s = samples.setdefault(call.signature, Samples())
            s.cpu.append(max(0.0, cpu * 1e-9 - overhead))
            s.wall.append(wall * 1e-9)
            s.reference.append(reference)
        if between_rounds is not None:
            between_rounds()
    occurrences: dict[str, int] = {}
    examples: dict[str, OpCall] = {}
    for call in calls:
        occurrences[call.signature] = occurrences.get(call.signature, 0) + 1
        examples.setdefault(call.signature, call)
    return OperatorTimings(calls, samples, occurrences, examples)


def operator_rows(timings: OperatorTimings, source: str, context_bytes: int) -> list[dict]:
    """Table rows; ``median_s`` and ``iqr_s`` are filled in by :func:`to_reference_seconds` at the session's end."""
    rows = []
    for signature, samples in timings.samples.items():
        call = timings.examples[signature]
        rows.append({
            "op": call.op, "kind": call.kind, "source": source, "context_bytes": int(context_bytes),
            "occurrences": timings.occurrences.get(signature, 0), "flops": call.flops,
            "bytes_in": call.bytes_in, "bytes_out": call.bytes_out,
            "ratio_median": samples.ratio_median, "ratio_iqr": samples.ratio_iqr,
            "raw_median_s": samples.median, "wall_median_s": samples.wall_median,
            "samples": len(samples.cpu), "call": call_to_json(call),
        })
    return rows


def to_reference_seconds(rows: list[dict], reference_s: float) -> list[dict]:
    """Fill ``median_s``/``iqr_s`` of rows from their reference ratios and the session's reference seconds."""
    for row in rows:
        row["median_s"] = row["ratio_median"] * reference_s
        row["iqr_s"] = row["ratio_iqr"] * reference_s
    return rows


def context_bytes(graph: ModelGraph) -> int:
    """Bytes a model keeps in play: its weights and its peak live activations."""
    return graph.param_bytes + graph.peak_activation_bytes()


def measure_model(model: torch.nn.Module, inputs: Sequence, probe: ReferenceProbe, repeats: int = 20, warmup: int = 2,
                  clock: ThreadClock | CudaEventClock = THREAD_CLOCK) -> Samples:
    """Whole forward passes of ``model(*inputs)`` under inference mode on ``clock``, each followed by a probe run."""
    samples = Samples()
    with torch.inference_mode():
        for _ in range(warmup):
            model(*inputs)
        for _ in range(repeats):
            one = measure(lambda: model(*inputs), repeats=1, calls=1, warmup=0, clock=clock)
            samples.extend(one)
            samples.reference.append(probe())
    return samples


def measure_model_and_operators(model: torch.nn.Module, inputs: Sequence, probe: ReferenceProbe, rounds: int = 9,
                                model_repeats_per_round: int = 3,
                                clock: ThreadClock | CudaEventClock = THREAD_CLOCK) -> tuple[Samples, OperatorTimings]:
    """Whole-model timings interleaved with rounds of in-context operator timings of the same pass."""
    model_samples = measure_model(model, inputs, probe, repeats=model_repeats_per_round, clock=clock)

    def more_model_samples():
        model_samples.extend(measure_model(model, inputs, probe, repeats=model_repeats_per_round, warmup=0, clock=clock))

    timings = measure_operators(lambda: model(*inputs), parameter_pointers(model), rounds, probe, more_model_samples, clock=clock)
    return model_samples, timings


# -- the table ------------------------------------------------------------------------------------

def call_to_json(call: OpCall) -> str:
    return json.dumps({"op": call.op, "kind": call.kind, "inputs": [asdict(t) for t in call.inputs],
                       "outputs": [asdict(t) for t in call.outputs], "args": call.args}, separators=(",", ":"))


def call_from_json(text: str) -> OpCall:
    data = json.loads(text)
    call = OpCall(data["op"], data["kind"], [TensorInfo(tuple(t["shape"]), t["dtype"], t["nbytes"], t["is_param"]) for t in data["inputs"]],
                  [TensorInfo(tuple(t["shape"]), t["dtype"], t["nbytes"], t["is_param"]) for t in data["outputs"]], data["args"])
    return describe(call)


def rows_to_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """The operator table: one row per (source, signature), sorted for stable diffs. (The signature is
    not stored: :func:`call_from_json` rebuilds the call, and with it the signature.)"""
    frame = pd.DataFrame(list(rows), columns=OPERATOR_COLUMNS)
    return frame.sort_values(["kind", "op", "source", "flops", "bytes_in", "call"]).reset_index(drop=True)


def operator_table_path(profile_name: str) -> Path:
    """Gzipped CSV: the call JSON makes the plain file several megabytes (``zcat`` reads it)."""
    return MEASUREMENTS_DIR / f"{profile_name}_operators.csv.gz"


def model_table_path(profile_name: str) -> Path:
    return MEASUREMENTS_DIR / f"{profile_name}_models.csv"


def read_operator_table(profile_name: str) -> pd.DataFrame | None:
    path = operator_table_path(profile_name)
    return pd.read_csv(path) if path.exists() else None
