"""EWC fine-tuning of any model under the training protocol, for the cohorts an audit found worst.

    from fairspeech.mitigation.adapt import ewc_finetune
    summary = ewc_finetune(model, data, target_rows, lam=100.0, epochs=3, lr=1e-5, exp_dir="runs/ewc")

1. The diagonal Fisher of the model as it is, on the *whole* population (``population`` rows of
   ``data``, default all; at most ``fisher_samples`` of them, drawn with ``seed``).
2. Fine-tuning on the ``targets`` rows only, with ``lambda / 2 * sum F (theta - theta*)^2`` pulling
   every weight towards its pre-update value in proportion to how much the population's likelihood
   depends on it, through :class:`fairspeech.training.Trainer` (resumable in ``exp_dir``).

``data`` is a :class:`fairspeech.asr.data.UtteranceData` (a transformers model: waveforms or
Whisper log-mels) or :class:`fairspeech.asr.data.SplitData` (fairspeech's own log-mel caches);
``objective`` defaults to CTC with the model's ``blank_id`` (0 if it has none); pass
:class:`fairspeech.training.Seq2SeqObjective` for Whisper. Extra ``callbacks`` (focal distillation,
a diff, a reweighter) run beside the EWC penalty.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from fairspeech.mitigation.ewc import DiagonalFisher, OnlineEWC
from fairspeech.training.callbacks import Callback
from fairspeech.training.protocol import CTCObjective
from fairspeech.training.trainer import Trainer, TrainerConfig


def ewc_finetune(model: torch.nn.Module, data, targets: Sequence[int], objective=None, population: Sequence[int] | None = None,
                 lam: float = 100.0, fisher_samples: int | None = 500, fisher_kind: str = "empirical", epochs: int = 3,
                 lr: float = 1e-4, warmup_steps: int = 10, max_frames: int = 16000 * 60, exp_dir: str | Path | None = None,
                 seed: int = 0, callbacks: Sequence[Callback] = (), device: str | torch.device | None = None,
                 progress: bool = True) -> dict:
    """Fine-tune ``model`` in place on ``targets`` with EWC; returns the training summary plus the
    Fisher's sample size and the EWC distance travelled. ``max_frames``: padded input length per
    batch (samples for waveforms, frames for log-mels)."""
    targets = sorted({int(i) for i in targets})
    if not targets:
        raise ValueError("no target utterances to fine-tune on")
    if device is not None:
        model.to(device)
    objective = objective if objective is not None else CTCObjective(int(getattr(model, "blank_id", 0)))
    pool = np.arange(len(data)) if population is None else np.asarray(sorted(set(int(i) for i in population)))
    if fisher_samples is not None and len(pool) > fisher_samples:
        pool = np.sort(np.random.default_rng([seed, 1]).choice(pool, fisher_samples, replace=False))
    fisher = DiagonalFisher(kind=fisher_kind, seed=seed, progress=progress).fit(model, data, pool.tolist(), objective=objective)
    ewc = OnlineEWC().consolidate(model, fisher.fisher_)
    torch.manual_seed(seed)
    trainer = Trainer(model, objective, TrainerConfig(lr=lr, warmup_steps=warmup_steps, progress=progress), [ewc.callback(lam), *callbacks],
                      exp_dir=exp_dir, name="ewc fine-tuning")
    plan = lambda epoch: data.batches(max_frames, shuffle_seed=[seed, epoch], indices=targets)  # noqa: E731
    summary = trainer.fit(plan, epochs, make_batch=data.batch)
    with torch.no_grad():
        distance = float(ewc.distance(model))
    return {**summary, "fisher_samples": fisher.n_samples_, "target_utterances": len(targets), "lambda": lam,
            "ewc_distance": distance if math.isfinite(distance) else None}
