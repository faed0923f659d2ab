"""Accelerator profiles: what a target device can compute, loaded from small TOML files.

A leaf of the core layer (it needs only the config loader), so the ASR models (backlog simulation)
and the hardware estimator above them both read it without importing each other.

    profile = load_profile()                          # the default, profiles/single_thread_650mflops.toml
    profile = load_profile("path/to/device.toml")     # or any file with the same fields
    seconds = profile.seconds_for(flops)              # compute time at the profile's peak rate

``peak_flops`` drives the backlog simulation of :mod:`fairspeech.asr.backlog`; all fields feed the
latency and memory estimator of :mod:`fairspeech.hardware.estimator` (its roofline uses bandwidth,
on-chip memory, parallelism and the first precision). A file that is not a valid profile raises
:class:`ProfileError`, naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fairspeech.config import from_dict, read_toml
from fairspeech.errors import ConfigError, InputError

PROFILES_DIR = Path(__file__).resolve().parent / "hardware" / "profiles"  # the shipped profiles
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


class ProfileError(InputError, KeyError):
    """A profile file that cannot be used; ``path`` and ``field`` say where. (A KeyError too, as unknown
    fields used to raise one; an InputError, so the CLI reports it and exits 2.)"""

    def __init__(self, path: Path, field: str | None, message: str):
        self.path, self.field = path, field
        where = f"{path}: field {field!r}" if field else f"{path}"
        super().__init__(f"{where}: {message}")

    __str__ = ValueError.__str__  # not KeyError's, which would quote the message


# field -> (accepted types, required, check, what the check demands)
_REAL = (int, float)
_FIELD_RULES = {
    "name": ((str,), False, lambda v: bool(v), "a non-empty string"),
    "description": ((str,), False, lambda v: True, "a string"),
    "peak_flops": (_REAL, True, lambda v: v > 0, "a positive number (FLOP/s)"),
    "parallelism": ((int,), False, lambda v: v >= 1, "an integer of at least 1"),
    "memory_bandwidth": (_REAL, False, lambda v: v > 0, "a positive number (bytes/s)"),
    "onchip_memory": ((int,), False, lambda v: v >= 0, "a non-negative integer (bytes)"),
    "precisions": ((list,), False, lambda v: bool(v) and all(isinstance(p, str) and p for p in v), "a non-empty list of strings"),
}


def validate_profile_data(data: dict, path: Path) -> dict:
    """The fields of a parsed profile file, checked one by one; raises :class:`ProfileError`."""
    known_fields = set(AcceleratorProfile.__dataclass_fields__)
    unknown = set(data) - known_fields
    if unknown:
        raise ProfileError(path, sorted(unknown)[0], f"unknown profile field(s) {sorted(unknown)}; known: {sorted(known_fields)}")
    for field_name, (types, required, check, demand) in _FIELD_RULES.items():
        if field_name not in data:
            if required:
                raise ProfileError(path, field_name, f"missing; it must be {demand}")
            continue
        value = data[field_name]
        if isinstance(value, bool) or not isinstance(value, types) or not check(value):
            raise ProfileError(path, field_name, f"must be {demand}, got {value!r}")
    return data


def load_profile(name_or_path: str | Path = DEFAULT_PROFILE) -> AcceleratorProfile:
    """A profile by name (a file in ``fairspeech/hardware/profiles``) or by path to a TOML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES_DIR / f"{name_or_path}.toml"
    if not path.exists():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))
        raise FileNotFoundError(f"no accelerator profile {str(name_or_path)!r}; known profiles: {known}")
    try:
        data = read_toml(path)
    except ConfigError as error:  # not TOML, or a base file that is not there
        raise ProfileError(Path(error.source or path), None, error.message) from None
    data.setdefault("name", path.stem)
    validate_profile_data(data, path)
    return from_dict(AcceleratorProfile, data, str(path))
