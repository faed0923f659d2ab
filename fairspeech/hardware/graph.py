"""Decompose a model into the operators one forward pass executes, and find its peak activation memory.

Why dispatch-level recording rather than ``torch.fx``/``torch.export``: the ASR variants route frames
with data-dependent control flow (the amortized encoder's per-frame arbitrator, boolean indexing of
the frames each branch computes), which neither tracer can capture as one graph. A
``TorchDispatchMode`` sees the operators that actually run for a concrete input, at the ATen level
``torch.export`` lowers to. Under ``torch.inference_mode`` composite operators (``aten.linear``,
``aten.conv1d``, ``aten.layer_norm``, ``aten.scaled_dot_product_attention``) reach the mode whole,
which is the granularity of the kernels the CPU runs, so there is no fusion left to detect.

Peak activations are computed the way an on-device memory planner allocates: each storage is live
from the operator that creates it to the last operator that reads it (model outputs to the end),
and the peak is the largest sum of live storages at any operator. Weights are counted apart.

    graph, output = trace(model, (features, lengths))
    graph.calls            # list[OpCall], in execution order
    graph.flops            # dense FLOPs, equal to FlopCounterMode's count
    graph.peak_activation_bytes()
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fairspeech.hardware.operators import OpCall, classify, conv_kind, describe, tensor_info


@dataclass
class StorageLife:
    nbytes: int
    floating: bool
    first: int  # index of the creating call (0 for model inputs)
    last: int  # index of the last reading call


@dataclass
class ModelGraph:
    calls: list[OpCall]
    storages: list[StorageLife]  # activations and model inputs, not weights
    param_bytes: int  # parameters and buffers as stored (float32 on the host)
    param_floats: int  # number of floating-point parameter/buffer elements (for other precisions)
    param_other_bytes: int  # integer/bool buffers, unchanged by precision
    module_calls: int  # nn.Module forward calls during the pass (framework overhead the operators do not show)

    @property
    def flops(self) -> int:
        return sum(c.flops for c in self.calls)

    def param_bytes_at(self, bytes_per_float: int) -> int:
        return self.param_floats * bytes_per_float + self.param_other_bytes

    def peak_activation_bytes(self, bytes_per_float: int = 4) -> int:
        """Largest sum of live activation storages at any operator, floats counted at ``bytes_per_float``."""
        if not self.storages:
            return 0
        end = len(self.calls) + 1
        delta = [0] * (end + 1)
        for s in self.storages:
            size = s.nbytes * bytes_per_float // 4 if s.floating else s.nbytes
            delta[s.first] += size
            delta[min(s.last, end) + 1] -= size
        peak = live = 0
        for d in delta:
            live += d
            peak = max(peak, live)
        return peak

    def kind_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for call in self.calls:
            counts[call.kind] = counts.get(call.kind, 0) + 1
        return counts


def _json_ready(value):
    """Non-tensor operator arguments as plain data (signatures and tables must be stable text)."""
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (torch.dtype, torch.device, torch.memory_format, torch.layout)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return type(value).__name__


def bind_arguments(func, args: tuple, kwargs: dict) -> list[tuple[str, Any]]:
    """(schema name, value) for every argument passed, positional or keyword."""
    names = [a.name for a in func._schema.arguments]
    bound = list(zip(names, args))
    bound.extend(kwargs.items())
    return bound


def mutated_argument_names(func) -> set[str]:
    return {a.name for a in func._schema.arguments if a.alias_info is not None and a.alias_info.is_write}


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def _storage_ptr(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr() if t.numel() else 0


class OperatorRecorder(TorchDispatchMode):
    """Records every operator call (as :class:`OpCall`) and the life of every storage it touches.

    Recording costs tens of microseconds of Python per call, so the timing harness records a pass
    once with it and times the operators in other passes (:mod:`fairspeech.hardware.measure`).
    """

    def __init__(self, param_ptrs: set[int] | None = None):
        super().__init__()
        self.param_ptrs = param_ptrs or set()
        self.calls: list[OpCall] = []
        self.lives: dict[int, StorageLife] = {}  # storage id -> life
        self._storage_id: dict[int, int] = {}  # data pointer -> storage id (a freed address may be reused)
        self._next_id = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.record(func, args, kwargs, out)
        return out

    def _storage(self, t: torch.Tensor, index: int, created: bool) -> int | None:
        ptr = _storage_ptr(t)
        if ptr == 0 or ptr in self.param_ptrs:
            return None
        if created or ptr not in self._storage_id:
            sid, self._next_id = self._next_id, self._next_id + 1
            self._storage_id[ptr] = sid
            first = index if created else 0  # a storage first seen as an input was there before the pass
            self.lives[sid] = StorageLife(t.untyped_storage().nbytes(), t.is_floating_point(), first, index)
        sid = self._storage_id[ptr]
        self.lives[sid].last = max(self.lives[sid].last, index)
        return sid

    def record(self, func, args: tuple, kwargs: dict, out) -> OpCall:
        index = len(self.calls)
        inputs, plain = [], {}
        input_ptrs = set()
        for name, value in bind_arguments(func, args, kwargs):
            tensors = _tensors(value)
            if tensors:
                for t in tensors:
                    inputs.append(tensor_info(t, _storage_ptr(t) in self.param_ptrs))
                    input_ptrs.add(_storage_ptr(t))
                    self._storage(t, index, created=False)
            else:
                plain[name] = _json_ready(value)
        outputs = _tensors(out)
        aliases = bool(outputs) and all(_storage_ptr(t) in input_ptrs and _storage_ptr(t) != 0 for t in outputs)
        for t in outputs:
            self._storage(t, index, created=_storage_ptr(t) not in input_ptrs)
        op = str(func)
        kind = classify(op, aliases and not mutated_argument_names(func))
        call = OpCall(op, kind, inputs, [tensor_info(t) for t in outputs], plain)
        if kind == "conv":
            call.kind = conv_kind(inputs, int(plain.get("groups", 1) or 1))
        self.calls.append(describe(call))
        return call

    def mark_outputs(self, output) -> None:
        """Model outputs stay live to the end of the pass."""
        for t in flatten_output(output):
            sid = self._storage_id.get(_storage_ptr(t))
            if sid is not None:
                self.lives[sid].last = len(self.calls)


def flatten_output(output) -> list[torch.Tensor]:
    """Tensors in a model's output: tensors, sequences, dicts and dataclasses (such as ``ASROutput``)."""
    if isinstance(output, torch.Tensor):
        return [output]
    if dataclasses.is_dataclass(output):
        return [t for f in dataclasses.fields(output) for t in flatten_output(getattr(output, f.name))]
    if isinstance(output, dict):
        return [t for v in output.values() for t in flatten_output(v)]
    if isinstance(output, (list, tuple)):
        return [t for v in output for t in flatten_output(v)]
    return []


def parameter_pointers(model: torch.nn.Module) -> set[int]:
    return {_storage_ptr(t) for t in [*model.parameters(), *model.buffers()] if t.numel()}


def _parameter_sizes(model: torch.nn.Module) -> tuple[int, int, int]:
    seen, total, floats, other = set(), 0, 0, 0
    for t in [*model.parameters(), *model.buffers()]:
        ptr = _storage_ptr(t)
        if ptr in seen or ptr == 0:
            continue
        seen.add(ptr)
        total += t.numel() * t.element_size()
        if t.is_floating_point():
            floats += t.numel()
        else:
            other += t.numel() * t.element_size()
    return total, floats, other


class _ModuleCallCounter:
    def __init__(self):
        self.count = 0
        self._handle = None

    def __enter__(self):
        def hook(module, inputs):
            self.count += 1

        self._handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
        return self

    def __exit__(self, *exc):
        self._handle.remove()


def trace(model: torch.nn.Module, inputs: Sequence, recorder: OperatorRecorder | None = None,
          call: Callable | None = None, warmup: bool = True) -> tuple[ModelGraph, Any]:
    """Run ``model(*inputs)`` (or ``call()``) once under inference mode and record its operators.

    ``warmup`` runs the pass once unrecorded first, so that work a model does once on first use
    (the ASR variants count their branches' FLOPs lazily) is not recorded as part of the pass.
    """
    recorder = recorder or OperatorRecorder(parameter_pointers(model))
    run = call or (lambda: model(*inputs))
    if warmup:
        with torch.inference_mode():
            run()
    with torch.inference_mode(), _ModuleCallCounter() as modules, recorder:
        output = run()
    recorder.mark_outputs(output)
    total, floats, other = _parameter_sizes(model)
    graph = ModelGraph(recorder.calls, list(recorder.lives.values()), total, floats, other, modules.count)
    return graph, output


def output_frames(output) -> int:
    """Frames a model emitted: the sum of ``output.lengths`` where there is one, else batch x time of the first tensor."""
    lengths = getattr(output, "lengths", None)
    if isinstance(lengths, torch.Tensor):
        return int(lengths.sum())
    tensors = flatten_output(output)
    if not tensors or tensors[0].dim() < 2:
        return 1
    return int(tensors[0].shape[0] * tensors[0].shape[1])
