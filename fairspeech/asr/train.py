"""The training loop: AdamW with warm-up and cosine decay, gradient clipping, CTC loss plus the model's
own penalty (compute or amortization), checkpoints with exact resume, a dev WER after each epoch.

    python -m fairspeech.asr.train recipes/asr_baseline/config.toml --exp-dir exp/asr_baseline [--set train.epochs=3]

Re-running the same command after an interruption continues from the newest checkpoint: the batch
order of an epoch is a function of ``(seed, epoch)`` and torch's RNG state is saved, so an
interrupted-and-resumed run ends with the same weights as an uninterrupted one.

Under ``torchrun`` (see :mod:`fairspeech.utils.distributed`) each rank takes its share of every
epoch's batches, DistributedDataParallel averages the gradients, and rank 0 alone writes checkpoints,
the dev WER and the model. Recipes built on this loop (EWC fine-tuning, neural diffs) change it
through :class:`TrainHooks` rather than copying it.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from fairspeech.asr import checkpoint as ckpt
from fairspeech.asr.config import RecipeConfig, build_model, load_config
from fairspeech.asr.data import Batch, SplitData, load_splits
from fairspeech.asr.distill import Distillation
from fairspeech.asr.evaluate import corpus_wer, load_trained, transcribe
from fairspeech.asr.tokenizer import tokenizer_from_dict, train_tokenizer
from fairspeech.data import schema
from fairspeech.utils import distributed, io


@dataclasses.dataclass
class TrainHooks:
    """What a recipe built on this loop changes, each optional.

    select_train: the train-split rows to learn from (a boolean mask over the split's manifest rows),
        e.g. the worst cohorts' speakers, plus replay.
    prepare_model: called once after initialization and before the optimizer is built: freeze
        weights, attach diff parametrizations. Only parameters left with ``requires_grad`` are trained.
    regularizer: ``(model, batch, output) -> (loss, stats)`` added to the CTC loss every step
        (the EWC penalty, distillation towards the old model).
    after_step: ``(model, step, total_steps)`` after each optimizer step (pruning schedules).
    finalize: ``(model)`` before the final model is written (fold diffs into plain weights).
    """

    select_train: Callable[[pd.DataFrame], Sequence[bool]] | None = None
    prepare_model: Callable[[torch.nn.Module], None] | None = None
    regularizer: Callable[[torch.nn.Module, Batch, object], tuple[torch.Tensor, dict]] | None = None
    after_step: Callable[[torch.nn.Module, int, int], None] | None = None
    finalize: Callable[[torch.nn.Module], None] | None = None


def sum_regularizers(*hooks):
    """One ``TrainHooks.regularizer`` adding several (losses summed, stats merged); None without any."""
    hooks = [hook for hook in hooks if hook is not None]
    if not hooks:
        return None

    def combined(model, batch, output):
        total, stats = 0.0, {}
        for hook in hooks:
            loss, extra = hook(model, batch, output)
            total = total + loss
            stats.update(extra)
        return total, stats
    return combined


def learning_rate(step: int, total_steps: int, config) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at ``total_steps``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def ctc_feasible(out_frames: int, target: torch.Tensor) -> bool:
    """CTC needs a frame per token plus one blank between each pair of equal neighbours."""
    repeats = int((target[1:] == target[:-1]).sum()) if len(target) > 1 else 0
    return out_frames >= len(target) + repeats


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def initialize_from(model: torch.nn.Module, path: str) -> dict:
    """Start from a trained model's weights where names and shapes match (a variant from its baseline).

    Parameters the source does not have (arbitrators, lean branches) keep their fresh initialization,
    or are derived by the model's own ``init_from_state`` when it defines one (e.g. an SVD of the
    slow weights).
    """
    weights, _ = ckpt.load_weights(path)
    if hasattr(model, "init_from_state"):
        return model.init_from_state(weights)
    own = model.state_dict()
    usable = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return {"loaded": len(usable), "fresh": sorted(set(own) - set(usable))}


def training_step(model, optimizer, batch, blank_id: int, step: int, total_steps: int, tc, hooks: TrainHooks | None = None) -> dict:
    """One optimizer step on ``batch`` (CTC plus the model's penalty and the hooks' regularizer, clipped
    gradients); returns the log record. ``model`` may be wrapped in DistributedDataParallel."""
    core = distributed.unwrap(model)
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(step, total_steps, tc)
    if hasattr(core, "on_step"):  # temperature annealing of the routing models
        core.on_step(step, total_steps)
    out = model(batch.features, batch.lengths)
    ctc = F.ctc_loss(out.log_probs.transpose(0, 1), batch.targets, out.lengths, batch.target_lengths, blank=blank_id, zero_infinity=True)
    loss = ctc + out.penalty if out.penalty is not None else ctc
    extra_stats = {}
    if hooks is not None and hooks.regularizer is not None:
        extra, extra_stats = hooks.regularizer(core, batch, out)
        loss = loss + extra
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_([p for p in core.parameters() if p.requires_grad], tc.grad_clip)
    optimizer.step()
    if hooks is not None and hooks.after_step is not None:
        hooks.after_step(core, step + 1, total_steps)
    return {"step": step + 1, "loss": loss.item(), "ctc": ctc.item(), "grad_norm": float(grad_norm), "lr": optimizer.param_groups[0]["lr"], **out.stats, **extra_stats}


def train(config: RecipeConfig, exp_dir: str | Path, stop_after_steps: int | None = None, hooks: TrainHooks | None = None) -> dict:
    """Train (or resume training) ``config`` in ``exp_dir``; returns the summary also written to train_summary.json.

    ``stop_after_steps`` ends the run early after that many steps *of this call* without a final
    checkpoint, as a kill would (used to test resuming). A model initialized from another
    (``train.init_from``) keeps that model's tokenizer, so fine-tuning on a subset cannot change the vocabulary.
    """
    exp_dir = Path(exp_dir)
    tc = config.train
    hooks = hooks or TrainHooks()
    distributed.init_from_env()
    main_rank = distributed.is_main()
    torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)

    splits = [config.data.train_split] + ([config.data.dev_split] if tc.dev_every else [])
    features_started = time.perf_counter()
    loaded = load_splits(config.data.manifest, splits, config.data.cache_dir,
                         max_utterances={config.data.train_split: config.data.max_train_utterances}, progress=tc.progress,
                         audio_dir=config.data.audio_dir)
    train_frame, train_cache = loaded[config.data.train_split]
    feature_seconds = time.perf_counter() - features_started  # near zero once cached
    if tc.init_from:
        tokenizer = tokenizer_from_dict(ckpt.load_weights(tc.init_from)[1]["tokenizer"])
    else:
        tokenizer = train_tokenizer(config.data.tokenizer, train_frame[schema.REFERENCE].tolist(), config.data.bpe_merges)
    if main_rank:
        tokenizer.save(exp_dir / "tokenizer.json")
    train_data = SplitData(train_cache, train_frame[schema.REFERENCE].tolist(), tokenizer)
    dev = None
    if tc.dev_every:
        dev_frame, dev_cache = loaded[config.data.dev_split]
        dev = (dev_frame, SplitData(dev_cache))

    model = build_model(config, tokenizer.vocab_size)
    model.frontend.cmvn.set_stats(*train_cache.mean_std())
    init_report = initialize_from(model, tc.init_from) if tc.init_from else None
    if hooks.prepare_model is not None:
        hooks.prepare_model(model)
    if tc.teacher:  # distillation towards a trained model's posteriors, beside the recipe's own regularizer
        teacher, teacher_tokenizer, _ = load_trained(tc.teacher)
        if teacher_tokenizer.to_dict() != tokenizer.to_dict():
            raise ValueError(f"train.teacher {tc.teacher}: its tokenizer differs from the model's, so their posteriors cannot be compared")
        hooks = dataclasses.replace(hooks, regularizer=sum_regularizers(hooks.regularizer, Distillation(teacher, tc.teacher_weight)))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=tc.lr, weight_decay=tc.weight_decay)

    subsample = model.frontend.subsampling.output_length
    selected = [True] * len(train_data) if hooks.select_train is None else [bool(x) for x in hooks.select_train(train_frame)]
    if len(selected) != len(train_data):
        raise ValueError(f"select_train returned {len(selected)} values for {len(train_data)} train utterances")
    usable = [i for i in range(len(train_data)) if selected[i] and ctc_feasible(int(subsample(int(train_data.frames[i]))), train_data.targets[i])]
    if not usable:
        raise ValueError("no train utterances left to learn from (selection empty, or every one too short for CTC)")
    batches_per_epoch = len(distributed.shard(train_data.batches(tc.max_frames_per_batch, [tc.seed, 0], usable)))
    total_steps = tc.epochs * batches_per_epoch

    checkpoints = exp_dir / "checkpoints"
    meta = ckpt.load_checkpoint(checkpoints, model, optimizer)
    progress = meta["progress"] if meta else {"epoch": 0, "batch": 0, "step": 0, "elapsed_s": 0.0, "log": [], "dev": []}
    core = model
    model = distributed.wrap(core, find_unused_parameters=config.kind != "ctc")  # routing models skip parameters per step
    if meta and main_rank:
        print(f"resuming from step {progress['step']} (epoch {progress['epoch']}, batch {progress['batch']})")

    def save() -> None:
        if main_rank:
            ckpt.save_checkpoint(checkpoints, progress["step"], core, optimizer, progress, keep=tc.keep_checkpoints)

    started = time.perf_counter()
    elapsed_before = progress["elapsed_s"]
    steps_this_call = 0
    stopped = "completed"
    bar = tqdm(total=total_steps, initial=progress["step"], desc=f"train {config.name}", disable=not (tc.progress and main_rank), mininterval=5.0)
    model.train()
    while progress["epoch"] < tc.epochs and stopped == "completed":
        batches = distributed.shard(train_data.batches(tc.max_frames_per_batch, [tc.seed, progress["epoch"]], usable))
        for batch in train_data.iterate(batches, start=progress["batch"]):
            record = training_step(model, optimizer, batch, tokenizer.blank_id, progress["step"], total_steps, tc, hooks)
            progress["step"] += 1
            progress["batch"] += 1
            steps_this_call += 1
            progress["elapsed_s"] = elapsed_before + time.perf_counter() - started
            bar.update(1)
            if progress["step"] % tc.log_every == 0:
                progress["log"].append(record)
                bar.set_postfix({k: f"{v:.3g}" for k, v in record.items() if k not in ("step", "lr")}, refresh=False)
            if stop_after_steps is not None and steps_this_call >= stop_after_steps:
                bar.close()
                return {"stopped": "stop_after_steps", "step": progress["step"]}
            if progress["step"] % tc.checkpoint_every == 0:
                save()
            if tc.max_minutes is not None and progress["elapsed_s"] > 60 * tc.max_minutes:
                stopped = "time limit"
                break
        else:
            progress["epoch"] += 1
            progress["batch"] = 0
            if main_rank and dev is not None and (progress["epoch"] % tc.dev_every == 0 or progress["epoch"] == tc.epochs):
                dev_frame, dev_data = dev
                hyps, _ = transcribe(core, dev_data, tokenizer, max_frames=config.eval.max_frames_per_batch)
                dev_wer = corpus_wer(dev_frame[schema.REFERENCE].tolist(), hyps)
                progress["elapsed_s"] = elapsed_before + time.perf_counter() - started  # dev decoding counts against the budget
                progress["dev"].append({"epoch": progress["epoch"], "step": progress["step"], "wer": dev_wer, "elapsed_s": progress["elapsed_s"]})
                tqdm.write(f"epoch {progress['epoch']}: dev WER {100 * dev_wer:.2f}% after {progress['elapsed_s'] / 60:.1f} min")
                model.train()
            save()
    bar.close()
    save()

    if hooks.finalize is not None:
        hooks.finalize(core)
    model_meta = {"config": config.to_dict(), "tokenizer": tokenizer.to_dict(), "step": progress["step"]}
    if main_rank:
        ckpt.save_model(exp_dir / "model.safetensors", core, model_meta)
    summary = {
        "name": config.name,
        "kind": config.kind,
        "stopped": stopped,
        "steps": progress["step"],
        "epochs_completed": progress["epoch"],
        "train_minutes": progress["elapsed_s"] / 60,
        "feature_minutes_this_run": feature_seconds / 60,
        "parameters": count_parameters(core),
        "world_size": distributed.world_size(),
        "train_utterances": len(usable),
        "train_utterances_infeasible_for_ctc": len(train_data) - len(usable),
        "train_audio_hours": float(train_frame[schema.DURATION].sum() / 3600) if schema.DURATION in train_frame else None,
        "threads": tc.threads,
        "init": init_report,
        "dev_by_epoch": progress["dev"],
        "log": progress["log"],
    }
    if main_rank:
        io.write_json(exp_dir / "train_summary.json", summary)
    distributed.barrier()  # every rank returns only once the model and summary are on disk
    return summary


FINGERPRINT = "fingerprint.json"


def reuse_or_reset(exp_dir: str | Path, fingerprint: dict, outputs: Sequence[str]) -> bool:
    """True when ``exp_dir`` holds every one of ``outputs`` from a run with exactly this ``fingerprint``
    (what the run depends on: settings, data, the model it starts from). Otherwise a folder left by a
    run of other (or unrecorded) settings is removed, the fingerprint recorded, and False returned:
    train, and an interrupted run of these settings resumes from its own checkpoints."""
    exp_dir = Path(exp_dir)
    marker = exp_dir / FINGERPRINT
    distributed.init_from_env()  # under torchrun rank 0 alone removes and records; the others wait for it
    if distributed.is_main():
        if exp_dir.exists() and (not marker.exists() or json.loads(marker.read_text(encoding="utf-8")) != json.loads(json.dumps(fingerprint))):
            shutil.rmtree(exp_dir)
        if not all((exp_dir / name).exists() for name in outputs):
            io.write_json(marker, fingerprint)
    distributed.barrier()
    return all((exp_dir / name).exists() for name in outputs)


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def training_record(exp_dir: str | Path) -> dict | None:
    """How the model in ``exp_dir`` was trained, from its train_summary.json (None when there is none)."""
    path = Path(exp_dir) / "train_summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text(encoding="utf-8"))
    return {key: summary.get(key) for key in ("stopped", "steps", "epochs_completed", "train_minutes", "train_utterances", "threads", "dev_by_epoch")}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Train a fairspeech ASR model from a recipe config.")
    parser.add_argument("config", help="recipe TOML ('none': defaults plus --set values)")
    parser.add_argument("--exp-dir", required=True, help="experiment directory (checkpoints, model, logs); rerun to resume")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value (repeatable)")
    args = parser.parse_args(argv)
    config = load_config(None if args.config == "none" else args.config, args.set)
    summary = train(config, args.exp_dir)
    if distributed.is_main():
        print(f"{summary['stopped']}: {summary['steps']} steps, {summary['epochs_completed']} epochs, {summary['train_minutes']:.1f} min")
    distributed.shutdown()


if __name__ == "__main__":
    main()
