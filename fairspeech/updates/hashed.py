"""Hashed diffs: a small vector of bucket values shared across a weight's entries by a fixed hash.

Entry ``p`` (flat position) of weight ``name`` gets ``sign(p) * buckets[bucket(p)]`` added to it, where
``bucket`` and ``sign`` come from one 64-bit hash (splitmix64) of the position keyed by the weight's
name and a seed stored in the diff's header (the hashing trick of Weinberger et al.; HashedNets).
Only ``buckets`` is trained and shipped; the hash is recomputed wherever the diff is applied.
"""

from __future__ import annotations

import math
import zlib
from typing import Sequence

import numpy as np
import torch
from torch import nn

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def hash_layout(name: str, numel: int, n_buckets: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(bucket index int64, sign +-1 float32) for each of ``numel`` positions of weight ``name``."""
    if n_buckets < 1:
        raise ValueError(f"{name}: need at least one bucket, got {n_buckets}")
    key = _splitmix64(np.array([(seed & 0xFFFFFFFF) << 32 | zlib.crc32(name.encode())], dtype=np.uint64))
    with np.errstate(over="ignore"):
        h = _splitmix64(np.arange(numel, dtype=np.uint64) + key)
    index = (h >> np.uint64(1)) % np.uint64(n_buckets)
    sign = 1.0 - 2.0 * (h & np.uint64(1)).astype(np.float32)
    return torch.from_numpy(index.astype(np.int64)), torch.from_numpy(sign)


def bucket_count(numel: int, ratio: float) -> int:
    """Buckets for a weight of ``numel`` entries at ``ratio`` buckets per entry (at least one, at most numel)."""
    return min(numel, max(1, math.ceil(ratio * numel)))


def budget_bucket_ratio(density: float, value_bytes: int = 2, index_bytes: int = 4) -> float:
    """Buckets per weight that give a hashed diff the bytes of a sparse diff at ``density`` (an index and a value per entry)."""
    return min(1.0, density * (index_bytes + value_bytes) / value_bytes)


class HashedDelta(nn.Module):
    """Parametrization ``base -> base + sign * buckets[index]`` with trainable zero-initialized ``buckets``."""

    def __init__(self, name: str, shape: Sequence[int], n_buckets: int, seed: int):
        super().__init__()
        self.shape = tuple(shape)
        self.buckets = nn.Parameter(torch.zeros(n_buckets))
        index, sign = hash_layout(name, int(torch.Size(shape).numel()), n_buckets, seed)
        # Recomputed from (name, seed) on construction: not worth carrying in checkpoints.
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("sign", sign, persistent=False)

    def forward(self, base: torch.Tensor) -> torch.Tensor:
        return base + (self.buckets[self.index] * self.sign).view(self.shape)


def hashed_delta(buckets: torch.Tensor, shape: Sequence[int], name: str, seed: int) -> torch.Tensor:
    """Dense float32 delta of ``shape`` from a weight's ``buckets``."""
    index, sign = hash_layout(name, int(torch.Size(shape).numel()), buckets.numel(), seed)
    return (buckets.float()[index.to(buckets.device)] * sign.to(buckets.device)).view(*shape)
