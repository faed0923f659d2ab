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

:class:`AdversarialReweighter` is the training-layer callback: it keeps a bank of each training
sample's latest unit embedding (the objective's ``StepLoss.embeddings``: pooled encoder states for a
recognizer, the speaker embedding for a verifier), refits k-means on it every ``recluster_every``
steps, weights every batch from ``start_step`` on, and negates its adversary's gradients so the one
optimizer step ascends what the model descends (simultaneous updates, as ARL).
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fairspeech.training.callbacks import Callback
from fairspeech.training.protocol import StepLoss, Weights
from fairspeech.utils import distributed

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
    zeros = torch.zeros(n, dtype=pair_weights.dtype, device=pair_weights.device)
    total = zeros.index_add(0, i, pair_weights).index_add(0, j, pair_weights)
    count = zeros.index_add(0, i, torch.ones_like(pair_weights)).index_add(0, j, torch.ones_like(pair_weights))
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


class ReweighterState(nn.Module):
    """What a resume needs: both adversaries (so runs of either pair-weight variant, and a run that
    has not started reweighting, share one initialization and checkpoint layout), the embedding bank
    (latest unit embedding per training sample, and whether it was seen) and the cluster centers."""

    def __init__(self, n_samples: int, embedding_dim: int, n_clusters: int, hidden: int):
        super().__init__()
        self.sample_adversary = SampleAdversary(embedding_dim, n_clusters, hidden)
        self.pair_adversary = PairAdversary(embedding_dim, n_clusters, hidden)
        self.register_buffer("bank", torch.zeros(n_samples, embedding_dim))
        self.register_buffer("seen", torch.zeros(n_samples))
        self.register_buffer("centers", torch.zeros(n_clusters, embedding_dim))


class AdversarialReweighter(Callback):
    """Per-sample weights from an adversary over (embedding, k-means cluster id); see the module docstring.

    Parameters: ``embedding_dim``, ``n_samples`` (training samples; a batch's ``indices`` address the
    bank), ``n_clusters``, ``hidden`` (adversary width), ``adversary_lr``, ``start_step`` (steps of
    plain training first, so clusters are fitted on meaningful embeddings), ``recluster_every``,
    ``pair_weight`` ("sum": a pair weighs the sum of its samples' weights; "pair": a pair adversary),
    ``seed`` (k-means), ``enabled`` (False: keep the bank and the adversaries' initialization, never
    weight: the baseline of a comparison, whose checkpoints an enabled run can start from).
    """

    name = "reweighter"

    def __init__(self, embedding_dim: int, n_samples: int, n_clusters: int = 4, hidden: int = 64, adversary_lr: float = 1e-3,
                 start_step: int = 0, recluster_every: int = 200, pair_weight: str = "sum", seed: int = 0, enabled: bool = True):
        if pair_weight not in PAIR_WEIGHTS:
            raise ValueError(f"pair_weight must be one of {PAIR_WEIGHTS}, got {pair_weight!r}")
        self.embedding_dim = embedding_dim
        self.n_samples = n_samples
        self.n_clusters = n_clusters
        self.hidden = hidden
        self.adversary_lr = adversary_lr
        self.start_step = start_step
        self.recluster_every = recluster_every
        self.pair_weight = pair_weight
        self.seed = seed
        self.enabled = enabled
        self.state_ = None

    def on_train_start(self, trainer) -> None:
        self.state_ = ReweighterState(self.n_samples, self.embedding_dim, self.n_clusters, self.hidden).to(trainer.device)

    @property
    def adversary(self) -> nn.Module:
        return self.state_.sample_adversary if self.pair_weight == "sum" else self.state_.pair_adversary

    def state_module(self) -> nn.Module | None:
        return self.state_

    def param_groups(self, trainer) -> list[dict]:
        return [{"params": list(self.state_.sample_adversary.parameters()) + list(self.state_.pair_adversary.parameters()),
                 "lr": self.adversary_lr, "weight_decay": 0.0}]

    def active(self, step: int) -> bool:
        return self.enabled and step >= self.start_step

    def on_step_start(self, trainer, step: int) -> None:
        if self.active(step) and (step - self.start_step) % self.recluster_every == 0:
            self.recluster(step)

    def recluster(self, step: int) -> None:
        """k-means on the bank's seen rows (rank 0), centers shared with every rank."""
        state = self.state_
        centers = torch.zeros_like(state.centers)
        if distributed.is_main():
            seen = state.seen.bool()
            if int(seen.sum()) < self.n_clusters:
                raise ValueError(f"reweighting starts at step {step} but only {int(seen.sum())} samples have embeddings; "
                                 f"{self.n_clusters} clusters need more (raise start_step)")
            fitted = fit_clusters(state.bank[seen].cpu().numpy(), self.n_clusters, seed=zlib.crc32(f"{self.seed}/{step}".encode()))
            centers = torch.from_numpy(fitted).to(centers.device)
        state.centers.copy_(distributed.all_reduce_sum(centers))

    def sample_weights(self, trainer, batch, loss: StepLoss) -> Weights | None:
        if loss.embeddings is None:
            raise ValueError("adversarial reweighting needs the objective's StepLoss.embeddings (one vector per sample)")
        rows = torch.as_tensor(batch.indices, device=self.state_.bank.device)
        unit = F.normalize(loss.embeddings.detach().float())
        self.state_.bank[rows] = unit
        self.state_.seen[rows] = 1.0
        if not self.active(trainer.step):
            return None
        clusters = nearest_cluster(unit, self.state_.centers)
        if self.pair_weight == "sum":
            return Weights(arl_weights(self.adversary(unit, clusters)))
        if loss.pairs is None:
            raise ValueError("pair_weight='pair' needs a pairwise loss (StepLoss.pairs)")
        i, j, _ = loss.pairs
        pairs = arl_weights(self.adversary(unit[i], unit[j], clusters[i], clusters[j]))
        return Weights(sample_weights_from_pairs(pairs, i, j, len(unit)), pairs)

    def after_backward(self, trainer) -> None:
        if not self.active(trainer.step):
            return
        for p in self.adversary.parameters():
            if p.grad is not None:
                distributed.all_reduce_sum(p.grad).div_(distributed.world_size())
                p.grad.neg_()  # the adversary ascends the weighted loss
