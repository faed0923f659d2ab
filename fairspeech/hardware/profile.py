"""Accelerator profiles: what a target device can compute, loaded from small TOML files.

    profile = load_profile()                          # the default, profiles/single_thread_650mflops.toml
    profile = load_profile("path/to/device.toml")     # or any file with the same fields
    seconds = profile.seconds_for(flops)              # compute time at the profile's peak rate

Only ``peak_flops`` is used so far (the backlog simulation of :mod:`fairspeech.asr.backlog`); the
other fields describe the device for the cost estimators to come.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
DEFAULT_PROFILE = "single_thread_650mflops"


@dataclass(frozen=True)
class AcceleratorProfile:
    name: str
    peak_flops: float  # FLOP/s the device sustains
    parallelism: int = 1  # multiply-accumulates side by side
    memory_bandwidth: float | None = None  # bytes/s
    onchip_memory: int | None = None  # bytes
    precisions: tuple[str, ...] = field(default_factory=lambda: ("fp32",))
    description: str = ""

    def __post_init__(self):
        if not self.peak_flops > 0:
            raise ValueError(f"profile {self.name!r}: peak_flops must be positive, got {self.peak_flops}")
        if self.parallelism < 1:
            raise ValueError(f"profile {self.name!r}: parallelism must be at least 1, got {self.parallelism}")

    def seconds_for(self, flops: float) -> float:
        """Time to execute ``flops`` at the peak rate."""
        return flops / self.peak_flops

    def to_dict(self) -> dict:
        return {
            "name": self.name, "peak_flops": self.peak_flops, "parallelism": self.parallelism,
            "memory_bandwidth": self.memory_bandwidth, "onchip_memory": self.onchip_memory,
            "precisions": list(self.precisions), "description": self.description,
        }


def load_profile(name_or_path: str | Path = DEFAULT_PROFILE) -> AcceleratorProfile:
    """A profile by name (a file in ``fairspeech/hardware/profiles``) or by path to a TOML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES_DIR / f"{name_or_path}.toml"
    if not path.exists():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))
        raise FileNotFoundError(f"no accelerator profile {str(name_or_path)!r}; known profiles: {known}")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data.setdefault("name", path.stem)
    if "precisions" in data:
        data["precisions"] = tuple(data["precisions"])
    known_fields = set(AcceleratorProfile.__dataclass_fields__)
    unknown = set(data) - known_fields
    if unknown:
        raise KeyError(f"{path}: unknown profile fields {sorted(unknown)}; known: {sorted(known_fields)}")
    return AcceleratorProfile(**data)
