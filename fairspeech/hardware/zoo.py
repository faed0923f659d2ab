"""Small speech encoders to fit and validate the latency estimator on, and the named built-in models.

Three families, each a CTC model from (batch, frames, n_mels) log-mels to (batch, frames', vocab):

* ``transformer``: the ASR stack's own :class:`fairspeech.asr.ctc_model.CTCModel` (2-D convolutional
  subsampling, streaming chunked self-attention with rotary positions), any width, depth, heads;
* ``conformer``: 1-D convolutional subsampling, then macaron blocks (half feed-forward, self-attention,
  convolution module with GLU, depthwise convolution and batch norm, half feed-forward);
* ``conv``: a QuartzNet-like stack of depthwise-separable 1-D convolution blocks with residuals;
* ``asr``: any model of the ASR stack from its recipe (``{"kind": "amortized", "model": {...}}``),
  through :func:`fairspeech.asr.config.build_model`; used for the named built-ins, not sampled.

:func:`sample_specs` draws architectures at random (seeded) under a FLOP budget, so the fitting and
the validation sets are disjoint draws of the same space.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fairspeech.asr.ctc_model import ASROutput, CTCModel
from fairspeech.asr.encoder import EncoderConfig

N_MELS = 80
VOCAB = 29  # blank + space + apostrophe + 26 letters, as the ASR stack's default tokenizer
FAMILIES = ("transformer", "conformer", "conv")  # the sampled ones


@dataclass(frozen=True)
class ArchSpec:
    family: str
    config: dict = field(default_factory=dict)  # the family's constructor arguments
    seconds: float = 3.0  # input length at 100 feature frames per second

    @property
    def name(self) -> str:
        short = "-".join(f"{k}{v}" for k, v in sorted(self.config.items()))
        return f"{self.family}[{short}]@{self.seconds:g}s"

    def to_json(self) -> str:
        return json.dumps({"family": self.family, "config": self.config, "seconds": self.seconds}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ArchSpec":
        data = json.loads(text)
        return cls(data["family"], data["config"], data["seconds"])


# -- the conformer-like and convolutional families ---------------------------------------------------

class Conv1dSubsampling(nn.Module):
    """(batch, frames, n_mels) -> (batch, ~frames/4, dim): two stride-2 1-D convolutions over time."""

    def __init__(self, n_mels: int, dim: int, kernel: int = 3):
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, dim, kernel, stride=2)
        self.conv2 = nn.Conv1d(dim, dim, kernel, stride=2)
        self.kernel = kernel

    def output_length(self, lengths: torch.Tensor) -> torch.Tensor:
        for _ in range(2):
            lengths = (lengths - self.kernel) // 2 + 1
        return torch.clamp(lengths, min=0)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor):
        x = F.relu(self.conv1(features.transpose(1, 2)))
        x = F.relu(self.conv2(x))
        return x.transpose(1, 2), self.output_length(lengths)


class HalfFeedForward(nn.Module):
    def __init__(self, dim: int, ff_dim: int):
        super().__init__()
        self.norm, self.up, self.down = nn.LayerNorm(dim), nn.Linear(dim, ff_dim), nn.Linear(ff_dim, dim)

    def forward(self, x):
        return x + 0.5 * self.down(F.silu(self.up(self.norm(x))))


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm, self.qkv, self.out = nn.LayerNorm(dim), nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x, key_padding: torch.Tensor):
        batch, frames, dim = x.shape
        q, k, v = self.qkv(self.norm(x)).view(batch, frames, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=key_padding)
        return x + self.out(context.transpose(1, 2).reshape(batch, frames, dim))


class ConvModule(nn.Module):
    def __init__(self, dim: int, kernel: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.pointwise_in = nn.Conv1d(dim, 2 * dim, 1)
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.batch_norm = nn.BatchNorm1d(dim)
        self.pointwise_out = nn.Conv1d(dim, dim, 1)

    def forward(self, x):
        y = F.glu(self.pointwise_in(self.norm(x).transpose(1, 2)), dim=1)
        y = self.pointwise_out(F.silu(self.batch_norm(self.depthwise(y))))
        return x + y.transpose(1, 2)


class ConformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ff_dim: int, kernel: int):
        super().__init__()
        self.ff1, self.attn = HalfFeedForward(dim, ff_dim), SelfAttention(dim, heads)
        self.conv, self.ff2, self.norm = ConvModule(dim, kernel), HalfFeedForward(dim, ff_dim), nn.LayerNorm(dim)

    def forward(self, x, key_padding):
        return self.norm(self.ff2(self.conv(self.attn(self.ff1(x), key_padding))))


class ConformerCTC(nn.Module):
    def __init__(self, dim: int = 144, heads: int = 4, ff_dim: int = 576, layers: int = 4, kernel: int = 15, subsampling_kernel: int = 3):
        super().__init__()
        self.frontend = Conv1dSubsampling(N_MELS, dim, subsampling_kernel)
        self.blocks = nn.ModuleList(ConformerBlock(dim, heads, ff_dim, kernel) for _ in range(layers))
        self.head = nn.Linear(dim, VOCAB)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> ASROutput:
        x, lengths = self.frontend(features, lengths)
        key_padding = (torch.arange(x.shape[1])[None, :] < lengths[:, None])[:, None, None, :]
        for block in self.blocks:
            x = block(x, key_padding)
        return ASROutput(torch.log_softmax(self.head(x), dim=-1), lengths)


class SeparableBlock(nn.Module):
    """Depthwise convolution, pointwise convolution, batch norm, ReLU; residual when the width allows."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int):
        super().__init__()
        self.depthwise = nn.Conv1d(in_channels, in_channels, kernel, padding=kernel // 2, groups=in_channels)
        self.pointwise = nn.Conv1d(in_channels, out_channels, 1)
        self.batch_norm = nn.BatchNorm1d(out_channels)
        self.residual = in_channels == out_channels

    def forward(self, x):
        y = F.relu(self.batch_norm(self.pointwise(self.depthwise(x))))
        return x + y if self.residual else y


class ConvCTC(nn.Module):
    def __init__(self, channels: int = 256, blocks: int = 5, kernel: int = 11, stem_kernel: int = 11, stride: int = 2):
        super().__init__()
        self.stem = nn.Conv1d(N_MELS, channels, stem_kernel, stride=stride, padding=stem_kernel // 2)
        self.stem_norm = nn.BatchNorm1d(channels)
        self.blocks = nn.Sequential(*(SeparableBlock(channels, channels, kernel) for _ in range(blocks)))
        self.head = nn.Conv1d(channels, VOCAB, 1)
        self.stride, self.stem_kernel = stride, stem_kernel

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> ASROutput:
        x = F.relu(self.stem_norm(self.stem(features.transpose(1, 2))))
        x = self.head(self.blocks(x)).transpose(1, 2)
        out_lengths = (lengths + 2 * (self.stem_kernel // 2) - self.stem_kernel) // self.stride + 1
        return ASROutput(torch.log_softmax(x, dim=-1), out_lengths)


def build(spec: ArchSpec, seed: int = 0) -> nn.Module:
    """The model of ``spec`` in eval mode, weights drawn with ``seed`` (values do not affect latency)."""
    torch.manual_seed(seed)
    if spec.family == "transformer":
        model = CTCModel(EncoderConfig(n_mels=N_MELS, **spec.config), VOCAB)
    elif spec.family == "conformer":
        model = ConformerCTC(**spec.config)
    elif spec.family == "conv":
        model = ConvCTC(**spec.config)
    elif spec.family == "asr":
        model = build_recipe_model(spec.config)
    else:
        raise ValueError(f"unknown architecture family {spec.family!r}; known: {FAMILIES}")
    return model.eval()


def build_recipe_model(recipe: dict) -> nn.Module:
    """A model of the ASR stack from recipe sections (``kind``, ``model``, and the variant's own section)."""
    from fairspeech.asr.config import build_model, config_from_dict

    tree = {k: v for k, v in recipe.items() if k != "kind"}
    tree["model"] = dict(recipe.get("model", {}), kind=recipe.get("kind", "ctc"))
    return build_model(config_from_dict(tree), VOCAB)


def example_input(seconds: float, batch: int = 1, n_mels: int = N_MELS) -> tuple[torch.Tensor, torch.Tensor]:
    frames = int(round(seconds * 100))
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, frames, n_mels, generator=generator), torch.full((batch,), frames)


# -- sampling the architecture space -----------------------------------------------------------------

def _width(rng: np.random.Generator, low: int, high: int) -> int:
    """A width drawn log-uniformly; half the time a multiple of 16, else any multiple of 2 (misaligned widths occur)."""
    value = math.exp(rng.uniform(math.log(low), math.log(high)))
    step = 16 if rng.random() < 0.5 else 2
    return int(max(low, step * round(value / step)))


def _heads(rng: np.random.Generator, dim: int) -> int:
    options = [h for h in (1, 2, 4, 8) if dim % h == 0 and (dim // h) % 2 == 0]
    return int(rng.choice(options))


def random_spec(rng: np.random.Generator, family: str) -> ArchSpec:
    seconds = float(rng.choice([1.0, 2.0, 3.0, 4.0, 6.0]))
    if family == "transformer":
        dim = _width(rng, 64, 384)
        config = {"dim": dim, "heads": _heads(rng, dim), "ff_dim": _width(rng, dim, 4 * dim), "layers": int(rng.integers(1, 7)),
                  "subsampling_channels": int(rng.choice([8, 16, 24, 32])), "chunk_size": int(rng.choice([2, 4, 8])),
                  "left_chunks": int(rng.choice([2, 4, 8, 16]))}
    elif family == "conformer":
        dim = _width(rng, 64, 320)
        config = {"dim": dim, "heads": _heads(rng, dim), "ff_dim": _width(rng, dim, 4 * dim), "layers": int(rng.integers(1, 5)),
                  "kernel": int(rng.choice([7, 15, 31])), "subsampling_kernel": int(rng.choice([3, 5]))}
    else:
        config = {"channels": _width(rng, 64, 512), "blocks": int(rng.integers(2, 9)), "kernel": int(rng.choice([5, 11, 21, 33])),
                  "stem_kernel": int(rng.choice([5, 11])), "stride": int(rng.choice([2, 3]))}
    return ArchSpec(family, config, seconds)


def spec_flops(spec: ArchSpec) -> int:
    from fairspeech.asr.flops import count_flops

    model = build(spec)
    features, lengths = example_input(spec.seconds)
    return count_flops(lambda: model(features, lengths))


def sample_specs(n: int, seed: int, max_flops: float = 1.5e9, min_flops: float = 2e6, exclude: set[str] = frozenset()) -> list[ArchSpec]:
    """``n`` architectures, families in turn, whose forward pass costs between ``min_flops`` and
    ``max_flops`` (so a measurement takes tens of milliseconds, not seconds); none named in ``exclude``."""
    rng = np.random.default_rng(seed)
    specs: list[ArchSpec] = []
    seen = set(exclude)
    while len(specs) < n:
        spec = random_spec(rng, FAMILIES[len(specs) % len(FAMILIES)])
        if spec.name in seen or not min_flops <= spec_flops(spec) <= max_flops:
            continue
        seen.add(spec.name)
        specs.append(spec)
    return specs


# The reference workload timed beside every measurement (see fairspeech.hardware.timing): a small
# model of the kind measured, so that contention slows it as it slows them.
REFERENCE = ArchSpec("conformer", {"dim": 96, "heads": 2, "ff_dim": 192, "layers": 2, "kernel": 15}, 1.0)


# -- named built-in architectures (``fairspeech profile NAME``) --------------------------------------

BUILTIN: dict[str, ArchSpec] = {
    "asr_baseline": ArchSpec("asr", {"kind": "ctc"}, 3.0),  # the ASR stack's default config (dim 256 x 8 layers; the trained recipe is 192 x 6: profile its model file)
    "asr_amortized": ArchSpec("asr", {"kind": "amortized"}, 3.0),  # routed per frame; eval routing of untrained weights
    "asr_gated": ArchSpec("asr", {"kind": "gated"}, 3.0),
    "asr_small": ArchSpec("transformer", {"dim": 144, "heads": 4, "ff_dim": 576, "layers": 4}, 3.0),
    "conformer_small": ArchSpec("conformer", {"dim": 144, "heads": 4, "ff_dim": 576, "layers": 4, "kernel": 15}, 3.0),
    "conv_small": ArchSpec("conv", {"channels": 256, "blocks": 5, "kernel": 11}, 3.0),
}
