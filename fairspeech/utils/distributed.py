"""torch.distributed for the training recipes: the same script runs alone or under ``torchrun``.

    torchrun --nproc_per_node 2 -m fairspeech.asr.train recipes/asr_baseline/config.toml --exp-dir runs/x

``torchrun`` sets RANK/WORLD_SIZE/MASTER_ADDR; :func:`init_from_env` then joins the process group
(gloo on CPU, nccl when every rank has a GPU). Without those variables everything here is a no-op
for a single process, so library code calls these helpers unconditionally.
"""

from __future__ import annotations

import os
from typing import Sequence, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group torchrun describes; returns whether training is distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_world_size() > 1


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0 writes checkpoints, results and progress bars."""
    return rank() == 0


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items`` (every world_size-th from rank), cut to equal length on all ranks.

    Equal length matters: each optimizer step all-reduces gradients, so every rank must take the same
    number of steps. At most world_size - 1 items are left out per epoch, and the epoch's order (a
    function of the seed and epoch) decides which.
    """
    world = world_size()
    if world == 1:
        return list(items)
    per_rank = len(items) // world
    return list(items[rank()::world][:per_rank])


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (fp32 or wider is the caller's choice); returns it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def shutdown() -> None:
    """Leave the process group (end of a torchrun script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def wrap(model: torch.nn.Module, find_unused_parameters: bool = True) -> torch.nn.Module:
    """DistributedDataParallel around ``model`` when distributed, else ``model`` itself.

    ``find_unused_parameters`` defaults to True because the routing models (branched encoder, block
    gating) leave some parameters out of a step's graph.
    """
    if not is_distributed():
        return model
    device_ids = [torch.cuda.current_device()] if dist.get_backend() == "nccl" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=find_unused_parameters)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
