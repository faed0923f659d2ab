"""Verification trials built from a corpus, and cosine scoring with optional adaptive score normalization.

    trials = build_trials(frame["speaker_id"])                  # every pair of utterances
    trials = build_trials(speakers, max_nontarget=100_000, seed=0)  # all target pairs, a seeded sample of the rest
    scores = cosine_scores(embeddings, trials)
    scores = as_norm_scores(embeddings, cohort, trials, top_k=50)

A trial is an unordered pair of distinct utterances (left < right); it is a target trial when both
come from one speaker. Pairs within and across groups are all kept: per-group figures select the
trials whose two sides are in the group (:func:`fairspeech.metrics.verification.verification_report`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from fairspeech.metrics.bootstrap import stream
from fairspeech.verification.pretrained import l2_normalize


@dataclass
class Trials:
    left: np.ndarray  # utterance index (int64)
    right: np.ndarray
    target: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.left)

    def summary(self) -> dict:
        return {"trials": len(self), "target": int(self.target.sum()), "nontarget": int((~self.target).sum())}


def build_trials(speakers: Sequence, max_nontarget: int | None = None, seed: int = 0) -> Trials:
    """All target pairs; all non-target pairs, or ``max_nontarget`` of them drawn without replacement (seeded)."""
    speakers = pd.Series(speakers)
    missing = speakers.isna() | (speakers.astype(str).str.strip() == "")
    if missing.any():
        raise ValueError(f"speaker id missing at row {int(np.flatnonzero(missing.to_numpy())[0])} ({int(missing.sum())} rows in all)")
    codes = pd.factorize(speakers.astype(str))[0]
    left, right = np.triu_indices(len(codes), k=1)
    target = codes[left] == codes[right]
    if not target.any():
        raise ValueError("no target trials: every speaker has a single utterance")
    if max_nontarget is not None and (~target).sum() > max_nontarget:
        nontarget = np.flatnonzero(~target)
        keep = np.sort(np.r_[np.flatnonzero(target), stream(seed, "nontarget trials").choice(nontarget, size=max_nontarget, replace=False)])
        left, right, target = left[keep], right[keep], target[keep]
    return Trials(left.astype(np.int64), right.astype(np.int64), target)


def cosine_scores(embeddings: np.ndarray, trials: Trials, query: np.ndarray | None = None) -> np.ndarray:
    """Cosine score per trial; with ``query``, the left side is the enrolled ``embeddings`` (a gallery,
    e.g. an old model's) and the right side the ``query`` embeddings of the same utterances (a new model's)."""
    z = l2_normalize(np.asarray(embeddings, dtype=np.float64))
    q = z if query is None else l2_normalize(np.asarray(query, dtype=np.float64))
    if q.shape != z.shape:
        raise ValueError(f"gallery embeddings {z.shape} and query embeddings {q.shape} differ in shape")
    return np.einsum("ij,ij->i", z[trials.left], q[trials.right])


def as_norm_scores(embeddings: np.ndarray, cohort: np.ndarray, trials: Trials, top_k: int = 50) -> np.ndarray:
    """Adaptive symmetric score normalization (AS-norm, Matejka et al. 2017): each side's cosine score
    is standardized by the mean and std of its ``top_k`` highest scores against ``cohort`` embeddings."""
    z = l2_normalize(np.asarray(embeddings, dtype=np.float64))
    c = l2_normalize(np.asarray(cohort, dtype=np.float64))
    if len(c) < 2:
        raise ValueError(f"AS-norm needs a cohort of at least 2 embeddings, got {len(c)}")
    k = min(top_k, len(c))
    top = -np.sort(-(z @ c.T), axis=1)[:, :k]
    mean, std = top.mean(1), np.maximum(top.std(1), 1e-6)
    raw = cosine_scores(z, trials)
    return 0.5 * ((raw - mean[trials.left]) / std[trials.left] + (raw - mean[trials.right]) / std[trials.right])
