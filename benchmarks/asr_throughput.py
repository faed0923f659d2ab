"""Training throughput of the recognizer on 2 CPU cores: audio hours learned per minute of wall time.

    python benchmarks/asr_throughput.py [--config recipes/asr_baseline/config.toml] [--steps 40]

Runs the real training step (fairspeech.asr.train.training_step: CTC, AdamW, clipping) on the
config's cached train log-mels, in the same run for each setting, so the ratios hold on a noisy
machine:

* one process with 2 torch threads, length-bucketed batches (the recipe's setting);
* one process with 1 thread;
* one process with 2 threads and batches in random order (no bucketing: more padding);
* 2 DistributedDataParallel processes (gloo) with 1 thread each, bucketed: each takes every other
  batch and gradients are averaged.

Throughput counts real audio (unpadded frames x 10 ms) over the timed steps; the first ``--warmup``
steps of each setting are not timed. Writes benchmarks/results/asr_throughput.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save  # noqa: E402

FRAME_SECONDS = 0.01


def _setup(config_path: str, overrides: list[str]):
    from fairspeech.asr.config import build_model, load_config
    from fairspeech.asr.data import SplitData, load_splits
    from fairspeech.asr.tokenizer import train_tokenizer
    from fairspeech.data import schema

    config = load_config(None if config_path == "none" else config_path, overrides)
    frame, cache = load_splits(config.data.manifest, [config.data.train_split], config.data.cache_dir, progress=False,
                               audio_dir=config.data.audio_dir)[config.data.train_split]
    tokenizer = train_tokenizer(config.data.tokenizer, frame[schema.REFERENCE].tolist(), config.data.bpe_merges)
    data = SplitData(cache, frame[schema.REFERENCE].tolist(), tokenizer)
    torch.manual_seed(config.train.seed)
    model = build_model(config, tokenizer.vocab_size)
    model.frontend.cmvn.set_stats(*cache.mean_std())
    return config, data, tokenizer, model


def _run_steps(config, data, tokenizer, model, batches, warmup: int) -> dict:
    from fairspeech.asr.train import training_step
    from fairspeech.utils import distributed

    if len(batches) <= warmup:
        raise ValueError(f"only {len(batches)} batches for {warmup} warm-up steps: a larger train split or fewer --warmup")
    core = distributed.unwrap(model)
    optimizer = torch.optim.AdamW(core.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    model.train()
    audio_frames, padded_frames, started = 0, 0, None
    total = len(batches)
    for step, indices in enumerate(batches):
        if step == warmup:
            distributed.barrier()
            started = time.perf_counter()
        batch = data.batch(indices)
        training_step(model, optimizer, batch, tokenizer.blank_id, step, total, config.train)
        if step >= warmup:
            audio_frames += int(batch.lengths.sum())
            padded_frames += batch.features.shape[0] * batch.features.shape[1]
    distributed.barrier()
    wall = time.perf_counter() - started
    return {"wall_s": wall, "audio_frames": audio_frames, "padded_frames": padded_frames, "steps": total - warmup}


def _summary(name: str, measured: dict, world: int, threads: int, bucketed: bool) -> dict:
    audio_hours = measured["audio_frames"] * FRAME_SECONDS / 3600
    return {
        "setting": name, "processes": world, "threads_per_process": threads, "bucketed": bucketed,
        "timed_steps_per_process": measured["steps"], "wall_s": round(measured["wall_s"], 2),
        "audio_hours": round(audio_hours, 4),
        "audio_hours_per_minute": round(audio_hours / (measured["wall_s"] / 60), 3),
        "padding_share": round(1 - measured["audio_frames"] / measured["padded_frames"], 4),
    }


def single_process(config_path, overrides, threads: int, bucketed: bool, steps: int, warmup: int) -> dict:
    torch.set_num_threads(threads)
    config, data, tokenizer, model = _setup(config_path, overrides)
    batches = data.batches(config.train.max_frames_per_batch, [config.train.seed, 0], bucketed=bucketed)[: steps + warmup]
    measured = _run_steps(config, data, tokenizer, model, batches, warmup)
    return _summary(f"1 process x {threads} thread(s){'' if bucketed else ', no bucketing'}", measured, 1, threads, bucketed)


def _ddp_worker(rank: int, world: int, port: int, config_path, overrides, steps, warmup, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    from fairspeech.utils import distributed

    torch.set_num_threads(1)
    distributed.init_from_env("gloo")
    config, data, tokenizer, model = _setup(config_path, overrides)
    batches = distributed.shard(data.batches(config.train.max_frames_per_batch, [config.train.seed, 0]))[: steps + warmup]
    measured = _run_steps(config, data, tokenizer, distributed.wrap(model, find_unused_parameters=False), batches, warmup)
    totals = torch.tensor([measured["audio_frames"], measured["padded_frames"]], dtype=torch.float64)
    distributed.all_reduce_sum(totals)
    if rank == 0:
        measured.update(audio_frames=int(totals[0]), padded_frames=int(totals[1]))
        queue.put(measured)
    distributed.shutdown()


def ddp(config_path, overrides, steps: int, warmup: int, world: int = 2, port: int = 29517) -> dict:
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    mp.start_processes(_ddp_worker, args=(world, port, config_path, overrides, steps, warmup, queue), nprocs=world,
                       start_method="spawn")
    return _summary(f"{world} DDP processes x 1 thread", queue.get(), world, 1, True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="recipes/asr_baseline/config.toml", help="recipe TOML ('none': defaults plus --set)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--steps", type=int, default=40, help="timed optimizer steps per setting (per process for DDP)")
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    runs = [
        single_process(args.config, args.set, 2, True, args.steps, args.warmup),
        single_process(args.config, args.set, 1, True, args.steps, args.warmup),
        single_process(args.config, args.set, 2, False, args.steps, args.warmup),
        ddp(args.config, args.set, args.steps, args.warmup),
    ]
    best = max(runs, key=lambda r: r["audio_hours_per_minute"])
    reference = runs[0]["audio_hours_per_minute"]
    for run in runs:
        run["ratio_to_recipe_setting"] = round(run["audio_hours_per_minute"] / reference, 3)
    save("asr_throughput", {"benchmark": "asr_throughput", "config": args.config, "overrides": args.set,
                            "machine": machine(), "runs": runs, "fastest": best["setting"]})


if __name__ == "__main__":
    main()
