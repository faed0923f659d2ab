"""Sparse diffs: a zero-initialized difference added to frozen base weights, pruned iteratively.

Every trained weight ``W`` of the model becomes ``W_base + mask * D`` through a parametrization
(:class:`SparseDelta`): ``W_base`` is frozen, ``D`` starts at zero and is trained, and the boolean
``mask`` (a buffer, so checkpoints carry it and training resumes exactly) starts all-ones. During
training :func:`prune_to` keeps the highest-scoring entries over *all* weights together (global
pruning, so each update chooses its own weights anywhere in the model) on the cubic schedule of
:func:`density_at` (Zhu & Gupta), down to the target density. The score is ``|D|`` (magnitude), or
``D^2 * F`` (``criterion="fisher"``: the loss increase a second-order expansion predicts for dropping
the entry, Optimal Brain Damage with the diagonal empirical Fisher ``F``, the mean squared gradient
of the entry over the steps so far, which :meth:`SparseDelta.observe` accumulates). Under Adam ``|D|``
mostly says how consistently an entry's gradient kept its sign, not how much the loss needs it. What
ships is the surviving entries: flat indices and values (Macoskey et al., "Learning a neural diff for
speech models").
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


CRITERIA = ("magnitude", "fisher")


class SparseDelta(nn.Module):
    """Parametrization ``base -> base + mask * diff`` with a trainable ``diff`` and a pruning ``mask``;
    with ``track_fisher`` also the sum of squared gradients of ``diff`` (a buffer: resumes exactly)."""

    def __init__(self, shape: Sequence[int], track_fisher: bool = False):
        super().__init__()
        self.diff = nn.Parameter(torch.zeros(shape))
        self.register_buffer("mask", torch.ones(shape, dtype=torch.bool))
        if track_fisher:
            self.register_buffer("grad_sq", torch.zeros(shape))
            self.register_buffer("observed", torch.zeros((), dtype=torch.int64))

    def forward(self, base: torch.Tensor) -> torch.Tensor:
        return base + self.diff * self.mask

    def effective(self) -> torch.Tensor:
        return (self.diff * self.mask).detach()

    @torch.no_grad()
    def observe(self) -> None:
        """Add this step's squared gradient to the Fisher estimate (call after backward, before the next zero_grad)."""
        if self.diff.grad is not None:
            self.grad_sq.add_(self.diff.grad.float().square())
            self.observed.add_(1)

    def score(self, criterion: str = "magnitude") -> torch.Tensor:
        """Keep-priority of each entry: ``|D|``, or ``D^2 * F`` with ``F`` the mean squared gradient."""
        if criterion == "magnitude":
            return self.effective().abs()
        if criterion == "fisher":
            return self.effective().square() * (self.grad_sq / self.observed.clamp(min=1))
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")


def density_at(step: int, total_steps: int, target: float, start: float = 0.1, end: float = 0.7) -> float:
    """Density to keep after ``step``: 1 until ``start * total``, then cubic decay to ``target`` at ``end * total``."""
    begin, finish = start * total_steps, max(start * total_steps + 1, end * total_steps)
    progress = min(1.0, max(0.0, (step - begin) / (finish - begin)))
    return target + (1.0 - target) * (1.0 - progress) ** 3


@torch.no_grad()
def prune_to(deltas: Sequence[SparseDelta], density: float, criterion: str = "magnitude") -> int:
    """Keep the ``ceil(density * total)`` highest-scoring entries (:meth:`SparseDelta.score`) across all
    ``deltas``; zero the rest. Returns entries kept."""
    total = sum(d.diff.numel() for d in deltas)
    keep = min(total, max(1, math.ceil(density * total)))
    kept_now = sum(int(d.mask.sum()) for d in deltas)
    if keep >= kept_now:
        return kept_now
    scores = torch.cat([d.score(criterion).reshape(-1) for d in deltas])
    scores[~torch.cat([d.mask.reshape(-1) for d in deltas])] = -1.0  # pruned entries never come back
    chosen = torch.zeros(total, dtype=torch.bool, device=scores.device)
    chosen[torch.topk(scores, keep, sorted=False).indices] = True
    offset = 0
    for d in deltas:
        n = d.diff.numel()
        d.mask.copy_(chosen[offset:offset + n].view_as(d.mask))
        d.diff.mul_(d.mask)
        offset += n
    return keep


def extract(delta: SparseDelta, value_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(int32 flat indices, values in ``value_dtype``) of the entries the mask keeps."""
    indices = delta.mask.reshape(-1).nonzero().squeeze(1)
    return indices.to(torch.int32), delta.effective().reshape(-1)[indices].to(value_dtype)


def sparse_delta(indices: torch.Tensor, values: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Dense float32 delta of ``shape`` from flat ``indices`` and ``values``."""
    dense = torch.zeros(int(torch.Size(shape).numel()), dtype=torch.float32, device=values.device)
    dense[indices.long()] = values.float()
    return dense.view(*shape)
