"""The model protocol the training layer trains, and the objectives that score a batch under it.

A recognizer is any ``nn.Module`` whose ``forward(features, lengths)`` returns per-frame CTC
log-probabilities: either an :class:`ASROutput` (fairspeech's own models, which may add an already
weighted ``penalty`` and logging ``stats``) or a plain ``(log_probs, lengths)`` tuple, with
``log_probs`` (batch, frames, vocab). ``features`` are whatever the model reads: log-mels for ours,
raw waveforms for wav2vec 2.0. An encoder-decoder model instead takes the references:
``forward(features, lengths, targets, target_lengths)`` returning an output with ``nll`` (per
utterance, summed over tokens); see :class:`Seq2SeqObjective` and :mod:`fairspeech.asr.hf`.

An objective turns (model, batch) into a :class:`StepLoss`: per-sample losses (so a reweighter can
weight them), the model's output (for regularizers), and optional utterance embeddings (what an
adversarial reweighter looks at). The model argument may be any callable with the module's
signature, e.g. a ``torch.func.functional_call`` closure, which is how the Fisher estimate takes
per-utterance gradients through the same objective.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch.nn import functional as F


@dataclass
class ASROutput:
    log_probs: torch.Tensor  # (batch, frames, vocab)
    lengths: torch.Tensor  # (batch,)
    penalty: torch.Tensor | None = None  # extra loss term, already weighted
    stats: dict = field(default_factory=dict)  # floats for logging
    routing: torch.Tensor | None = None  # (batch, frames) per-frame compute decision, where the model makes one
    embeddings: torch.Tensor | None = None  # (batch, dim) one vector per utterance (pooled encoder states), where offered


@dataclass
class Seq2SeqOutput:
    nll: torch.Tensor  # (batch,) -log p(reference | audio), summed over the reference's tokens
    lengths: torch.Tensor  # (batch,) tokens scored per utterance
    logits: torch.Tensor | None = None  # (batch, tokens, vocab): what distillation compares
    embeddings: torch.Tensor | None = None
    penalty: torch.Tensor | None = None
    stats: dict = field(default_factory=dict)


@dataclass
class StepLoss:
    """One batch scored: ``per_sample`` (batch,) losses, the model's ``output``, optional ``pairs``.

    ``pairs``: (i, j, losses) of a pairwise loss over the batch (speaker verification), weighted
    ``pair_weight`` beside the per-sample mean; a pair's weight is the sum of its samples' weights.
    """

    per_sample: torch.Tensor
    output: Any
    embeddings: torch.Tensor | None = None
    penalty: torch.Tensor | None = None
    pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    pair_weight: float = 1.0
    stats: dict = field(default_factory=dict)
    name: str = "sample_loss"  # the per-sample loss's name in the training log


@dataclass
class Weights:
    """Per-sample (and optionally per-pair) weights a reweighter puts on a :class:`StepLoss`."""

    samples: torch.Tensor
    pairs: torch.Tensor | None = None  # default: the sum of the two samples' weights


def combine(loss: StepLoss, weights: Weights | None = None) -> tuple[torch.Tensor, dict]:
    """The scalar to descend: weighted per-sample mean (sum w l / sum w, weights not differentiated
    through the normalizer), plus the weighted pair term, plus the model's penalty."""
    if weights is None:
        total = loss.per_sample.mean()
    else:
        w = weights.samples.to(loss.per_sample.dtype)
        total = (w * loss.per_sample).sum() / w.sum().detach()
    stats = {loss.name: float(total.detach())}
    if loss.pairs is not None:
        i, j, pair_losses = loss.pairs
        if weights is None:
            pair = pair_losses.mean()
        else:
            pw = weights.pairs if weights.pairs is not None else weights.samples[i] + weights.samples[j]
            pair = (pw * pair_losses).sum() / pw.sum().detach()
        stats["pair_loss"] = float(pair.detach())
        total = total + loss.pair_weight * pair
    if loss.penalty is not None:
        total = total + loss.penalty
    return total, stats


def as_asr_output(out) -> ASROutput:
    """A model's CTC output as an :class:`ASROutput` (a ``(log_probs, lengths)`` tuple is accepted)."""
    if isinstance(out, ASROutput):
        return out
    if isinstance(out, (tuple, list)) and len(out) == 2:
        return ASROutput(out[0], out[1])
    if hasattr(out, "log_probs") and hasattr(out, "lengths"):
        return ASROutput(out.log_probs, out.lengths, getattr(out, "penalty", None), dict(getattr(out, "stats", {}) or {}),
                         embeddings=getattr(out, "embeddings", None))
    raise TypeError(f"a CTC model must return (log_probs, lengths) or an object with .log_probs and .lengths, got {type(out).__name__}")


def move_to(obj, device: torch.device | str | None):
    """``obj`` with every tensor in it (dataclass fields, dicts, lists, tuples) on ``device``."""
    if device is None:
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: move_to(getattr(obj, f.name), device) for f in dataclasses.fields(obj) if f.init})
    if isinstance(obj, dict):
        return {k: move_to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in obj):
        return type(obj)(move_to(v, device) for v in obj)
    return obj


def model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class CTCObjective:
    """CTC loss per utterance, divided by its reference length (what ``ctc_loss(reduction="mean")``
    averages), plus the model's own penalty. ``blank_id``: the blank's index (0 for fairspeech's
    tokenizers; ``config.pad_token_id`` for transformers' ``*ForCTC`` models)."""

    def __init__(self, blank_id: int = 0):
        self.blank_id = blank_id

    def nll(self, out: ASROutput, batch) -> torch.Tensor:
        """Per utterance ``-log p(y | x)`` summed over frames (the Fisher's likelihood)."""
        return F.ctc_loss(out.log_probs.transpose(0, 1).float(), batch.targets, out.lengths, batch.target_lengths,
                          blank=self.blank_id, reduction="none", zero_infinity=True)

    def __call__(self, model: Callable, batch) -> StepLoss:
        out = as_asr_output(model(batch.features, batch.lengths))
        per_sample = self.nll(out, batch) / batch.target_lengths.clamp(min=1).to(torch.float32)
        return StepLoss(per_sample, out, out.embeddings, out.penalty, stats=dict(out.stats), name="ctc")


class Seq2SeqObjective:
    """Token-level cross-entropy of an encoder-decoder model, per utterance divided by its token count.

    The model is called as ``model(features, lengths, targets, target_lengths)`` and returns a
    :class:`Seq2SeqOutput` (teacher forcing is the model's business: see :class:`fairspeech.asr.hf.WhisperASR`).
    """

    def nll(self, out: Seq2SeqOutput, batch) -> torch.Tensor:
        return out.nll

    def __call__(self, model: Callable, batch) -> StepLoss:
        out = model(batch.features, batch.lengths, batch.targets, batch.target_lengths)
        per_sample = out.nll / out.lengths.clamp(min=1).to(out.nll.dtype)
        return StepLoss(per_sample, out, out.embeddings, out.penalty, stats=dict(out.stats), name="cross_entropy")
