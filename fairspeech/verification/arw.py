"""Adversarial reweighting (ARW, Jin et al.; ARL, Lahoti et al. 2020): fairness without group labels.

An adversary scores each training sample (or pair) from what the learner knows of it, its embedding
and the k-means cluster of that embedding (clusters fitted on embeddings, no labels); the scores
become weights as in ARL, ``lambda_i = 1 + n * s_i / sum(s)`` (mean exactly 2 in every batch). The
learner minimizes the weighted loss, the adversary maximizes it, so weight flows to the regions of
embedding space the learner serves worst.

Pair weights, two variants:
- ``sum``: a pair's weight is the sum of its two samples' weights (a sample adversary).
- ``pair``: a pair adversary scores each pair directly from both sides (symmetric features), and ARL
  normalization runs over the batch's pairs.

Sample weights for a per-sample loss in the ``pair`` variant are each sample's mean pair weight.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

PAIR_WEIGHTS = ("sum", "pair")


def arl_weights(scores: torch.Tensor) -> torch.Tensor:
    """ARL normalization of positive adversary scores: ``1 + n * s_i / sum(s)`` (mean 2)."""
    if scores.ndim != 1 or len(scores) == 0:
        raise ValueError(f"need a non-empty vector of scores, got shape {tuple(scores.shape)}")
    return 1.0 + len(scores) * scores / scores.sum().clamp(min=1e-12)


def pair_weights_from_samples(sample_weights: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Weight of pair (i[k], j[k]): the sum of its two samples' weights."""
    return sample_weights[i] + sample_weights[j]


def sample_weights_from_pairs(pair_weights: torch.Tensor, i: torch.Tensor, j: torch.Tensor, n: int) -> torch.Tensor:
    """Each sample's mean weight over the pairs it is in (1 for a sample in no pair)."""
    total = torch.zeros(n, dtype=pair_weights.dtype).index_add(0, i, pair_weights).index_add(0, j, pair_weights)
    count = torch.zeros(n, dtype=pair_weights.dtype).index_add(0, i, torch.ones_like(pair_weights)).index_add(0, j, torch.ones_like(pair_weights))
    return torch.where(count > 0, total / count.clamp(min=1), torch.ones_like(total))


class SampleAdversary(nn.Module):
    """(unit embedding, one-hot cluster) -> score in (0, 1) per sample."""

    def __init__(self, embedding_dim: int, n_clusters: int, hidden: int = 64):
        super().__init__()
        self.n_clusters = n_clusters
        self.net = nn.Sequential(nn.Linear(embedding_dim + n_clusters, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, embeddings: torch.Tensor, clusters: torch.Tensor) -> torch.Tensor:
        x = torch.cat([embeddings, F.one_hot(clusters, self.n_clusters).to(embeddings.dtype)], dim=-1)
        return torch.sigmoid(self.net(x)).squeeze(-1)


class PairAdversary(nn.Module):
    """Both sides of a pair -> score in (0, 1), symmetric in the two sides: it sees the elementwise
    product and absolute difference of the unit embeddings and the sum of the one-hot clusters."""

    def __init__(self, embedding_dim: int, n_clusters: int, hidden: int = 64):
        super().__init__()
        self.n_clusters = n_clusters
        self.net = nn.Sequential(nn.Linear(2 * embedding_dim + n_clusters, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, left: torch.Tensor, right: torch.Tensor, left_clusters: torch.Tensor, right_clusters: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(left_clusters, self.n_clusters) + F.one_hot(right_clusters, self.n_clusters)
        x = torch.cat([left * right, (left - right).abs(), onehot.to(left.dtype)], dim=-1)
        return torch.sigmoid(self.net(x)).squeeze(-1)


def nearest_cluster(embeddings: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Index of the nearest center (squared Euclidean) for each row."""
    return torch.cdist(embeddings, centers).argmin(dim=1)


def fit_clusters(embeddings: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """k-means centers ``(n_clusters, dim)`` of unit embeddings, one BLAS thread, seeded."""
    from sklearn.cluster import KMeans

    from fairspeech.cohorts.search import limit_threads

    if len(embeddings) < n_clusters:
        raise ValueError(f"k-means with {n_clusters} clusters needs at least that many embeddings, got {len(embeddings)}")
    with limit_threads(1):
        model = KMeans(n_clusters=n_clusters, n_init=3, random_state=seed).fit(embeddings)
    return model.cluster_centers_.astype(np.float32)
