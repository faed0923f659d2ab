"""Compute measured with torch's own FLOP counter (``torch.utils.flop_counter.FlopCounterMode``).

The counter sees matrix multiplications, convolutions and attention (2 FLOPs per multiply-add);
element-wise work (activations, norms, masking) is not counted, as is usual for these figures.
On CPU, ``scaled_dot_product_attention`` runs as ``_scaled_dot_product_flash_attention_for_cpu``,
which the counter has no formula for (it would count attention as free); we register torch's own
SDPA formula for it. Attention is counted dense (every query against every key of the padded
sequence), whatever the mask: a slight over-count for masked, chunked attention.

The first use of a dispatch mode in a process imports ``torch._dynamo`` (about 10 s), so models
measure their FLOPs lazily, when first needed, never at construction.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils import flop_counter


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


_CUSTOM = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs executed by ``fn()`` (run under ``torch.no_grad``)."""
    with torch.no_grad(), flop_counter.FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter:
        fn()
    return int(counter.get_total_flops())


@torch.no_grad()
def flops_per_frame(model: torch.nn.Module, features: torch.Tensor, lengths: torch.Tensor) -> float:
    """Average FLOPs per encoder frame of one forward pass of ``model`` (in its current mode) over a batch."""
    frames = {}

    def run():
        frames["n"] = int(model(features, lengths).lengths.sum())

    total = count_flops(run)
    return total / max(1, frames["n"])


def reference_input(n_mels: int, seconds: float = 3.0, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of ``seconds`` of audio at 100 frames/s (values do not matter to the count)."""
    frames = int(seconds * 100)
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, frames, n_mels, generator=generator), torch.full((batch,), frames)
