"""ARL weight normalization, pair weights, adversaries and the verification losses."""

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from fairspeech.training.reweighting import (PairAdversary, SampleAdversary, arl_weights, fit_clusters, nearest_cluster,
                                         pair_weights_from_samples, sample_weights_from_pairs)
from fairspeech.verification.losses import AAMSoftmax, PairwiseLogistic, all_pairs


def test_arl_weights_formula_and_mean_two():
    s = torch.tensor([0.1, 0.2, 0.3, 0.4])
    w = arl_weights(s)
    assert torch.allclose(w, 1 + 4 * s / 1.0)
    assert w.mean().item() == pytest.approx(2.0)
    assert torch.allclose(arl_weights(torch.full((5,), 0.3)), torch.full((5,), 2.0))
    with pytest.raises(ValueError):
        arl_weights(torch.zeros(0))


def test_pair_weight_is_sum_and_sample_marginals():
    lam = arl_weights(torch.tensor([0.2, 0.5, 0.9, 0.4, 0.1]))
    i, j = all_pairs(5)
    pair = pair_weights_from_samples(lam, i, j)
    assert torch.allclose(pair, lam[i] + lam[j])
    assert pair.mean().item() == pytest.approx(4.0)  # summed ARL weights average 4 over all pairs
    pair_adv = arl_weights(torch.rand(len(i)))
    marginal = sample_weights_from_pairs(pair_adv, i, j, 6)  # sample 5 is in no pair
    assert marginal[5].item() == 1.0
    expected0 = pair_adv[(i == 0) | (j == 0)].mean()
    assert marginal[0].item() == pytest.approx(expected0.item())
    assert marginal[:5].sum().item() == pytest.approx(2 * 5)  # 2n, like the sample variant


def test_adversaries_shapes_and_pair_symmetry():
    torch.manual_seed(0)
    z = F.normalize(torch.randn(6, 8))
    clusters = torch.tensor([0, 1, 2, 0, 1, 2])
    s = SampleAdversary(8, 3, hidden=4)(z, clusters)
    assert s.shape == (6,) and ((s > 0) & (s < 1)).all()
    pair = PairAdversary(8, 3, hidden=4)
    i, j = all_pairs(6)
    assert torch.allclose(pair(z[i], z[j], clusters[i], clusters[j]), pair(z[j], z[i], clusters[j], clusters[i]))


def test_clusters_fit_and_assign():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 0.05, (20, 2)) + [1, 0], rng.normal(0, 0.05, (20, 2)) + [0, 1]]).astype(np.float32)
    centers = fit_clusters(points, 2, seed=0)
    assert np.array_equal(centers, fit_clusters(points, 2, seed=0))
    labels = nearest_cluster(torch.from_numpy(points), torch.from_numpy(centers)).numpy()
    assert len(set(labels[:20])) == 1 and len(set(labels[20:])) == 1 and labels[0] != labels[20]
    with pytest.raises(ValueError, match="at least"):
        fit_clusters(points[:1], 2, seed=0)


def test_aam_softmax_margin():
    torch.manual_seed(0)
    emb, labels = torch.randn(5, 8), torch.tensor([0, 1, 2, 1, 0])
    head = AAMSoftmax(8, 3, margin=0.0, scale=10.0)
    cosine = F.normalize(emb) @ F.normalize(head.weight).T
    assert torch.allclose(head(emb, labels), F.cross_entropy(10 * cosine, labels, reduction="none"), atol=1e-5)
    head.margin = 0.3
    assert (head(emb, labels) > F.cross_entropy(10 * cosine, labels, reduction="none")).all()
    # the linear extension past theta = pi - m keeps the target logit finite and below the plain cosine
    assert torch.isfinite(head(-head.weight[[0]].detach(), torch.tensor([0]))).all()
    assert math.isfinite(head(emb, labels).sum().item())


def test_pairwise_loss_balances_targets_and_nontargets():
    torch.manual_seed(0)
    emb, labels = torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2])
    head = PairwiseLogistic()
    i, j, loss = head(emb, labels)
    z = F.normalize(emb)
    logits = head.scale * (z[i] * z[j]).sum(-1) + head.bias
    target = (labels[i] == labels[j]).float()
    raw = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    expected = 0.5 * raw[target == 1].mean() + 0.5 * raw[target == 0].mean()
    assert loss.mean().item() == pytest.approx(expected.item(), rel=1e-5)
