"""One training loop for every model of the project and the user's own: AdamW with warm-up and cosine
decay, gradient clipping, checkpoints with exact resume, DistributedDataParallel under ``torchrun``,
callbacks for what a recipe changes (EWC, distillation, diff parametrizations, adversarial reweighting).

    trainer = Trainer(model, CTCObjective(blank_id), TrainerConfig(lr=1e-4), callbacks=[ewc], exp_dir="runs/x")
    summary = trainer.fit(lambda epoch: batches_of(epoch), epochs=3)

``plan(epoch)`` returns this rank's batches of that epoch (or keys that ``make_batch`` turns into
batches), and must be a function of the epoch alone: a rerun of ``fit`` in the same ``exp_dir``
resumes from the newest checkpoint at the same position with the same RNG state, so an interrupted
and resumed run ends with the same weights as an uninterrupted one. Every batch is moved to the
model's device (``device``, default: where the model's parameters are).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from fairspeech.training import checkpoint as ckpt
from fairspeech.training.callbacks import Callback
from fairspeech.training.protocol import combine, model_device, move_to
from fairspeech.utils import distributed


@dataclass
class TrainerConfig:
    lr: float = 1e-3
    min_lr_ratio: float = 0.05  # cosine decay ends at lr * min_lr_ratio
    warmup_steps: int = 300
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    checkpoint_every: int = 100  # optimizer steps
    log_every: int = 10  # steps between records in the training log
    keep_checkpoints: int = 2
    max_minutes: float | None = None  # stop (with a checkpoint) once training has taken this long
    progress: bool = True

    @classmethod
    def from_settings(cls, settings) -> "TrainerConfig":
        """The loop's settings out of a recipe's ``[train]`` section (any object with these attributes)."""
        return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(cls) if hasattr(settings, f.name)})


def learning_rate(step: int, total_steps: int, config) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at ``total_steps``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


class Trainer:
    """Parameters: ``model`` (any ``nn.Module`` the ``objective`` can call), ``objective``
    (``(model, batch) -> StepLoss``: :class:`~fairspeech.training.protocol.CTCObjective`,
    :class:`~fairspeech.training.protocol.Seq2SeqObjective` or the user's), ``config``, ``callbacks``,
    ``exp_dir`` (checkpoints; None: no checkpoints, no resume), ``device``, ``find_unused_parameters``
    (DDP: True for models that skip parameters per step), ``name`` (progress bar).

    During :meth:`fit`: ``model`` (the unwrapped module), ``optimizer``, ``step``, ``total_steps``,
    ``progress`` (the JSON state a checkpoint keeps; callbacks may add keys), ``device``.
    """

    def __init__(self, model: torch.nn.Module, objective: Callable, config: TrainerConfig | None = None, callbacks: Sequence[Callback] = (),
                 exp_dir: str | Path | None = None, device: str | torch.device | None = None, find_unused_parameters: bool = False,
                 name: str = "train"):
        self.model = model
        self.objective = objective
        self.config = config or TrainerConfig()
        self.callbacks = list(callbacks)
        self.exp_dir = None if exp_dir is None else Path(exp_dir)
        self.device = device
        self.find_unused_parameters = find_unused_parameters
        self.name = name

    # -- the loop ------------------------------------------------------------------------------------
    def fit(self, plan: Callable[[int], Sequence], epochs: int, make_batch: Callable | None = None, total_steps: int | None = None,
            stop_after_steps: int | None = None, start_from: tuple[Path, int] | None = None, progress_defaults: dict | None = None,
            check_start: Callable[[dict], None] | None = None) -> dict:
        """Train ``epochs`` epochs of ``plan(epoch)``'s batches (resuming where a checkpoint left off).

        ``total_steps`` (the schedule's length) defaults to ``epochs * len(plan(0))``. ``stop_after_steps``
        ends this call after that many steps without a checkpoint, as a kill would (resume tests).
        ``start_from``: (checkpoint directory, step) to start from when ``exp_dir`` has none of its own
        (another run's shared first steps); ``check_start(progress)`` may refuse it. ``progress_defaults``:
        keys a fresh run's progress starts with (a fingerprint of its settings).
        Returns ``stopped``, ``steps``, ``epochs_completed``, ``train_minutes``, ``log``, ``world_size``.
        """
        cfg = self.config
        distributed.init_from_env()
        main_rank = distributed.is_main()
        if self.device is not None:
            self.model.to(self.device)
        self.device = model_device(self.model)
        for callback in self.callbacks:
            callback.on_train_start(self)
        groups = [{"params": trainable(self.model)}]
        for callback in self.callbacks:
            groups += callback.param_groups(self)
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        states = {cb.name: cb.state_module() for cb in self.callbacks if cb.state_module() is not None}
        self.total_steps = total_steps if total_steps is not None else epochs * len(plan(0))

        self._states = states
        checkpoints = self.exp_dir / "checkpoints" if self.exp_dir is not None else None
        meta = ckpt.load_checkpoint(checkpoints, self.model, self.optimizer, extra=states) if checkpoints is not None else None
        if meta is None and start_from is not None:
            meta = ckpt.load_checkpoint(start_from[0], self.model, self.optimizer, step=start_from[1], extra=states)
            if check_start is not None:
                check_start(meta["progress"])
        self.progress = meta["progress"] if meta else {"epoch": 0, "batch": 0, "step": 0, "elapsed_s": 0.0, "log": [], **(progress_defaults or {})}
        progress = self.progress
        if meta and main_rank:
            print(f"resuming from step {progress['step']} (epoch {progress['epoch']}, batch {progress['batch']})")
        wrapped = distributed.wrap(self.model, find_unused_parameters=self.find_unused_parameters)

        def save() -> None:
            if checkpoints is not None:
                self.save_checkpoint(checkpoints)

        started, elapsed_before = time.perf_counter(), progress["elapsed_s"]
        self.elapsed_s = lambda: elapsed_before + time.perf_counter() - started  # seconds trained, over every resumed call
        steps_this_call, stopped = 0, "completed"
        bar = tqdm(total=self.total_steps, initial=progress["step"], desc=self.name, disable=not (cfg.progress and main_rank), mininterval=5.0)
        self.model.train()
        while progress["epoch"] < epochs and stopped == "completed":
            batches = plan(progress["epoch"])
            for key in batches[progress["batch"]:]:
                batch = move_to(make_batch(key) if make_batch is not None else key, self.device)
                record = self.training_step(wrapped, batch)
                progress["step"] += 1
                progress["batch"] += 1
                steps_this_call += 1
                progress["elapsed_s"] = self.elapsed_s()
                for callback in self.callbacks:
                    callback.after_step(self, progress["step"])
                bar.update(1)
                if progress["step"] % cfg.log_every == 0:
                    progress["log"].append(record)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in record.items() if k not in ("step", "lr")}, refresh=False)
                if stop_after_steps is not None and steps_this_call >= stop_after_steps:
                    bar.close()
                    return {"stopped": "stop_after_steps", "steps": progress["step"]}
                if progress["step"] % cfg.checkpoint_every == 0:
                    save()
                if cfg.max_minutes is not None and progress["elapsed_s"] > 60 * cfg.max_minutes:
                    stopped = "time limit"
                    break
            else:
                progress["epoch"] += 1
                progress["batch"] = 0
                for callback in self.callbacks:
                    callback.on_epoch_end(self, progress["epoch"])
                progress["elapsed_s"] = self.elapsed_s()  # evaluation counts against the budget
                self.model.train()
                save()
        bar.close()
        save()
        for callback in self.callbacks:
            callback.on_train_end(self)
        return {"stopped": stopped, "steps": progress["step"], "epochs_completed": progress["epoch"], "train_minutes": progress["elapsed_s"] / 60,
                "world_size": distributed.world_size(), "log": progress["log"]}

    @property
    def step(self) -> int:
        return self.progress["step"]

    def save_checkpoint(self, directory: str | Path) -> None:
        """The run's state at this step into ``directory`` (rank 0; the others return)."""
        if distributed.is_main():
            ckpt.save_checkpoint(directory, self.progress["step"], self.model, self.optimizer, self.progress,
                                 keep=self.config.keep_checkpoints, extra=self._states)

    def training_step(self, wrapped: torch.nn.Module, batch) -> dict:
        """One optimizer step on ``batch``; returns its log record."""
        step = self.progress["step"]
        self.optimizer.param_groups[0]["lr"] = learning_rate(step, self.total_steps, self.config)  # callbacks' groups keep their own
        if hasattr(self.model, "on_step"):  # temperature annealing of the routing models
            self.model.on_step(step, self.total_steps)
        for callback in self.callbacks:
            callback.on_step_start(self, step)
        scored = self.objective(wrapped, batch)
        weights = None
        for callback in self.callbacks:
            offered = callback.sample_weights(self, batch, scored)
            if offered is not None:
                if weights is not None:
                    raise ValueError("two callbacks reweight the same batch; use one reweighter")
                weights = offered
        loss, stats = combine(scored, weights)
        stats.update(scored.stats)
        for callback in self.callbacks:
            extra = callback.regularize(self, batch, scored)
            if extra is not None:
                loss = loss + extra[0]
                stats.update(extra[1])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"], self.config.grad_clip)
        for callback in self.callbacks:
            callback.after_backward(self)
        self.optimizer.step()
        if weights is not None:
            stats |= {"weight_max": float(weights.samples.detach().max()), "weight_std": float(weights.samples.detach().std())}
        return {"step": step + 1, "loss": loss.item(), "grad_norm": float(grad_norm), "lr": self.optimizer.param_groups[0]["lr"],
                **{k: float(v) for k, v in stats.items()}}
