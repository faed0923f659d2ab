"""Channel alignment: round a model's widths to multiples of a profile's parallelism factor.

A device with ``p`` lanes computes ``ceil(c / p)`` groups for ``c`` output channels, so a width just
above a multiple of ``p`` pays for a whole extra group (see :mod:`fairspeech.hardware.roofline`);
vector CPUs and GEMM libraries also favour aligned widths, less sharply. ``up`` keeps every channel
(capacity grows a little, latency usually does not), ``down`` sheds the partial group, ``nearest``
picks the closer multiple.

    align_channels(250, 16)                                   # 256
    align_widths(spec, profile.parallelism, mode="nearest")   # an ArchSpec with aligned widths
    alignment_effect(spec, profile)                           # estimated latency before and after
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from fairspeech.accelerator import AcceleratorProfile

MODES = ("up", "down", "nearest")

# The width fields of each architecture family of :mod:`fairspeech.hardware.zoo` (and of EncoderConfig).
WIDTH_FIELDS = {
    "transformer": ("dim", "ff_dim", "subsampling_channels"),
    "conformer": ("dim", "ff_dim"),
    "conv": ("channels",),
}


def align_channels(channels: int, multiple: int, mode: str = "up") -> int:
    """``channels`` rounded to a multiple of ``multiple`` (never below one multiple)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if channels < 1 or multiple < 1:
        raise ValueError(f"channels and multiple must be positive, got {channels} and {multiple}")
    if mode == "up":
        groups = math.ceil(channels / multiple)
    elif mode == "down":
        groups = channels // multiple
    else:
        groups = math.floor(channels / multiple + 0.5)
    return max(1, groups) * multiple


def _width_multiple(field: str, config: dict, parallelism: int) -> int:
    """The model dimension must also split evenly over the attention heads."""
    heads = int(config.get("heads", 1)) if field == "dim" else 1
    return parallelism * heads // math.gcd(parallelism, heads)


def align_config(config: dict, fields: tuple[str, ...], parallelism: int, mode: str = "up", defaults: dict | None = None) -> dict:
    """A copy of ``config`` with each width field aligned; fields absent from ``config`` are taken from ``defaults``."""
    aligned = dict(config)
    merged = {**(defaults or {}), **config}
    for field in fields:
        if field in merged:
            aligned[field] = align_channels(int(merged[field]), _width_multiple(field, merged, parallelism), mode)
    return aligned


def align_widths(spec, parallelism: int, mode: str = "up"):
    """An :class:`fairspeech.hardware.zoo.ArchSpec` whose widths are multiples of ``parallelism``."""
    from fairspeech.asr.encoder import EncoderConfig

    if spec.family not in WIDTH_FIELDS:
        raise ValueError(f"no width fields known for family {spec.family!r}; known: {sorted(WIDTH_FIELDS)}")
    defaults = dataclasses.asdict(EncoderConfig()) if spec.family == "transformer" else None
    return dataclasses.replace(spec, config=align_config(spec.config, WIDTH_FIELDS[spec.family], parallelism, mode, defaults))


def align_encoder_config(config, parallelism: int, mode: str = "up"):
    """The ASR stack's :class:`EncoderConfig` with ``dim``, ``ff_dim`` and ``subsampling_channels`` aligned."""
    values = align_config(dataclasses.asdict(config), WIDTH_FIELDS["transformer"], parallelism, mode)
    return dataclasses.replace(config, **values)


@dataclass
class AlignmentEffect:
    original: str
    aligned: str
    original_latency_s: float
    aligned_latency_s: float
    original_params_bytes: int
    aligned_params_bytes: int

    @property
    def latency_change(self) -> float:
        """Relative change of latency, aligned over original, minus one."""
        return self.aligned_latency_s / self.original_latency_s - 1.0

    def to_dict(self) -> dict:
        return dict(dataclasses.asdict(self), latency_change=self.latency_change)


def alignment_effect(spec, profile: AcceleratorProfile, mode: str = "up") -> AlignmentEffect:
    """Estimated latency of ``spec`` and of its aligned version on ``profile``."""
    from fairspeech.hardware import zoo
    from fairspeech.hardware.estimator import estimate

    aligned = align_widths(spec, profile.parallelism, mode)
    inputs = zoo.example_input(spec.seconds)
    before = estimate(zoo.build(spec), inputs, profile)
    after = estimate(zoo.build(aligned), inputs, profile)
    return AlignmentEffect(spec.name, aligned.name, before.latency_s, after.latency_s, before.params_bytes, after.params_bytes)
