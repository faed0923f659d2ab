"""The operator sweep: linear, conv1d, depthwise conv, conv2d, attention, layer norm, softmax,
activations, batch norm and the small element-wise, copy and factory operators, across random shapes
(seeded) that cover and exceed those of small speech encoders.

Specs are timed in groups: each round runs every spec of a group once under the operator clock,
so between two timings of one operator the others have run, as layers do inside a model; a row's
context is the group's total bytes (see :mod:`fairspeech.hardware.measure`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from fairspeech.hardware.measure import ReferenceProbe, measure_operators, operator_rows
from fairspeech.hardware.timing import THREAD_CLOCK, CudaEventClock, ThreadClock


@dataclass(frozen=True)
class OperatorSpec:
    kind: str
    shape: tuple[tuple[str, object], ...]  # (name, value) pairs, hashable

    @property
    def params(self) -> dict:
        return dict(self.shape)

    @property
    def name(self) -> str:
        return f"{self.kind}(" + ",".join(f"{k}={v}" for k, v in self.shape) + ")"


def _log_uniform_int(rng: np.random.Generator, low: int, high: int) -> int:
    return int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))


def _width(rng: np.random.Generator, low: int, high: int) -> int:
    """Half aligned to 16, half any integer: misaligned channel counts must be in the table too."""
    value = _log_uniform_int(rng, low, high)
    return max(low, 16 * round(value / 16)) if rng.random() < 0.5 else value


def random_spec(rng: np.random.Generator, kind: str) -> OperatorSpec:
    frames = _log_uniform_int(rng, 4, 800)
    if kind == "linear":
        shape = {"m": frames, "k": _width(rng, 16, 2048), "n": _width(rng, 16, 2048)}
    elif kind == "conv1d":
        shape = {"frames": _log_uniform_int(rng, 8, 1200), "c_in": _width(rng, 16, 640), "c_out": _width(rng, 16, 1024),
                 "kernel": int(rng.choice([1, 1, 3, 5, 11])), "stride": int(rng.choice([1, 1, 2, 3]))}
    elif kind == "depthwise_conv1d":
        shape = {"frames": _log_uniform_int(rng, 8, 800), "channels": _width(rng, 16, 1024), "kernel": int(rng.choice([3, 5, 7, 11, 15, 21, 31, 33]))}
    elif kind == "conv2d":
        shape = {"frames": _log_uniform_int(rng, 16, 800), "bins": int(rng.choice([40, 80, 39, 19])), "c_in": int(rng.choice([1, 8, 16, 24, 32, 48])),
                 "c_out": int(rng.choice([8, 16, 24, 32, 48, 64]))}
    elif kind == "attention":
        heads = int(rng.choice([1, 2, 4, 8]))
        shape = {"heads": heads, "frames": _log_uniform_int(rng, 4, 400), "head_dim": _width(rng, 8, 256),
                 "mask": str(rng.choice(["none", "bool_keys", "float"]))}
    elif kind == "layer_norm":
        shape = {"rows": frames, "dim": _width(rng, 16, 2048)}
    elif kind == "softmax":
        shape = {"rows": frames * int(rng.choice([1, 1, 4])), "dim": _width(rng, 8, 800), "log": bool(rng.random() < 0.5)}
    elif kind == "batch_norm":
        shape = {"frames": frames, "channels": _width(rng, 16, 1024)}
    elif kind == "activation":
        shape = {"numel": _log_uniform_int(rng, 64, 2_000_000), "fn": str(rng.choice(["relu", "silu", "gelu", "sigmoid", "tanh", "glu"]))}
    elif kind == "elementwise":
        shape = {"rows": frames, "dim": _width(rng, 1, 2048),
                 "fn": str(rng.choice(["add", "mul", "sub", "add_broadcast", "mul_scalar", "masked_fill", "where", "compare", "cos"]))}
    elif kind == "copy":
        shape = {"rows": frames, "dim": _width(rng, 2, 2048), "fn": str(rng.choice(["cat", "stack", "contiguous", "index_select", "flatten_copy"]))}
    elif kind == "reduction":
        shape = {"rows": frames, "dim": _width(rng, 2, 2048), "fn": str(rng.choice(["mean", "sum", "amax"]))}
    elif kind == "factory":
        shape = {"frames": frames, "fn": str(rng.choice(["arange", "zeros_square", "eye", "full"]))}
    else:
        raise ValueError(f"no sweep for kind {kind!r}")
    return OperatorSpec(kind, tuple(shape.items()))


SWEEP_KINDS = {"linear": 90, "conv1d": 45, "depthwise_conv1d": 40, "conv2d": 25, "attention": 60, "layer_norm": 30,
               "softmax": 25, "batch_norm": 20, "activation": 40, "elementwise": 50, "copy": 30, "reduction": 15, "factory": 15}


def sample_operator_specs(seed: int = 0, counts: dict[str, int] | None = None) -> list[OperatorSpec]:
    rng = np.random.default_rng(seed)
    specs = []
    for kind, count in (counts or SWEEP_KINDS).items():
        seen = set()
        while len(seen) < count:
            spec = random_spec(rng, kind)
            if spec not in seen:
                seen.add(spec)
                specs.append(spec)
    return specs


def build_operator(spec: OperatorSpec, generator: torch.Generator, device: str | torch.device = "cpu"
                   ) -> tuple[Callable[[], object], list[torch.Tensor], int]:
    """(the call, its weights, the bytes it touches) for one spec on ``device``; inputs are made once,
    here (drawn on the CPU from ``generator``, so every device times the same values)."""
    p = spec.params
    randn = lambda *shape: torch.randn(*shape, generator=generator).to(device)  # noqa: E731
    weights: list[torch.Tensor] = []
    if spec.kind == "linear":
        x, w, b = randn(1, p["m"], p["k"]), randn(p["n"], p["k"]), randn(p["n"])
        weights, fn = [w, b], lambda: F.linear(x, w, b)
    elif spec.kind == "conv1d":
        x, w, b = randn(1, p["c_in"], p["frames"]), randn(p["c_out"], p["c_in"], p["kernel"]), randn(p["c_out"])
        weights, fn = [w, b], lambda: F.conv1d(x, w, b, stride=p["stride"], padding=p["kernel"] // 2)
    elif spec.kind == "depthwise_conv1d":
        x, w, b = randn(1, p["channels"], p["frames"]), randn(p["channels"], 1, p["kernel"]), randn(p["channels"])
        weights, fn = [w, b], lambda: F.conv1d(x, w, b, padding=p["kernel"] // 2, groups=p["channels"])
    elif spec.kind == "conv2d":
        x, w, b = randn(1, p["c_in"], p["frames"], p["bins"]), randn(p["c_out"], p["c_in"], 3, 3), randn(p["c_out"])
        weights, fn = [w, b], lambda: F.conv2d(x, w, b, stride=2)
    elif spec.kind == "attention":
        q, k, v = (randn(1, p["heads"], p["frames"], p["head_dim"]) for _ in range(3))
        mask = {"none": None, "bool_keys": torch.ones(1, 1, 1, p["frames"], dtype=torch.bool, device=device),
                "float": torch.zeros(1, 1, p["frames"], p["frames"], device=device)}[p["mask"]]
        x, fn = q, lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    elif spec.kind == "layer_norm":
        x, w, b = randn(1, p["rows"], p["dim"]), randn(p["dim"]), randn(p["dim"])
        weights, fn = [w, b], lambda: F.layer_norm(x, (p["dim"],), w, b)
    elif spec.kind == "softmax":
        x = randn(1, p["rows"], p["dim"])
        fn = (lambda: torch.log_softmax(x, dim=-1)) if p["log"] else (lambda: torch.softmax(x, dim=-1))
    elif spec.kind == "batch_norm":
        x, mean, var, w, b = randn(1, p["channels"], p["frames"]), randn(p["channels"]), torch.rand(p["channels"], generator=generator).to(device) + 0.5, randn(p["channels"]), randn(p["channels"])
        weights, fn = [mean, var, w, b], lambda: F.batch_norm(x, mean, var, w, b, training=False)
    elif spec.kind == "activation":
        x = randn(2, p["numel"] // 2) if p["fn"] == "glu" else randn(p["numel"])
        fn = {"relu": lambda: F.relu(x), "silu": lambda: F.silu(x), "gelu": lambda: F.gelu(x), "sigmoid": lambda: torch.sigmoid(x),
              "tanh": lambda: torch.tanh(x), "glu": lambda: F.glu(x, dim=0)}[p["fn"]]
    elif spec.kind == "elementwise":
        x, y, row = randn(1, p["rows"], p["dim"]), randn(1, p["rows"], p["dim"]), randn(p["dim"])
        mask = x > 0
        fn = {"add": lambda: x + y, "mul": lambda: x * y, "sub": lambda: x - y, "add_broadcast": lambda: x + row,
              "mul_scalar": lambda: x * 0.5, "masked_fill": lambda: x.masked_fill(mask, float("-inf")),
              "where": lambda: torch.where(mask, x, y), "compare": lambda: x < y, "cos": lambda: x.cos()}[p["fn"]]
    elif spec.kind == "copy":
        x, y = randn(1, p["rows"], p["dim"]), randn(1, p["rows"], p["dim"])
        index = torch.arange(0, p["rows"], 2, device=device)
        fn = {"cat": lambda: torch.cat([x, y], dim=-1), "stack": lambda: torch.stack([x, y], dim=-1),
              "contiguous": lambda: x.transpose(1, 2).contiguous(), "index_select": lambda: x.index_select(1, index),
              "flatten_copy": lambda: x.transpose(1, 2).flatten(1)}[p["fn"]]
    elif spec.kind == "reduction":
        x = randn(1, p["rows"], p["dim"])
        fn = {"mean": lambda: x.mean(-1), "sum": lambda: x.sum(-1), "amax": lambda: x.amax(-1)}[p["fn"]]
    elif spec.kind == "factory":
        n = p["frames"]
        x = torch.empty(0, device=device)
        fn = {"arange": lambda: torch.arange(n, device=device), "zeros_square": lambda: torch.zeros(1, n, n, device=device),
              "eye": lambda: torch.eye(n, dtype=torch.bool, device=device), "full": lambda: torch.full((1, n), n, device=device)}[p["fn"]]
    else:
        raise ValueError(f"no sweep for kind {spec.kind!r}")
    touched = x.numel() * x.element_size() * 2 + sum(w.numel() * w.element_size() for w in weights)
    return fn, weights, touched


def measure_sweep(specs: list[OperatorSpec], probe: ReferenceProbe, rounds: int = 9, group_size: int = 8, seed: int = 0,
                  progress: Callable[[str], None] | None = None, clock: ThreadClock | CudaEventClock = THREAD_CLOCK) -> list[dict]:
    """Table rows (in reference ratios, see :func:`fairspeech.hardware.measure.to_reference_seconds`)
    for every operator the specs execute (the main one and incidental views), on ``clock``'s device."""
    rows: list[dict] = []
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, len(specs), group_size):
        group = [build_operator(spec, generator, clock.device) for spec in specs[start:start + group_size]]
        params = {w.untyped_storage().data_ptr() for _, weights, _ in group for w in weights}
        context = sum(touched for _, _, touched in group)

        def run_group():
            for fn, _, _ in group:
                fn()

        timings = measure_operators(run_group, params, rounds, probe, clock=clock)
        rows.extend(operator_rows(timings, "sweep", context))
        if progress:
            progress(f"sweep {min(start + group_size, len(specs))}/{len(specs)}")
    return rows
