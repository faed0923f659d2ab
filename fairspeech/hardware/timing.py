"""Timing on a shared machine: thread CPU time, warm-up, batches of calls, medians and IQRs, load checks.

Why thread CPU time (``CLOCK_THREAD_CPUTIME_ID``): on a machine whose cores other jobs share, wall
time mostly measures how long the scheduler kept us waiting. With one torch thread every kernel
runs on the calling thread, so that thread's CPU time is the latency the operator would have on a
core of its own, which is what a latency profile of the device means. Wall time is kept beside it
to show the contention. (Cache and memory-bandwidth interference from other jobs still reaches CPU
time; many repeats and medians absorb most of it, and the load average is recorded.)
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class Samples:
    """Per-call seconds of repeated measurements (each sample averages a batch of calls), with the
    reference workload's seconds timed next to each sample where there is one."""

    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    calls_per_sample: int = 1
    reference: list[float] = field(default_factory=list)

    def extend(self, other: "Samples") -> None:
        self.cpu.extend(other.cpu)
        self.wall.extend(other.wall)
        self.reference.extend(other.reference)

    def _ratios(self) -> np.ndarray:
        if len(self.reference) != len(self.cpu) or not self.cpu:
            raise ValueError(f"{len(self.cpu)} samples but {len(self.reference)} reference timings")
        return np.asarray(self.cpu) / np.asarray(self.reference)

    @property
    def ratio_median(self) -> float:
        """Median of time over the paired reference time: latency in units of the reference workload."""
        return float(np.median(self._ratios()))

    @property
    def ratio_iqr(self) -> float:
        q1, q3 = np.percentile(self._ratios(), [25, 75])
        return float(q3 - q1)

    @property
    def median(self) -> float:
        return float(np.median(self.cpu)) if self.cpu else math.nan

    @property
    def iqr(self) -> float:
        if not self.cpu:
            return math.nan
        q1, q3 = np.percentile(self.cpu, [25, 75])
        return float(q3 - q1)

    @property
    def wall_median(self) -> float:
        return float(np.median(self.wall)) if self.wall else math.nan


def calls_per_sample(fn: Callable[[], object], target_s: float = 2e-4, max_calls: int = 2000) -> int:
    """How many back-to-back calls make one sample last ``target_s``, so the clock's own cost (a system
    call, about a microsecond) stays below 1% of a sample."""
    start = time.thread_time_ns()
    fn()
    once = max(time.thread_time_ns() - start, 1) * 1e-9
    return int(min(max_calls, max(1, math.ceil(target_s / once))))


def measure(fn: Callable[[], object], repeats: int, calls: int = 1, warmup: int = 1) -> Samples:
    """``repeats`` samples of ``calls`` back-to-back calls of ``fn``, after ``warmup`` unrecorded calls."""
    for _ in range(warmup):
        fn()
    samples = Samples(calls_per_sample=calls)
    for _ in range(repeats):
        cpu0, wall0 = time.thread_time_ns(), time.perf_counter_ns()
        for _ in range(calls):
            fn()
        cpu1, wall1 = time.thread_time_ns(), time.perf_counter_ns()
        samples.cpu.append((cpu1 - cpu0) * 1e-9 / calls)
        samples.wall.append((wall1 - wall0) * 1e-9 / calls)
    return samples


def measure_with_setup(setup: Callable[[], object], fn: Callable[[object], object], repeats: int, warmup: int = 1) -> Samples:
    """Like :func:`measure` for calls that consume their input (in-place operators): ``setup()`` runs
    before each call, outside the clock."""
    for _ in range(warmup):
        fn(setup())
    samples = Samples()
    for _ in range(repeats):
        state = setup()
        cpu0, wall0 = time.thread_time_ns(), time.perf_counter_ns()
        fn(state)
        cpu1, wall1 = time.thread_time_ns(), time.perf_counter_ns()
        samples.cpu.append((cpu1 - cpu0) * 1e-9)
        samples.wall.append((wall1 - wall0) * 1e-9)
    return samples


def load_average() -> float:
    """One-minute load average of the machine."""
    return os.getloadavg()[0]


def wait_for_quiet(threshold: float = 1.2, max_wait_s: float = 120.0, poll_s: float = 10.0, log: Callable[[str], None] | None = None) -> float:
    """Wait (at most ``max_wait_s``) for the one-minute load average to drop below ``threshold``;
    return the load average when measurement starts. Never waits forever: other engineers' jobs
    may keep the machine busy for hours, and CPU time stays meaningful under load."""
    deadline = time.monotonic() + max_wait_s
    load = load_average()
    while load >= threshold and time.monotonic() < deadline:
        if log:
            log(f"load average {load:.2f} >= {threshold}; waiting")
        time.sleep(poll_s)
        load = load_average()
    return load


class LoadLog:
    """Load averages sampled during a measurement, summarized for the results JSON."""

    def __init__(self):
        self.values: list[float] = []

    def sample(self) -> float:
        value = load_average()
        self.values.append(value)
        return value

    def summary(self) -> dict:
        if not self.values:
            return {}
        v = np.asarray(self.values)
        return {"min": float(v.min()), "median": float(np.median(v)), "max": float(v.max()), "samples": len(v)}
