"""A small x-vector speaker embedding extractor on log-mel frames (Snyder et al. 2018, scaled down).

    extractor = XVector(ExtractorConfig())
    emb = extractor(features, lengths)        # (batch, frames, n_mels) -> (batch, embedding_dim)

Frame-level TDNN layers (dilated 1-D convolutions with batch norm) feed statistics pooling (mean and
standard deviation over each utterance's valid frames), then one linear layer gives the embedding.
Features are normalized with training-set statistics (:class:`~fairspeech.asr.features.GlobalCMVN`)
and SpecAugment-ed in training mode only. The default (~0.33 M parameters) trains in minutes on
one CPU thread with 2 s crops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from fairspeech.asr.ctc_model import SpecAugmentConfig
from fairspeech.asr.features import GlobalCMVN, SpecAugment


@dataclass
class ExtractorConfig:
    n_mels: int = 80
    channels: int = 128
    # (kernel, dilation) of each frame-level layer; the first one strides by 2 (halves the compute)
    layers: list[list[int]] = field(default_factory=lambda: [[5, 1], [3, 2], [3, 3], [1, 1]])
    pool_channels: int = 384  # width of the last frame-level layer, the one that is pooled
    embedding_dim: int = 128
    first_stride: int = 2


class XVector(nn.Module):
    def __init__(self, config: ExtractorConfig, specaugment: SpecAugmentConfig | None = None):
        super().__init__()
        self.config = config
        self.cmvn = GlobalCMVN(config.n_mels)
        self.specaugment = SpecAugment(**vars(specaugment)) if specaugment is not None else None
        blocks, width = [], config.n_mels
        for index, (kernel, dilation) in enumerate(config.layers):
            stride = config.first_stride if index == 0 else 1
            blocks += [nn.Conv1d(width, config.channels, kernel, stride=stride, dilation=dilation, padding=dilation * (kernel - 1) // 2),
                       nn.ReLU(), nn.BatchNorm1d(config.channels)]
            width = config.channels
        blocks += [nn.Conv1d(width, config.pool_channels, 1), nn.ReLU(), nn.BatchNorm1d(config.pool_channels)]
        self.frames = nn.Sequential(*blocks)
        self.embedding = nn.Linear(2 * config.pool_channels, config.embedding_dim)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        kernel, dilation = self.config.layers[0]
        pad = dilation * (kernel - 1) // 2
        return (lengths + 2 * pad - dilation * (kernel - 1) - 1) // self.config.first_stride + 1

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, frames, n_mels) log-mels and valid lengths -> (batch, embedding_dim) embeddings (not normalized)."""
        if lengths is None:
            lengths = torch.full((features.shape[0],), features.shape[1], dtype=torch.int64, device=features.device)
        x = self.cmvn(features)
        if self.specaugment is not None:
            x = self.specaugment(x, lengths)
        h = self.frames(x.transpose(1, 2))  # (batch, channels, frames')
        out_lengths = self.output_lengths(lengths).clamp(min=1, max=h.shape[-1])
        mask = (torch.arange(h.shape[-1], device=h.device)[None, :] < out_lengths[:, None]).to(h.dtype).unsqueeze(1)
        count = out_lengths.to(h.dtype)[:, None]
        mean = (h * mask).sum(-1) / count
        var = (((h - mean.unsqueeze(-1)) * mask) ** 2).sum(-1) / count
        return self.embedding(torch.cat([mean, var.clamp(min=1e-6).sqrt()], dim=-1))
