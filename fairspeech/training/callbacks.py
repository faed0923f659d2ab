"""What plugs into :class:`fairspeech.training.Trainer`: a :class:`Callback` overrides the hooks it needs.

Order within a step: ``on_step_start`` -> objective -> ``sample_weights`` (at most one callback
reweights) -> ``regularize`` (terms added to the loss) -> backward -> ``after_backward`` -> clip and
optimizer step -> ``after_step``. Around the run: ``on_train_start`` (after the model is on its
device and before the optimizer is built: freeze weights, attach parametrizations),
``param_groups`` (the callback's own trainable parameters, e.g. an adversary), ``state_module``
(tensors that must survive a resume, saved in the checkpoint under ``name``), ``on_epoch_end``
(dev evaluation) and ``on_train_end`` (fold a diff into plain weights).
"""

from __future__ import annotations

from typing import Callable

import torch

from fairspeech.training.protocol import StepLoss, Weights


class Callback:
    name: str = "callback"  # its state's key in checkpoints

    def on_train_start(self, trainer) -> None:
        pass

    def param_groups(self, trainer) -> list[dict]:
        return []

    def state_module(self) -> torch.nn.Module | None:
        return None

    def on_step_start(self, trainer, step: int) -> None:
        pass

    def sample_weights(self, trainer, batch, loss: StepLoss) -> Weights | None:
        return None

    def regularize(self, trainer, batch, loss: StepLoss) -> tuple[torch.Tensor, dict] | None:
        return None

    def after_backward(self, trainer) -> None:
        pass

    def after_step(self, trainer, step: int) -> None:
        """``step``: optimizer steps taken so far."""

    def on_epoch_end(self, trainer, epoch: int) -> None:
        """``epoch``: epochs completed; may record into ``trainer.progress`` (JSON-ready values)."""

    def on_train_end(self, trainer) -> None:
        pass


class Regularizer(Callback):
    """A loss term ``fn(model, batch, output) -> (loss, stats)`` added every step: the EWC penalty
    (:meth:`fairspeech.mitigation.ewc.OnlineEWC.regularizer`), distillation towards a frozen model."""

    name = "regularizer"

    def __init__(self, fn: Callable):
        self.fn = fn

    def regularize(self, trainer, batch, loss: StepLoss):
        return self.fn(trainer.model, batch, loss.output)


class Snapshot(Callback):
    """Keeps the run's checkpoint at ``step`` in ``directory`` (beside the rolling ones): the shared
    first steps another run can start from (``Trainer.fit(start_from=(directory, step))``)."""

    name = "snapshot"

    def __init__(self, step: int, directory):
        self.step, self.directory = step, directory

    def after_step(self, trainer, step: int) -> None:
        if step == self.step:
            trainer.save_checkpoint(self.directory)
