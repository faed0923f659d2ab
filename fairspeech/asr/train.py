"""Training fairspeech's own recognizers from a recipe config, on the training layer's loop
(:class:`fairspeech.training.Trainer`: AdamW, warm-up and cosine decay, clipping, exact resume, DDP).

    python -m fairspeech.asr.train recipes/asr_baseline/config.toml --exp-dir exp/asr_baseline [--set train.epochs=3]

This module adds what is specific to a recipe: log-mel caches, the tokenizer, length-bucketed batches
whose order is a function of ``(seed, epoch)``, the dev WER every ``dev_every`` epochs, and the model
file. Re-running the same command after an interruption continues from the newest checkpoint and ends
with the same weights as an uninterrupted run. Recipes built on it (EWC fine-tuning, neural diffs)
pass callbacks (:mod:`fairspeech.training.callbacks`) and a ``select_train`` mask rather than copying it.

Under ``torchrun`` (see :mod:`fairspeech.utils.distributed`) each rank takes its share of every
epoch's batches, DistributedDataParallel averages the gradients, and rank 0 alone writes checkpoints,
the dev WER and the model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from fairspeech.asr.config import RecipeConfig, build_model, load_config
from fairspeech.asr.data import SplitData, load_splits
from fairspeech.asr.distill import Distillation
from fairspeech.asr.evaluate import corpus_wer, load_trained, transcribe
from fairspeech.asr.tokenizer import tokenizer_from_dict, train_tokenizer
from fairspeech.data import schema
from fairspeech.training import checkpoint as ckpt
from fairspeech.training.callbacks import Callback, Regularizer
from fairspeech.training.protocol import CTCObjective
from fairspeech.training.trainer import Trainer, TrainerConfig
from fairspeech.utils import distributed, io


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


class DevWER(Callback):
    """Greedy dev WER after every ``every``-th epoch and the last (rank 0), kept in ``progress["dev"]``."""

    name = "dev"

    def __init__(self, frame: pd.DataFrame, data: SplitData, tokenizer, every: int, epochs: int, max_frames: int):
        self.frame, self.data, self.tokenizer = frame, data, tokenizer
        self.every, self.epochs, self.max_frames = every, epochs, max_frames

    def on_epoch_end(self, trainer, epoch: int) -> None:
        records = trainer.progress.setdefault("dev", [])
        if not distributed.is_main() or not (epoch % self.every == 0 or epoch == self.epochs):
            return
        hyps, _ = transcribe(trainer.model, self.data, self.tokenizer, max_frames=self.max_frames)
        wer = corpus_wer(self.frame[schema.REFERENCE].tolist(), hyps)
        elapsed = trainer.elapsed_s()
        records.append({"epoch": epoch, "step": trainer.step, "wer": wer, "elapsed_s": elapsed})
        tqdm.write(f"epoch {epoch}: dev WER {100 * wer:.2f}% after {elapsed / 60:.1f} min")


def train(config: RecipeConfig, exp_dir: str | Path, stop_after_steps: int | None = None, callbacks: Sequence[Callback] = (),
          select_train: Callable[[pd.DataFrame], Sequence[bool]] | None = None) -> dict:
    """Train (or resume training) ``config`` in ``exp_dir``; returns the summary also written to train_summary.json.

    ``callbacks``: what a recipe plugs in (EWC, distillation, a diff). ``select_train``: the train-split
    rows to learn from (a boolean mask over the split's manifest rows), e.g. the worst cohorts' speakers
    plus replay. ``stop_after_steps`` ends the run early after that many steps *of this call* without a
    final checkpoint, as a kill would (used to test resuming). A model initialized from another
    (``train.init_from``) keeps that model's tokenizer, so fine-tuning on a subset cannot change the vocabulary.
    """
    exp_dir = Path(exp_dir)
    tc = config.train
    callbacks = list(callbacks)
    distributed.init_from_env()
    main_rank = distributed.is_main()
    torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)

    splits = [config.data.train_split] + ([config.data.dev_split] if tc.dev_every else [])
    loaded = load_splits(config.data.manifest, splits, config.data.cache_dir,
                         max_utterances={config.data.train_split: config.data.max_train_utterances}, progress=tc.progress,
                         audio_dir=config.data.audio_dir)
    train_frame, train_cache = loaded[config.data.train_split]
    if tc.init_from:
        tokenizer = tokenizer_from_dict(ckpt.load_weights(tc.init_from)[1]["tokenizer"])
    else:
        tokenizer = train_tokenizer(config.data.tokenizer, train_frame[schema.REFERENCE].tolist(), config.data.bpe_merges)
    if main_rank:
        tokenizer.save(exp_dir / "tokenizer.json")
    train_data = SplitData(train_cache, train_frame[schema.REFERENCE].tolist(), tokenizer)
    if tc.dev_every:
        dev_frame, dev_cache = loaded[config.data.dev_split]
        callbacks.append(DevWER(dev_frame, SplitData(dev_cache), tokenizer, tc.dev_every, tc.epochs, config.eval.max_frames_per_batch))

    model = build_model(config, tokenizer.vocab_size)
    model.frontend.cmvn.set_stats(*train_cache.mean_std())
    init_report = initialize_from(model, tc.init_from) if tc.init_from else None
    if tc.teacher:  # distillation towards a trained model's posteriors, beside the recipe's own callbacks
        teacher, teacher_tokenizer, _ = load_trained(tc.teacher)
        if teacher_tokenizer.to_dict() != tokenizer.to_dict():
            raise ValueError(f"train.teacher {tc.teacher}: its tokenizer differs from the model's, so their posteriors cannot be compared")
        callbacks.append(Regularizer(Distillation(teacher, tc.teacher_weight)))

    subsample = model.frontend.subsampling.output_length
    selected = [True] * len(train_data) if select_train is None else [bool(x) for x in select_train(train_frame)]
    if len(selected) != len(train_data):
        raise ValueError(f"select_train returned {len(selected)} values for {len(train_data)} train utterances")
    usable = [i for i in range(len(train_data)) if selected[i] and ctc_feasible(int(subsample(int(train_data.frames[i]))), train_data.targets[i])]
    if not usable:
        raise ValueError("no train utterances left to learn from (selection empty, or every one too short for CTC)")

    def plan(epoch: int) -> list[list[int]]:
        return distributed.shard(train_data.batches(tc.max_frames_per_batch, [tc.seed, epoch], usable))

    trainer = Trainer(model, CTCObjective(tokenizer.blank_id), TrainerConfig.from_settings(tc), callbacks, exp_dir,
                      find_unused_parameters=config.kind != "ctc", name=f"train {config.name}")  # routing models skip parameters per step
    result = trainer.fit(plan, tc.epochs, make_batch=train_data.batch, stop_after_steps=stop_after_steps)
    if result["stopped"] == "stop_after_steps":
        return result
    model_meta = {"config": config.to_dict(), "tokenizer": tokenizer.to_dict(), "step": result["steps"]}
    if main_rank:
        ckpt.save_model(exp_dir / "model.safetensors", model, model_meta)
    summary = {
        "name": config.name,
        "kind": config.kind,
        **{k: result[k] for k in ("stopped", "steps", "epochs_completed", "train_minutes", "world_size")},
        "parameters": count_parameters(model),
        "train_utterances": len(usable),
        "train_utterances_infeasible_for_ctc": len(train_data) - len(usable),
        "train_audio_hours": float(train_frame[schema.DURATION].sum() / 3600) if schema.DURATION in train_frame else None,
        "threads": tc.threads,
        "init": init_report,
        "dev_by_epoch": trainer.progress.get("dev", []),
        "log": result["log"],
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
