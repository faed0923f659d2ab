"""The latency and memory estimator: decompose, predict each operator, sum; memory as weights plus
peak activations.

    from fairspeech.hardware import estimate, load_profile
    report = estimate(model, (features, lengths), load_profile("cpu_host"))
    report.latency_s, report.flops, report.params_bytes, report.peak_activation_bytes

For a profile with a measurement table (``measurements/{name}_operators.csv.gz``, built by
:mod:`fairspeech.hardware.calibrate`) each operator's latency comes from a regression fitted on the
table: one regression per operator kind, as nn-Meter fits one per kernel type, predicting the
log of the ratio between the measured latency and an analytic baseline (the profile's roofline plus
the cost of an operator call that does no work). The regressions are gradient-boosted trees
(scikit-learn's histogram boosting): nn-Meter's random forests gave 86% of held-out architectures
within +/-10% on this CPU's table, boosting 90% (``benchmarks/estimator_accuracy.py``). Trees cannot
extrapolate and interpolate in steps; learning the deviation from a baseline that already scales
with FLOPs and bytes halved the error on held-out depthwise convolutions and attention. The fit is redone from the CSV when first
needed (seconds, seeded) rather than stored as a pickle.
The per-operator predictions are summed and composed into the model's latency by a linear fit on
the fitting architectures' whole-model timings (:func:`fit_composition`): a scale on the operators'
sum, a cost per ``nn.Module`` call (Python's work between operators, which no operator shows) and
a per-operator correction. Profiles without a table get the roofline of
:mod:`fairspeech.hardware.roofline`.

Units on the measured CPU: the table's seconds are ratios to a reference workload timed beside each
measurement, times that workload's median over the calibration session (``measurements/*_meta.json``),
i.e. latencies at the machine's typical speed during calibration with one thread; see
:mod:`fairspeech.hardware.timing` for why plain CPU time was not stable enough on a shared machine.
Accuracy on held-out architectures: ``benchmarks/estimator_accuracy.py``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import HistGradientBoostingRegressor

from fairspeech.hardware.graph import ModelGraph, output_frames, trace
from fairspeech.hardware.measure import call_from_json, model_table_path, operator_table_path
from fairspeech.hardware.operators import OpCall
from fairspeech.accelerator import AcceleratorProfile, load_profile
from fairspeech.hardware.roofline import bytes_per_float, roofline_latencies

FALLBACK_KIND = "elementwise"  # operators of a kind the table lacks are predicted as generic element-wise work
MIN_SECONDS = 1e-8


def feature_vector(call: OpCall, context_bytes: float, names: Sequence[str]) -> list[float]:
    values = dict(call.features, log_context=math.log2(1.0 + context_bytes))
    return [values.get(n, 0.0) for n in names]


@dataclass
class Baseline:
    """What an operator would take if it ran at the profile's peak rate and bandwidth, plus the cost of
    a call that does no work (the median measured ``view``): the regressions learn the ratio to this."""

    peak_flops: float
    memory_bandwidth: float
    call_s: float

    def __call__(self, call: OpCall) -> float:
        return call.flops / self.peak_flops + (call.bytes_in + call.bytes_out) / self.memory_bandwidth + self.call_s

    @classmethod
    def from_table(cls, profile: AcceleratorProfile, operators: pd.DataFrame) -> "Baseline":
        views = operators.loc[operators["kind"] == "view", "median_s"]
        call_s = float(views.median()) if len(views) else float(operators["median_s"].min())
        return cls(profile.peak_flops, profile.memory_bandwidth or math.inf, max(call_s, MIN_SECONDS))


@dataclass
class KindModel:
    names: list[str]
    regressor: HistGradientBoostingRegressor
    rows: int


@dataclass
class Composition:
    """Model latency = ``scale`` x sum of operator latencies + ``per_module_s`` x nn.Module calls
    + ``per_operator_s`` x operator calls (Python's argument handling before each operator reaches
    the dispatcher, outside the in-context clock)."""

    scale: float = 1.0
    per_module_s: float = 0.0
    per_operator_s: float = 0.0

    def __call__(self, operators_s: float, module_calls: int, operator_calls: int) -> float:
        return self.scale * operators_s + self.per_module_s * module_calls + self.per_operator_s * operator_calls


class LatencyModel:
    """Per-kind operator latency regressions fitted on a measurement table, and their composition."""

    def __init__(self, kinds: dict[str, KindModel], baseline: Baseline, composition: Composition):
        self.kinds = kinds
        self.baseline = baseline
        self.composition = composition

    @classmethod
    def fit(cls, operators: pd.DataFrame, profile: AcceleratorProfile, models: pd.DataFrame | None = None,
            seed: int = 0, iterations: int = 300) -> "LatencyModel":
        """Fit on an operator table (rows as written by :mod:`fairspeech.hardware.measure`) measured on
        ``profile`` and, where given, compose on the ``split == 'fit'`` rows of a model table."""
        calls = [call_from_json(text) for text in operators["call"]]
        baseline = Baseline.from_table(profile, operators)
        kinds: dict[str, KindModel] = {}
        frame = operators.assign(_call=calls)
        for kind, group in frame.groupby("kind"):
            names = sorted({n for c in group["_call"] for n in c.features} | {"log_context"})
            x = np.array([feature_vector(c, ctx, names) for c, ctx in zip(group["_call"], group["context_bytes"])])
            measured = np.maximum(group["median_s"].to_numpy(dtype=float), MIN_SECONDS)
            y = np.log(measured / np.array([baseline(c) for c in group["_call"]]))
            regressor = HistGradientBoostingRegressor(max_iter=iterations, learning_rate=0.05, min_samples_leaf=5, random_state=seed)
            kinds[str(kind)] = KindModel(names, regressor.fit(x, y), len(group))
        model = cls(kinds, baseline, Composition())
        if models is not None:
            fit_rows = models[models["split"] == "fit"]
            if len(fit_rows):
                model.composition = fit_composition(fit_rows)
        return model

    def predict_operators(self, calls: Sequence[OpCall], context_bytes: float) -> np.ndarray:
        """Seconds per call (identical signatures predicted once)."""
        unique: dict[str, OpCall] = {}
        for call in calls:
            unique.setdefault(call.signature, call)
        by_kind: dict[str, list[OpCall]] = {}
        for call in unique.values():
            kind = call.kind if call.kind in self.kinds else FALLBACK_KIND
            by_kind.setdefault(kind, []).append(call)
        seconds: dict[str, float] = {}
        for kind, group in by_kind.items():
            km = self.kinds[kind]
            x = np.array([feature_vector(c, context_bytes, km.names) for c in group])
            for call, log_ratio in zip(group, km.regressor.predict(x)):
                seconds[call.signature] = float(np.exp(log_ratio) * self.baseline(call))
        return np.array([seconds[c.signature] for c in calls])

    def predict_graph(self, graph: ModelGraph) -> tuple[float, np.ndarray]:
        """(model seconds, per-operator seconds) for a decomposed model."""
        context = graph.param_bytes + graph.peak_activation_bytes()
        per_call = self.predict_operators(graph.calls, context)
        return self.composition(float(per_call.sum()), graph.module_calls, len(graph.calls)), per_call


def fit_composition(fit_models: pd.DataFrame) -> Composition:
    """Least squares of the measured model latency on (sum of its measured operators, module calls,
    operator calls), in relative terms so that small and large models weigh alike.

    The per-operator term comes out negative on this CPU (about -5 us): the clock calls each operator
    through its Python ``OpOverload``, which costs 1-3 us more per call than the native bindings a
    model's own code uses (measured with ``torch.ops.aten.relu.default`` against ``torch.relu``), so
    in-context timings carry a per-call surplus that the model does not pay. It is left free rather
    than forced to zero for that reason; the module term is Python's ``nn.Module.__call__`` work.
    """
    measured = fit_models["median_s"].to_numpy(dtype=float)
    design = fit_models[["ops_sum_s", "module_calls", "n_ops"]].to_numpy(dtype=float)
    ok = np.isfinite(design).all(axis=1) & np.isfinite(measured)
    coefficients, *_ = np.linalg.lstsq(design[ok] / measured[ok, None], np.ones(int(ok.sum())), rcond=None)
    scale, per_module, per_operator = (float(c) for c in coefficients)
    return Composition(scale, per_module, per_operator)


@functools.lru_cache(maxsize=8)
def latency_model_for(profile_name: str) -> LatencyModel | None:
    """The fitted latency model of a measured profile, or None (use the roofline)."""
    path = operator_table_path(profile_name)
    if not path.exists():
        return None
    models_path = model_table_path(profile_name)
    models = pd.read_csv(models_path) if models_path.exists() else None
    return LatencyModel.fit(pd.read_csv(path), load_profile(profile_name), models)


# -- the report ---------------------------------------------------------------------------------------

@dataclass
class CostReport:
    """What a model costs on one profile for one input."""

    profile: str
    method: str  # "measured regression" or "roofline"
    latency_s: float
    flops: int  # dense FLOPs of the pass (FlopCounterMode's convention)
    params_bytes: int  # at the profile's preferred precision
    peak_activation_bytes: int  # largest live set of activations (memory-planner view), same precision
    output_frames: int
    operators: int
    latency_by_kind: dict[str, float] = field(default_factory=dict)  # seconds, before composition
    audio_seconds: float | None = None  # length of the input, where known

    @property
    def memory_bytes(self) -> int:
        return self.params_bytes + self.peak_activation_bytes

    @property
    def flops_per_frame(self) -> float:
        return self.flops / max(1, self.output_frames)

    @property
    def latency_per_frame_s(self) -> float:
        return self.latency_s / max(1, self.output_frames)

    @property
    def real_time_factor(self) -> float | None:
        """Seconds of compute per second of audio; below 1 keeps up with live speech."""
        return self.latency_s / self.audio_seconds if self.audio_seconds else None

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(memory_bytes=self.memory_bytes, flops_per_frame=self.flops_per_frame,
                    latency_per_frame_s=self.latency_per_frame_s, real_time_factor=self.real_time_factor)
        return data


def decompose(model: torch.nn.Module, example_input) -> tuple[ModelGraph, int]:
    """(operators of one eval-mode pass of ``model(*example_input)``, output frames); the model's
    training mode is restored. ``example_input``: a tensor or a tuple of positional arguments."""
    inputs = tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)
    was_training = model.training
    model.eval()
    try:
        graph, output = trace(model, inputs)
    finally:
        model.train(was_training)
    return graph, output_frames(output)


def estimate_graph(graph: ModelGraph, frames: int, profile: AcceleratorProfile, audio_seconds: float | None = None) -> CostReport:
    """The cost report of an already decomposed model (one decomposition serves every profile)."""
    latency_model = latency_model_for(profile.name)
    if latency_model is not None:
        latency, per_call = latency_model.predict_graph(graph)
        method = "measured regression"
    else:
        per_call = np.array(roofline_latencies(graph, profile))
        latency, method = float(per_call.sum()), "roofline"
    by_kind: dict[str, float] = {}
    for call, seconds in zip(graph.calls, per_call):
        by_kind[call.kind] = by_kind.get(call.kind, 0.0) + float(seconds)
    per_float = bytes_per_float(profile)
    return CostReport(
        profile=profile.name, method=method, latency_s=float(latency), flops=graph.flops,
        params_bytes=int(graph.param_bytes_at(per_float)), peak_activation_bytes=int(graph.peak_activation_bytes(per_float)),
        output_frames=frames, operators=len(graph.calls), latency_by_kind=dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
        audio_seconds=audio_seconds,
    )


def estimate(model: torch.nn.Module, example_input, profile: AcceleratorProfile, audio_seconds: float | None = None) -> CostReport:
    """Latency, FLOPs, weights and peak activations of ``model(*example_input)`` on ``profile``.

    ``example_input``: a tensor or a tuple of positional arguments (for the ASR models,
    ``(features, lengths)``, e.g. from :func:`fairspeech.asr.flops.reference_input`). The model runs
    once, in eval mode, under inference mode. ``audio_seconds`` (the input's duration) adds the real-time factor.
    """
    graph, frames = decompose(model, example_input)
    return estimate_graph(graph, frames, profile, audio_seconds)
