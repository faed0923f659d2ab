"""A streaming-friendly transformer encoder: 4x convolutional subsampling, then pre-norm transformer
layers whose self-attention is limited to a chunk plus a few chunks of left context.

Streaming: frames are grouped in chunks of ``chunk_size`` encoder frames (40 ms each after 4x
subsampling); a frame sees its own chunk and ``left_chunks`` chunks before it, never a later chunk.
The look-ahead is therefore at most ``chunk_size - 1`` frames however deep the stack (unlike a
per-layer right context, which adds up layer after layer). Positions enter through rotary embeddings,
which are relative, so the model is indifferent to where in a long stream a chunk falls.

The layer is written as named pieces (``qkv_projection``, :func:`attend`, ``attention_output``,
``feed_forward``) so the compute-amortized variants in :mod:`fairspeech.asr.amortized` and
:mod:`fairspeech.asr.block_gating` compose the same pieces instead of copying them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

NEG_INF = float("-inf")


@dataclass
class EncoderConfig:
    n_mels: int = 80
    dim: int = 256
    heads: int = 4
    ff_dim: int = 1024
    layers: int = 8
    subsampling_channels: int = 32
    chunk_size: int = 4
    left_chunks: int = 8
    dropout: float = 0.1
    conv_kernel: int = 0  # > 0: a causal depthwise convolution module in each layer (conformer-style); 0: none


class Conv2dSubsampling(nn.Module):
    """(batch, frames, n_mels) -> (batch, ~frames/4, dim): two stride-2 3x3 convolutions, then a projection.

    No padding in time, so output frame ``i`` depends only on input frames ``4i .. 4i+6``.
    """

    def __init__(self, n_mels: int, dim: int, channels: int = 32):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2), nn.ReLU(),
        )
        self.proj = nn.Linear(channels * self.output_length(n_mels), dim)

    @staticmethod
    def output_length(length):
        """Length after the two convolutions (frames or mel bins; ints or tensors)."""
        for _ in range(2):
            length = (length - 1) // 2
        return length

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(features.unsqueeze(1))  # (batch, channels, frames', mels')
        x = self.proj(x.permute(0, 2, 1, 3).flatten(2))
        return x, torch.clamp(self.output_length(lengths), min=0)


def linear(in_dim: int, out_dim: int, rank: int | None = None) -> nn.Module:
    """A dense layer, or a rank-``rank`` factorization of one (the lean branch of an amortized encoder)."""
    if rank is None or rank >= min(in_dim, out_dim):
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, rank, bias=False), nn.Linear(rank, out_dim))


class FeedForward(nn.Module):
    def __init__(self, dim: int, ff_dim: int, dropout: float, rank: int | None = None):
        super().__init__()
        self.up = linear(dim, ff_dim, rank)
        self.down = linear(ff_dim, dim, rank)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.dropout(F.silu(self.up(x))))


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al.) for (batch, heads, frames, head_dim) queries and keys."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = torch.arange(x.shape[-2], dtype=torch.float32, device=x.device)[:, None] * self.inv_freq
        cos, sin = angles.cos(), angles.sin()
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


def attend(qkv: torch.Tensor, heads: int, bias: torch.Tensor, rope: RotaryEmbedding) -> torch.Tensor:
    """Multi-head attention of packed (batch, frames, 3*dim) projections under an additive bias."""
    batch, frames, _ = qkv.shape
    q, k, v = qkv.view(batch, frames, 3, heads, -1).permute(2, 0, 3, 1, 4)
    context = F.scaled_dot_product_attention(rope(q), rope(k), v, attn_mask=bias)
    return context.transpose(1, 2).reshape(batch, frames, -1)


def streaming_bias(lengths: torch.Tensor, frames: int, chunk_size: int, left_chunks: int) -> torch.Tensor:
    """(batch, 1, frames, frames) additive attention bias: 0 where query ``t`` may see key ``s``, -inf elsewhere.

    Allowed: ``s`` in ``t``'s chunk or one of the ``left_chunks`` before it, and ``s`` not padding. The
    diagonal is always allowed so that no row is empty (a padded query's output is never used).
    """
    device = lengths.device
    chunk = torch.arange(frames, device=device) // chunk_size
    delta = chunk[:, None] - chunk[None, :]
    window = (delta >= 0) & (delta <= left_chunks)
    valid_key = torch.arange(frames, device=device)[None, :] < lengths[:, None]
    allowed = window[None] & valid_key[:, None, :]
    allowed |= torch.eye(frames, dtype=torch.bool, device=device)[None]
    bias = torch.zeros(allowed.shape, dtype=torch.float32, device=device).masked_fill_(~allowed, NEG_INF)
    return bias.unsqueeze(1)


class CausalConvModule(nn.Module):
    """Conformer convolution module, causal: norm, pointwise + GLU, depthwise over past frames, norm, SiLU, pointwise.

    Split into per-frame pieces (``inner``, ``outer``) around the sequence piece (``depthwise``) so
    the amortized encoder can route the pointwise layers frame by frame. It gives each frame its
    neighbourhood directly, which makes CTC training converge in far fewer steps than attention alone.
    """

    def __init__(self, dim: int, kernel: int, dropout: float, rank: int | None = None):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.pointwise_in = linear(dim, 2 * dim, rank)
        self.depthwise_conv = nn.Conv1d(dim, dim, kernel, groups=dim)
        self.depthwise_norm = nn.LayerNorm(dim)
        self.pointwise_out = linear(dim, dim, rank)
        self.dropout = nn.Dropout(dropout)

    def inner(self, x: torch.Tensor) -> torch.Tensor:
        return F.glu(self.pointwise_in(self.norm(x)), dim=-1)

    def depthwise(self, u: torch.Tensor) -> torch.Tensor:
        """(batch, frames, dim): frame t sees frames t-kernel+1 .. t (zeros before the start)."""
        padded = F.pad(u.transpose(1, 2), (self.depthwise_conv.kernel_size[0] - 1, 0))
        return F.silu(self.depthwise_norm(self.depthwise_conv(padded).transpose(1, 2)))

    def outer(self, v: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.pointwise_out(v))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(self.depthwise(self.inner(x)))


class TransformerLayer(nn.Module):
    """Pre-norm layer: ``x + attention(norm(x))``, then (if any) ``x + conv(x)``, then ``x + feed_forward(norm(x))``."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float = 0.1, rank: int | None = None, conv_kernel: int = 0):
        super().__init__()
        self.heads = heads
        self.attn_norm = nn.LayerNorm(dim)
        self.qkv = linear(dim, 3 * dim, rank)
        self.out = linear(dim, dim, rank)
        self.conv = CausalConvModule(dim, conv_kernel, dropout, rank) if conv_kernel > 0 else None
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff_dim, dropout, rank)
        self.dropout = nn.Dropout(dropout)

    def qkv_projection(self, x: torch.Tensor) -> torch.Tensor:
        return self.qkv(self.attn_norm(x))

    def attention_output(self, context: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.out(context))

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.ff(self.ff_norm(x)))

    def forward(self, x: torch.Tensor, bias: torch.Tensor, rope: RotaryEmbedding) -> torch.Tensor:
        x = x + self.attention_output(attend(self.qkv_projection(x), self.heads, bias, rope))
        if self.conv is not None:
            x = x + self.conv(x)
        return x + self.feed_forward(x)


class StreamingTransformerEncoder(nn.Module):
    """Subsampled features (batch, frames, dim) -> encodings of the same shape.

    ``rank`` factorizes every linear layer (the lean branch of the amortized encoder).
    """

    def __init__(self, config: EncoderConfig, rank: int | None = None):
        super().__init__()
        self.config = config
        self.rope = RotaryEmbedding(config.dim // config.heads)
        self.layers = nn.ModuleList(
            TransformerLayer(config.dim, config.heads, config.ff_dim, config.dropout, rank, config.conv_kernel)
            for _ in range(config.layers)
        )
        self.norm = nn.LayerNorm(config.dim)

    def attention_bias(self, lengths: torch.Tensor, frames: int) -> torch.Tensor:
        return streaming_bias(lengths, frames, self.config.chunk_size, self.config.left_chunks)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        bias = self.attention_bias(lengths, x.shape[1])
        for layer in self.layers:
            x = layer(x, bias, self.rope)
        return self.norm(x)
