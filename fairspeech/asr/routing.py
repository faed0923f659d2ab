"""Binary routing decisions trained by relaxation: Gumbel-sigmoid gates with an annealed temperature.

A gate's logit ``l`` says "use the expensive path". In training the gate is the binary-concrete
relaxation ``sigmoid((l + logistic noise) / temperature)``: a soft value in (0, 1) that the loss can
differentiate, and that becomes 0 or 1 as the temperature is annealed towards zero. In evaluation
the gate is the hard decision ``l > 0``. With ``straight_through`` the training forward uses the
hard sample too, with the soft sample's gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

BINARY_TOLERANCE = 0.01  # a soft gate within this distance of 0 or 1 counts as binary


def gumbel_sigmoid(logits: torch.Tensor, temperature: float, straight_through: bool = False) -> torch.Tensor:
    """A relaxed Bernoulli sample with ``P(1) = sigmoid(logits)``, sharpening as ``temperature`` -> 0."""
    uniform = torch.rand_like(logits).clamp_(1e-6, 1 - 1e-6)
    noise = torch.log(uniform) - torch.log1p(-uniform)  # logistic = difference of two Gumbels
    soft = torch.sigmoid((logits + noise) / temperature)
    if not straight_through:
        return soft
    hard = (soft > 0.5).to(soft.dtype)
    return hard + soft - soft.detach()


def gate(logits: torch.Tensor, training: bool, temperature: float, straight_through: bool = False) -> torch.Tensor:
    """Soft gates (float) in training, hard decisions (bool) in evaluation."""
    if training:
        return gumbel_sigmoid(logits, temperature, straight_through)
    return logits > 0


def binary_fraction(gates: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Share of gates within :data:`BINARY_TOLERANCE` of 0 or 1 (1.0 once routing is binary)."""
    g = gates.detach().float()
    binary = torch.minimum(g, 1 - g) < BINARY_TOLERANCE
    if mask is not None:
        return float(binary[mask].float().mean()) if mask.any() else 1.0
    return float(binary.float().mean())


@dataclass
class TemperatureSchedule:
    """Exponential decay from ``start`` to ``end`` over the first ``anneal_fraction`` of training, then flat."""

    start: float = 2.0
    end: float = 0.05
    anneal_fraction: float = 0.7

    def __call__(self, step: int, total_steps: int) -> float:
        progress = min(1.0, step / max(1.0, self.anneal_fraction * total_steps))
        return math.exp(math.log(self.start) + progress * (math.log(self.end) - math.log(self.start)))
