"""What one recorded operator call is: its kind, its FLOPs and bytes, and the features a latency model sees.

Operators are ATen calls as the dispatcher sees them under ``torch.inference_mode`` (see
:mod:`fairspeech.hardware.graph`): there composite operators such as ``aten.linear``,
``aten.conv1d``, ``aten.layer_norm`` and ``aten.scaled_dot_product_attention`` arrive whole, each one
kernel (or a short fixed sequence of kernels) on the CPU, which is the unit nn-Meter predicts.

Kinds group operators whose cost follows the same law, so one regression per kind suffices:

* dense: ``linear``, ``matmul``, ``conv1d``, ``depthwise_conv1d``, ``conv2d``, ``attention``
* row-wise: ``layer_norm``, ``softmax``; per-channel: ``batch_norm``
* element-wise: ``activation`` (relu, silu, glu, ...), ``elementwise`` (add, mul, where, compare, ...)
* ``reduction``, ``copy`` (cat, stack, indexing, contiguous copies), ``factory`` (arange, zeros, ...)
* ``view``: calls whose output aliases an input (reshape, permute, slice, eval-mode dropout); no work,
  only the framework's per-call overhead.

FLOPs follow ``torch.utils.flop_counter`` (2 per multiply-accumulate, dense operators only), so the
decomposition's total equals ``FlopCounterMode``'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

DENSE_KINDS = ("linear", "matmul", "conv1d", "depthwise_conv1d", "conv2d", "attention")
KINDS = DENSE_KINDS + ("layer_norm", "softmax", "batch_norm", "activation", "elementwise", "reduction", "copy", "factory", "view")

_LINEAR = {"linear"}
_MATMUL = {"matmul", "mm", "bmm", "addmm", "baddbmm", "einsum"}
_CONV = {"conv1d", "conv2d", "convolution", "_convolution"}
_ATTENTION = {"scaled_dot_product_attention", "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
              "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention"}  # the CPU's and CUDA's kernels
_LAYER_NORM = {"layer_norm", "native_layer_norm", "rms_norm", "group_norm"}
_BATCH_NORM = {"batch_norm", "_native_batch_norm_legit_no_training", "instance_norm"}
_SOFTMAX = {"softmax", "log_softmax", "_softmax", "_log_softmax"}
_ACTIVATION = {"relu", "relu_", "silu", "silu_", "gelu", "sigmoid", "tanh", "glu", "hardswish", "hardtanh", "elu",
               "leaky_relu", "mish", "softplus", "relu6", "prelu"}
_REDUCTION = {"mean", "sum", "amax", "amin", "max", "min", "var", "std", "var_mean", "norm", "linalg_vector_norm",
              "any", "all", "argmax", "argmin", "logsumexp", "prod", "cumsum"}
_COPY = {"cat", "stack", "clone", "contiguous", "copy_", "index", "index_select", "index_put_", "index_put", "gather",
         "scatter", "masked_select", "repeat", "pad", "constant_pad_nd", "embedding", "_to_copy", "to", "flip", "roll",
         "reshape", "flatten", "_unsafe_view", "masked_scatter", "tril", "triu", "new_empty", "nonzero"}
_FACTORY = {"arange", "zeros", "ones", "full", "eye", "empty", "randn", "rand", "zeros_like", "ones_like", "full_like",
            "empty_like", "new_zeros", "new_ones", "new_full", "scalar_tensor", "lift_fresh", "lift_fresh_copy", "tensor"}
# Element-wise functions that cost a polynomial/exponential evaluation per element rather than one instruction.
TRANSCENDENTAL = {"silu", "silu_", "gelu", "sigmoid", "tanh", "glu", "exp", "log", "sin", "cos", "pow", "sqrt", "rsqrt",
                  "softplus", "mish", "elu", "erf", "log1p", "expm1", "reciprocal", "div"}


def base_name(op: str) -> str:
    """'aten.linear.default' -> 'linear'; 'aten.__ior__.Tensor' -> '__ior__'."""
    parts = op.split(".")
    return parts[1] if len(parts) >= 2 and parts[0] == "aten" else parts[0]


@dataclass
class TensorInfo:
    shape: tuple[int, ...]
    dtype: str
    nbytes: int  # of the elements this view spans, not of the whole storage
    is_param: bool = False  # a parameter or buffer of the model (weights), not an activation

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class OpCall:
    """One operator call of a forward pass, with everything needed to predict and explain its cost."""

    op: str  # 'aten.linear.default'
    kind: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    args: dict = field(default_factory=dict)  # non-tensor arguments by schema name (stride, groups, dim, ...)
    flops: int = 0  # dense FLOPs, FlopCounterMode's convention
    features: dict[str, float] = field(default_factory=dict)
    lane_dim: int = 0  # the dimension an accelerator spreads over its parallel lanes (output channels); 0: none

    @property
    def bytes_in(self) -> int:
        return sum(t.nbytes for t in self.inputs)

    @property
    def bytes_out(self) -> int:
        return sum(t.nbytes for t in self.outputs)

    @property
    def weight_bytes(self) -> int:
        return sum(t.nbytes for t in self.inputs if t.is_param)

    @property
    def signature(self) -> str:
        """Identical signatures cost the same: operator, tensor shapes and dtypes, other arguments."""
        ins = ";".join(f"{t.dtype}{list(t.shape)}" for t in self.inputs)
        return f"{self.op}|{ins}|{sorted(self.args.items())}"


def classify(op: str, aliases_input: bool) -> str:
    """The kind of an operator call; ``aliases_input``: its output shares storage with an input (a view)."""
    name = base_name(op)
    if name in _LINEAR:
        return "linear"
    if name in _MATMUL:
        return "matmul"
    if name in _CONV:
        return "conv"  # refined by :func:`conv_kind` from the shapes
    if name in _ATTENTION:
        return "attention"
    if name in _LAYER_NORM:
        return "layer_norm"
    if name in _BATCH_NORM:
        return "batch_norm"
    if name in _SOFTMAX:
        return "softmax"
    if aliases_input:
        return "view"
    if name in _ACTIVATION:
        return "activation"
    if name in _REDUCTION:
        return "reduction"
    if name in _COPY:
        return "copy"
    if name in _FACTORY:
        return "factory"
    return "elementwise"


def conv_kind(inputs: list[TensorInfo], groups: int) -> str:
    x, w = inputs[0], inputs[1]
    if len(w.shape) == 4:
        return "conv2d"
    in_channels = x.shape[-2]
    return "depthwise_conv1d" if groups > 1 and groups == in_channels else "conv1d"


def _log(value: float) -> float:
    return math.log2(1.0 + max(0.0, float(value)))


def _alignment(prefix: str, size: int) -> dict[str, float]:
    """How far ``size`` is from the multiples that vector units and GEMM blocking favour."""
    return {f"{prefix}_mod16": float(size % 16), f"{prefix}_mod64": float(size % 64)}


def describe(call: OpCall) -> OpCall:
    """Fill in ``flops``, ``features`` and ``lane_dim`` of a call whose op, kind, inputs and args are set."""
    kind, ins, outs = call.kind, call.inputs, call.outputs
    out_numel = sum(t.numel for t in outs)
    features = {"log_bytes_in": _log(call.bytes_in), "log_bytes_out": _log(call.bytes_out), "log_out_numel": _log(out_numel)}
    flops, lane = 0, 0
    if kind == "linear":
        x, w = ins[0], ins[1]
        k, n = w.shape[1], w.shape[0]
        m = x.numel // max(k, 1)
        flops = 2 * m * k * n
        features.update(log_m=_log(m), log_k=_log(k), log_n=_log(n), bias=float(len(ins) > 2), **_alignment("k", k), **_alignment("n", n))
        lane = n
    elif kind == "matmul":
        m, k, n, batch = _matmul_dims(call)
        flops = 2 * batch * m * k * n
        features.update(log_batch=_log(batch), log_m=_log(m), log_k=_log(k), log_n=_log(n), **_alignment("k", k), **_alignment("n", n))
        lane = n
    elif kind in ("conv1d", "depthwise_conv1d", "conv2d"):
        x, w, out = ins[0], ins[1], outs[0]
        groups = int(_conv_arg(call, "groups", 1))
        stride = _conv_arg(call, "stride", 1)
        stride = int(stride[0] if isinstance(stride, (list, tuple)) else stride)
        c_in, c_out = x.shape[1], w.shape[0]
        kernel = math.prod(w.shape[2:])
        spatial = math.prod(out.shape[2:])
        batch = out.shape[0]
        flops = 2 * batch * c_out * spatial * (c_in // groups) * kernel
        features.update(log_batch=_log(batch), log_c_in=_log(c_in), log_c_out=_log(c_out), log_spatial=_log(spatial),
                        kernel=float(kernel), stride=float(stride), log_groups=_log(groups), log_flops=_log(flops),
                        **_alignment("c_out", c_out))
        lane = c_out
    elif kind == "attention":
        q, k, v = ins[0], ins[1], ins[2]
        batch_heads = math.prod(q.shape[:-2])
        lq, d = q.shape[-2], q.shape[-1]
        lk, dv = k.shape[-2], v.shape[-1]
        flops = 2 * batch_heads * lq * lk * d + 2 * batch_heads * lq * lk * dv
        mask = ins[3] if len(ins) > 3 else None
        features.update(log_batch_heads=_log(batch_heads), log_lq=_log(lq), log_lk=_log(lk), log_d=_log(d),
                        mask=float(mask is not None), mask_float=float(mask is not None and mask.dtype != "bool"),
                        log_flops=_log(flops), **_alignment("d", d))
        lane = d
    elif kind in ("layer_norm", "softmax"):
        x = ins[0]
        dim = x.shape[-1] if kind == "layer_norm" else x.shape[_softmax_dim(call, len(x.shape))]
        rows = x.numel // max(dim, 1)
        features.update(log_rows=_log(rows), log_dim=_log(dim), log_numel=_log(x.numel), log_softmax=float("log" in base_name(call.op)))
        lane = dim
    elif kind == "batch_norm":
        x = ins[0]
        features.update(log_numel=_log(x.numel), log_channels=_log(x.shape[1] if len(x.shape) > 1 else 1))
        lane = x.shape[1] if len(x.shape) > 1 else 1
    else:  # activation, elementwise, reduction, copy, factory, view
        in_numel = sum(t.numel for t in ins)
        largest_in = max((t.numel for t in ins), default=0)
        features.update(log_in_numel=_log(in_numel), n_inputs=float(len(ins)), n_outputs=float(len(outs)),
                        broadcast=float(largest_in < out_numel), transcendental=float(base_name(call.op) in TRANSCENDENTAL),
                        inplace=float(base_name(call.op).endswith("_")))
        if kind != "view" and outs and outs[0].shape:
            lane = outs[0].shape[-1]
    call.flops, call.features, call.lane_dim = int(flops), features, int(lane)
    return call


def _matmul_dims(call: OpCall) -> tuple[int, int, int, int]:
    """(m, k, n, batch) of a matrix product from its output and operand shapes."""
    name = base_name(call.op)
    tensors = [t for t in call.inputs if len(t.shape) >= 1]
    if name in ("addmm", "baddbmm"):
        tensors = tensors[1:]  # the first operand is the added bias
    if name == "einsum" or len(tensors) < 2:
        out = call.outputs[0]
        k = tensors[0].shape[-1] if tensors else 1
        m = out.shape[-2] if len(out.shape) >= 2 else 1
        n = out.shape[-1] if out.shape else 1
        return m, k, n, max(1, out.numel // max(m * n, 1))
    a, b = tensors[0].shape, tensors[1].shape
    k = a[-1]
    m = a[-2] if len(a) >= 2 else 1
    n = b[-1] if len(b) >= 2 else 1
    batch = call.outputs[0].numel // max(m * n, 1)
    return m, k, n, max(batch, 1)


def _conv_arg(call: OpCall, name: str, default):
    value = call.args.get(name)
    return default if value is None else value


def _softmax_dim(call: OpCall, ndim: int) -> int:
    dim = int(call.args.get("dim", -1))
    return dim if dim < 0 else dim - ndim


def tensor_info(t: torch.Tensor, is_param: bool = False) -> TensorInfo:
    """Shape, dtype and the bytes the tensor's elements occupy (a broadcast view counts its storage once)."""
    if t.numel() == 0:
        nbytes = 0
    else:
        span = 1 + sum((size - 1) * abs(stride) for size, stride in zip(t.shape, t.stride()))
        nbytes = min(span, t.numel()) * t.element_size()
    return TensorInfo(tuple(int(s) for s in t.shape), str(t.dtype).replace("torch.", ""), int(nbytes), is_param)
