"""Roofline latency for profiles with no measurements: each operator takes the longer of its compute
time and its memory time, and a model the sum over its operators.

* compute: dense FLOPs plus one operation per output element of the other operators, with the lane
  dimension (output channels) padded to a multiple of the profile's ``parallelism``, over ``peak_flops``.
  A layer of 250 channels on 32 lanes costs what one of 256 does: the last 6 lanes of the last
  group idle. This is what makes misaligned channel counts expensive on a neural-engine-like device.
* memory: bytes that cross the off-chip interface over ``memory_bandwidth``. An operator's
  activations stay on chip when its inputs and outputs fit in ``onchip_memory``; weights stay on chip
  when the whole model's weights and peak activations do, and are streamed at every use otherwise.

Element sizes follow the profile's first (preferred) precision. There is no per-operator launch
overhead (the profile format has no field for it), so the figure is a lower bound for small layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fairspeech.hardware.graph import ModelGraph
from fairspeech.hardware.operators import DENSE_KINDS, OpCall
from fairspeech.accelerator import AcceleratorProfile

BYTES_PER_ELEMENT = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1, "int4": 0.5}


def bytes_per_float(profile: AcceleratorProfile) -> float:
    precision = profile.precisions[0] if profile.precisions else "fp32"
    if precision not in BYTES_PER_ELEMENT:
        raise ValueError(f"profile {profile.name!r}: unknown precision {precision!r}; known: {sorted(BYTES_PER_ELEMENT)}")
    return BYTES_PER_ELEMENT[precision]


def padding_factor(size: int, parallelism: int) -> float:
    """Work done for ``size`` channels on ``parallelism`` lanes, relative to ``size``: ceil(size/p)*p/size."""
    if size <= 0 or parallelism <= 1:
        return 1.0
    return math.ceil(size / parallelism) * parallelism / size


def compute_ops(call: OpCall, parallelism: int) -> float:
    """Operations the lanes execute, padding included."""
    if call.kind == "view":
        return 0.0
    work = call.flops if call.kind in DENSE_KINDS else sum(t.numel for t in call.outputs)
    return work * padding_factor(call.lane_dim, parallelism)


@dataclass
class RooflineTerms:
    compute_s: float
    memory_s: float

    @property
    def seconds(self) -> float:
        return max(self.compute_s, self.memory_s)


def operator_terms(call: OpCall, profile: AcceleratorProfile, weights_on_chip: bool) -> RooflineTerms:
    if call.kind == "view":
        return RooflineTerms(0.0, 0.0)
    scale = bytes_per_float(profile) / 4  # the recorded tensors are float32
    weight_bytes = call.weight_bytes * scale
    activation_bytes = (call.bytes_in - call.weight_bytes + call.bytes_out) * scale
    onchip = profile.onchip_memory or 0
    offchip = (0.0 if activation_bytes <= onchip else activation_bytes) + (0.0 if weights_on_chip else weight_bytes)
    memory_s = offchip / profile.memory_bandwidth if profile.memory_bandwidth else 0.0
    return RooflineTerms(compute_ops(call, profile.parallelism) / profile.peak_flops, memory_s)


def model_fits_on_chip(graph: ModelGraph, profile: AcceleratorProfile) -> bool:
    per_float = bytes_per_float(profile)
    needed = graph.param_bytes_at(per_float) + graph.peak_activation_bytes(per_float)
    return needed <= (profile.onchip_memory or 0)


def roofline_latencies(graph: ModelGraph, profile: AcceleratorProfile) -> list[float]:
    """Seconds per operator call of ``graph`` on ``profile``."""
    resident = model_fits_on_chip(graph, profile)
    return [operator_terms(call, profile, resident).seconds for call in graph.calls]
