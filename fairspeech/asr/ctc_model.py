"""The baseline CTC model: normalized log-mels -> SpecAugment (training) -> subsampling -> streaming
transformer -> per-frame character log-probabilities.

Every model of the stack returns an :class:`ASROutput`; models that trade accuracy for compute add a
``penalty`` (already weighted) to the CTC loss and report ``stats`` (routing rates and the like),
so one training loop serves them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fairspeech.asr.encoder import Conv2dSubsampling, EncoderConfig, StreamingTransformerEncoder
from fairspeech.asr.features import GlobalCMVN, SpecAugment
from fairspeech.training.protocol import ASROutput


@dataclass
class SpecAugmentConfig:
    freq_masks: int = 2
    freq_width: int = 15
    time_masks: int = 2
    time_width: int = 20
    time_mask_ratio: float = 0.1
    freq_warp: float = 0.0  # max |log| of the per-utterance frequency scaling (vocal tract length perturbation)


class FrontEnd(nn.Module):
    """Log-mel frames -> normalized, augmented (training only), subsampled encoder inputs."""

    def __init__(self, config: EncoderConfig, specaugment: SpecAugmentConfig | None = None):
        super().__init__()
        self.cmvn = GlobalCMVN(config.n_mels)
        self.specaugment = SpecAugment(**vars(specaugment or SpecAugmentConfig()))
        self.subsampling = Conv2dSubsampling(config.n_mels, config.dim, config.subsampling_channels)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.specaugment(self.cmvn(features), lengths)
        return self.subsampling(x, lengths)


class CTCModel(nn.Module):
    def __init__(self, config: EncoderConfig, vocab_size: int, specaugment: SpecAugmentConfig | None = None):
        super().__init__()
        self.config = config
        self.frontend = FrontEnd(config, specaugment)
        self.encoder = StreamingTransformerEncoder(config)
        self.head = nn.Linear(config.dim, vocab_size)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> ASROutput:
        x, out_lengths = self.frontend(features, lengths)
        x = self.encoder(x, out_lengths)
        return ASROutput(torch.log_softmax(self.head(x), dim=-1), out_lengths, embeddings=pooled(x, out_lengths))


def pooled(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean of each utterance's valid frames, (batch, frames, dim) -> (batch, dim): what a reweighter sees."""
    mask = (torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]).to(x.dtype)
    return (x * mask[..., None]).sum(1) / lengths.clamp(min=1)[:, None].to(x.dtype)
