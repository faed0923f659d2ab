"""Training losses for speaker embeddings, per sample and per pair (unreduced, so ARW can weight them).

- :class:`AAMSoftmax`: additive angular margin softmax over training speakers (ArcFace, Deng et al.
  2019): the target logit is ``s * cos(theta + m)``.
- :class:`PairwiseLogistic`: binary logistic loss on ``w * cos + b`` (learned w > 0, b, as GE2E) over
  every pair in the batch; target and non-target pairs each carry half the loss, however many there are.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class AAMSoftmax(nn.Module):
    def __init__(self, embedding_dim: int, n_classes: int, margin: float = 0.2, scale: float = 30.0):
        super().__init__()
        self.margin, self.scale = margin, scale
        self.weight = nn.Parameter(torch.empty(n_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(batch,) cross-entropy of each sample with the margin on its own class."""
        cosine = F.linear(F.normalize(embeddings), F.normalize(self.weight)).clamp(-1 + 1e-7, 1 - 1e-7)
        theta = torch.acos(cosine.gather(1, labels[:, None]))
        # Past theta = pi - m, cos(theta + m) would rise again; the usual linear extension keeps it monotone.
        target = torch.where(theta + self.margin < math.pi, torch.cos(theta + self.margin), cosine.gather(1, labels[:, None]) - self.margin * math.sin(self.margin))
        logits = cosine.scatter(1, labels[:, None], target) * self.scale
        return F.cross_entropy(logits, labels, reduction="none")


def all_pairs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (i, j), i < j, of every pair of ``n`` samples."""
    i, j = torch.triu_indices(n, n, offset=1)
    return i, j


class PairwiseLogistic(nn.Module):
    def __init__(self, init_scale: float = 10.0, init_bias: float = -5.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init_scale)))
        self.bias = nn.Parameter(torch.tensor(float(init_bias)))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(i, j, loss)`` for every pair i < j: loss already balanced, so ``loss.mean()`` is
        half the mean over target pairs plus half the mean over non-target pairs."""
        i, j = all_pairs(len(labels))
        z = F.normalize(embeddings)
        logits = self.scale.clamp(min=1e-3) * (z[i] * z[j]).sum(-1) + self.bias
        target = (labels[i] == labels[j]).to(logits.dtype)
        n_target = target.sum().clamp(min=1)
        n_other = (1 - target).sum().clamp(min=1)
        balance = len(target) * (target / (2 * n_target) + (1 - target) / (2 * n_other))
        return i, j, balance * F.binary_cross_entropy_with_logits(logits, target, reduction="none")
