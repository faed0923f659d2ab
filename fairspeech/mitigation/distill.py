"""Focal distillation towards the pre-update model (Yan et al., "Positive-congruent training"), for CTC.

Negative flips are utterances the old model got right and the new one gets wrong. Focal distillation
adds a KL term pulling the new model's per-frame posteriors towards the old model's, weighted up on
what the old model got right:

    loss += weight * mean_utt [ (alpha + beta * right_u) * mean_frames KL(p_old || p_new) ]

``right_u`` is 1 for an utterance the old model transcribed exactly; with ``focus="words"`` it is the
share of the utterance's reference words the old model recognized (1 on an exact transcript), which
keeps a signal where a weak model gets few utterances exactly right. The old model sees clean
features (eval mode); the new one sees the training loop's augmented batch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from fairspeech.asr.distill import Distillation
from fairspeech.data import schema
from fairspeech.metrics.wer import alignment_counts, reference_hits
from fairspeech.metrics.normalize import TextNormalizer

FOCUSES = ("utterance", "words")


def old_model_right(references: Sequence[str], old_hypotheses: Sequence[str], focus: str = "utterance",
                    normalizer: TextNormalizer | None = None) -> np.ndarray:
    """Per utterance, how right the old model was: 1/0 exact transcript (``utterance``), or the share of reference words it hit (``words``)."""
    if focus not in FOCUSES:
        raise ValueError(f"focus must be one of {FOCUSES}, got {focus!r}")
    if focus == "utterance":  # exact: no substitution, deletion or insertion
        return (alignment_counts(references, old_hypotheses, normalizer)[schema.ERRORS].to_numpy() == 0).astype(np.float64)
    return np.array([float(h.mean()) if len(h) else 1.0 for h in reference_hits(references, old_hypotheses, normalizer)])


def focal_distillation(old_model: torch.nn.Module, right: Sequence[float], weight: float = 1.0, alpha: float = 0.0, beta: float = 1.0) -> Distillation:
    """A loss term for :class:`fairspeech.training.Regularizer`: KL towards ``old_model`` (frozen), utterance ``u`` weighted ``alpha + beta * right[u]``.

    ``right``: per position of the train split, the old model's correctness (see :func:`old_model_right`).
    """
    return Distillation(old_model, weight, alpha + beta * np.asarray(right, dtype=np.float64))
