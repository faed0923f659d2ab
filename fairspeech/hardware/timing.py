"""Timing on a shared machine: thread CPU time (CUDA events on a GPU), warm-up, batches of calls,
medians and IQRs, load checks.

Why thread CPU time (``CLOCK_THREAD_CPUTIME_ID``): on a machine whose cores other jobs share, wall
time mostly measures how long the scheduler kept us waiting. With one torch thread every kernel
runs on the calling thread, so that thread's CPU time is the latency the operator would have on a
core of its own, which is what a latency profile of the device means. Wall time is kept beside it
to show the contention. (Cache and memory-bandwidth interference from other jobs still reaches CPU
time; many repeats and medians absorb most of it, and the load average is recorded.)

On a CUDA device kernels run asynchronously to the host, so host clocks would time their launches:
:class:`CudaEventClock` reads the device's own time between two events recorded on its stream.
Both clocks have one interface, :meth:`interval`, and the harness takes either.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch


class ThreadClock:
    """The calling thread's CPU time (see the module docstring): the host CPU's clock."""

    name = "thread CPU time"
    device = torch.device("cpu")

    def interval(self, fn: Callable[[], object], calls: int = 1) -> tuple[float, float]:
        """(clock seconds, wall seconds) per call of ``calls`` back-to-back calls of ``fn``."""
        cpu0, wall0 = time.thread_time_ns(), time.perf_counter_ns()
        for _ in range(calls):
            fn()
        cpu1, wall1 = time.thread_time_ns(), time.perf_counter_ns()
        return (cpu1 - cpu0) * 1e-9 / calls, (wall1 - wall0) * 1e-9 / calls

    def overhead_s(self, reads: int = 2000) -> float:
        """Time one pair of clock reads adds to a timed interval (a system call each, ~0.4 us here)."""
        gaps = []
        for _ in range(reads):
            a = time.thread_time_ns()
            b = time.thread_time_ns()
            gaps.append(b - a)
        return float(np.median(gaps)) * 1e-9


class CudaEventClock:
    """A CUDA device's time between two events on its current stream (the kernels' time, not their launches)."""

    name = "CUDA events"

    def __init__(self, device: str | torch.device = "cuda"):
        self.device = torch.device(device)

    def events(self) -> tuple["torch.cuda.Event", "torch.cuda.Event"]:
        return torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def interval(self, fn: Callable[[], object], calls: int = 1) -> tuple[float, float]:
        start, end = self.events()
        torch.cuda.synchronize(self.device)  # nothing earlier still queued in front of the first event
        wall0 = time.perf_counter_ns()
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        wall1 = time.perf_counter_ns()
        return start.elapsed_time(end) * 1e-3 / calls, (wall1 - wall0) * 1e-9 / calls

    def overhead_s(self, reads: int = 200) -> float:
        """Device time between two events recorded back to back."""
        gaps = []
        for _ in range(reads):
            start, end = self.events()
            start.record()
            end.record()
            end.synchronize()
            gaps.append(start.elapsed_time(end) * 1e-3)
        return float(np.median(gaps))


THREAD_CLOCK = ThreadClock()


def clock_for(device: str | torch.device) -> ThreadClock | CudaEventClock:
    """The clock that times work on ``device`` ('cpu', 'cuda', 'cuda:1')."""
    device = torch.device(device)
    if device.type == "cpu":
        return THREAD_CLOCK
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device}: torch sees no CUDA device on this machine")
        return CudaEventClock(device)
    raise ValueError(f"device {device}: timing supports cpu and cuda")


@dataclass
class Samples:
    """Per-call seconds of repeated measurements (each sample averages a batch of calls), with the
    reference workload's seconds timed next to each sample where there is one. ``cpu`` holds the
    clock's seconds: thread CPU time on the host, device time on a GPU."""

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


def measure(fn: Callable[[], object], repeats: int, calls: int = 1, warmup: int = 1,
            clock: ThreadClock | CudaEventClock = THREAD_CLOCK) -> Samples:
    """``repeats`` samples of ``calls`` back-to-back calls of ``fn``, after ``warmup`` unrecorded calls."""
    for _ in range(warmup):
        fn()
    samples = Samples(calls_per_sample=calls)
    for _ in range(repeats):
        seconds, wall = clock.interval(fn, calls)
        samples.cpu.append(seconds)
        samples.wall.append(wall)
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
