"""Measure this machine's CPU as an accelerator profile (one torch thread), instead of guessing it.

* ``peak_flops``: the best sustained rate of large float32 matrix products (the most any operator gets);
* ``memory_bandwidth``: a copy of a buffer far larger than the caches (bytes read + written per second);
* ``parallelism``: float32 lanes of the widest vector unit the CPU reports (AVX-512: 16, AVX2: 8);
* ``onchip_memory``: the per-core L2 cache, where a layer's weights stay between uses;
* ``precisions``: float32, plus bfloat16 / int8 where the CPU has instructions for them.

Rates are taken on the thread's CPU clock (see :mod:`fairspeech.hardware.timing`).

A CUDA device of this host is measured the same way on its own clock (:func:`measure_cuda_profile`):
peak rate and bandwidth timed with CUDA events, the L2 cache as on-chip memory, and a parallelism
factor of 8, the matrix-multiply tile NVIDIA's performance guide asks channel counts to be multiples of.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from fairspeech.accelerator import AcceleratorProfile
from fairspeech.hardware.timing import THREAD_CLOCK, CudaEventClock, ThreadClock, measure


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def vector_lanes_fp32(flags: set[str]) -> int:
    if "avx512f" in flags:
        return 16
    if "avx2" in flags or "avx" in flags:
        return 8
    return 4  # SSE / NEON width


def l2_bytes_per_core() -> int:
    """Size of the L2 cache of cpu0 from sysfs (e.g. '2048K'), 1 MiB where sysfs does not say."""
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if (index / "level").read_text().strip() == "2":
                text = (index / "size").read_text().strip().upper()
                scale = {"K": 1024, "M": 1024**2}.get(text[-1], 1)
                return int(text.rstrip("KM")) * scale
        except OSError:
            continue
    return 1024**2


def precisions(flags: set[str]) -> list[str]:
    found = ["fp32"]
    if flags & {"avx512_bf16", "amx_bf16"}:
        found.append("bf16")
    if flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        found.append("int8")
    return found


def measure_peak_flops(size: int = 1024, repeats: int = 15, clock: ThreadClock | CudaEventClock = THREAD_CLOCK) -> float:
    """Best sustained FLOP/s of ``size`` x ``size`` float32 products on the clock's device (several
    shapes; the best median)."""
    best = 0.0
    for n in (size // 2, size, 2 * size):
        a, b = torch.randn(n, n, device=clock.device), torch.randn(n, n, device=clock.device)
        seconds = measure(lambda: torch.mm(a, b), repeats, calls=1, warmup=2, clock=clock).median
        best = max(best, 2 * n**3 / seconds)
    return best


def measure_memory_bandwidth(megabytes: int = 256, repeats: int = 9, clock: ThreadClock | CudaEventClock = THREAD_CLOCK) -> float:
    """Bytes per second of a large copy (read once, written once) on the clock's device."""
    src = torch.empty(megabytes * 1024**2 // 4, device=clock.device).normal_()
    dst = torch.empty_like(src)
    seconds = measure(lambda: dst.copy_(src), repeats, calls=1, warmup=1, clock=clock).median
    return 2 * src.numel() * 4 / seconds


def measure_host_profile(name: str = "cpu_host") -> AcceleratorProfile:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        flags = cpu_flags()
        return AcceleratorProfile(
            name=name,
            peak_flops=measure_peak_flops(),
            parallelism=vector_lanes_fp32(flags),
            memory_bandwidth=measure_memory_bandwidth(),
            onchip_memory=l2_bytes_per_core(),
            precisions=tuple(precisions(flags)),
            description=f"this machine's CPU, one thread ({cpu_model_name()}); measured with fairspeech.hardware.host",
        )
    finally:
        torch.set_num_threads(threads)


def measure_cuda_profile(name: str, clock: CudaEventClock) -> AcceleratorProfile:
    """A CUDA device of this host as a profile, float32 as the harness times it."""
    props = torch.cuda.get_device_properties(clock.device)
    precisions = ["fp32", "fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else []) + ["int8"]
    return AcceleratorProfile(
        name=name,
        peak_flops=measure_peak_flops(size=4096, clock=clock),
        parallelism=8,
        memory_bandwidth=measure_memory_bandwidth(megabytes=1024, clock=clock),
        onchip_memory=int(getattr(props, "L2_cache_size", 0)) or None,
        precisions=tuple(precisions),
        description=f"{props.name} ({props.multi_processor_count} SMs), CUDA events; measured with fairspeech.hardware.host",
    )


def profile_toml(profile: AcceleratorProfile, note: str = "") -> str:
    """The profile as a TOML file (the format :func:`fairspeech.accelerator.load_profile` reads)."""
    lines = [f"# {line}" for line in note.splitlines()] if note else []
    lines += [
        f'name = "{profile.name}"',
        f'description = "{profile.description}"',
        f"peak_flops = {profile.peak_flops:.4g}          # FLOP/s",
        f"parallelism = {profile.parallelism}             # multiply-accumulates issued side by side",
    ]
    if profile.memory_bandwidth is not None:
        lines.append(f"memory_bandwidth = {profile.memory_bandwidth:.4g}    # bytes/s")
    if profile.onchip_memory is not None:
        lines.append(f"onchip_memory = {profile.onchip_memory}       # bytes")
    lines += [
        "precisions = [" + ", ".join(f'"{p}"' for p in profile.precisions) + "]",
    ]
    return "\n".join(lines) + "\n"
