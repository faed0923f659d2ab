"""Distillation towards a frozen teacher's per-frame CTC posteriors, a loss term for
:class:`fairspeech.training.Regularizer` (``(model, batch, output) -> (loss, stats)``).

    loss += weight * mean_utt [ w_u * mean_frames KL(p_teacher || p_model) ]

The teacher sees clean features (eval mode); the model sees the training loop's augmented batch.
``utterance_weights`` (per position of the train split) weight utterances: 1 for all by default.
Uses: a compute-amortized variant pulled towards the model it starts from (``[train] teacher``), so
skipping a block is learned against the full model's outputs rather than 1.6 hours of labels alone;
focal distillation towards the pre-update model (:mod:`fairspeech.mitigation.distill`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from fairspeech.training.protocol import as_asr_output


def posterior_kl(teacher_log_probs: torch.Tensor, log_probs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Per utterance, the mean over its valid frames of KL(teacher || model); inputs (batch, frames, vocab)."""
    mask = (torch.arange(log_probs.shape[1], device=log_probs.device)[None, :] < lengths[:, None]).to(log_probs.dtype)
    kl = (teacher_log_probs.exp() * (teacher_log_probs - log_probs)).sum(-1)
    return (kl * mask).sum(1) / lengths.clamp(min=1).to(log_probs.dtype)


class Distillation:
    """KL towards ``teacher`` (frozen, eval mode) on every batch, weighted per utterance."""

    def __init__(self, teacher: torch.nn.Module, weight: float = 1.0, utterance_weights: Sequence[float] | None = None):
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.weight = weight
        self.utterance_weights = None if utterance_weights is None else torch.as_tensor(np.asarray(utterance_weights, dtype=np.float32))

    def __call__(self, model, batch, output):
        with torch.no_grad():
            teacher = as_asr_output(self.teacher(batch.features, batch.lengths))
        output = as_asr_output(output)
        per_utt = posterior_kl(teacher.log_probs, output.log_probs, output.lengths)
        if self.utterance_weights is not None:
            per_utt = self.utterance_weights.to(per_utt.device)[torch.as_tensor(batch.indices)] * per_utt
        weighted = per_utt
        return self.weight * weighted.mean(), {"distill_kl": float(per_utt.mean().detach())}
