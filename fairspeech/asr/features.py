"""Acoustic front end in plain torch: log-mel filterbanks, global mean/variance normalization, SpecAugment.

No torchaudio exists for the pinned torch, so the mel filterbank is built here (HTK mel scale,
triangular filters without area normalization, as ``torchaudio.functional.melscale_fbanks`` with
``norm=None, mel_scale="htk"``). Frames are taken without centering (``center=False``): frame ``i``
covers samples ``[i*hop, i*hop + win)``, so a streaming device can emit it as soon as those samples
arrive.
"""

from __future__ import annotations

import torch
from torch import nn


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


F_MIN, F_MAX = 20.0, 7600.0  # the front end's mel range (Hz)


def mel_centers(n_mels: int, f_min: float = F_MIN, f_max: float = F_MAX) -> torch.Tensor:
    """Centre frequency (Hz) of each of ``n_mels`` filters, as :func:`mel_filterbank` places them."""
    mel_points = torch.linspace(hz_to_mel(torch.tensor(f_min)), hz_to_mel(torch.tensor(f_max)), n_mels + 2, dtype=torch.float64)
    return mel_to_hz(mel_points[1:-1])


def mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int, f_min: float, f_max: float) -> torch.Tensor:
    """(n_freqs, n_mels) triangular filters on the HTK mel scale, peaks at 1."""
    fft_freqs = torch.linspace(0.0, sample_rate / 2.0, n_freqs, dtype=torch.float64)
    mel_points = torch.linspace(hz_to_mel(torch.tensor(f_min)), hz_to_mel(torch.tensor(f_max)), n_mels + 2, dtype=torch.float64)
    hz_points = mel_to_hz(mel_points)
    lower, center, upper = hz_points[:-2], hz_points[1:-1], hz_points[2:]
    f = fft_freqs[:, None]
    rising = (f - lower) / (center - lower)
    falling = (upper - f) / (upper - center)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).to(torch.float32)


class LogMel(nn.Module):
    """Waveform (..., samples) at ``sample_rate`` -> log mel energies (..., frames, n_mels)."""

    version = 1  # bump when the computation changes, so cached features are rebuilt

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        win_length: int = 400,
        hop_length: int = 160,
        n_mels: int = 80,
        f_min: float = F_MIN,
        f_max: float | None = F_MAX,
        floor: float = 1e-6,
    ):
        super().__init__()
        self.sample_rate, self.n_fft, self.win_length, self.hop_length = sample_rate, n_fft, win_length, hop_length
        self.n_mels, self.floor = n_mels, floor
        f_max = f_max if f_max is not None else sample_rate / 2.0
        self.register_buffer("window", torch.hann_window(win_length, periodic=True), persistent=False)
        self.register_buffer("filters", mel_filterbank(n_fft // 2 + 1, n_mels, sample_rate, f_min, f_max), persistent=False)

    def num_frames(self, num_samples: int | torch.Tensor):
        """Frames produced from ``num_samples`` samples (0 for fewer samples than one window)."""
        if isinstance(num_samples, torch.Tensor):
            return torch.clamp((num_samples - self.win_length) // self.hop_length + 1, min=0)
        return max(0, (num_samples - self.win_length) // self.hop_length + 1)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.shape[-1] < self.win_length:
            waveform = nn.functional.pad(waveform, (0, self.win_length - waveform.shape[-1]))
        # Explicit framing (not torch.stft, which centres a short window inside n_fft samples).
        frames = waveform.reshape(-1, waveform.shape[-1]).unfold(-1, self.win_length, self.hop_length) * self.window
        spec = torch.fft.rfft(frames, n=self.n_fft)  # (batch, frames, freqs), zero-padded to n_fft
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(power, self.filters)
        return torch.log(mel + self.floor).reshape(*waveform.shape[:-1], -1, self.n_mels)


class GlobalCMVN(nn.Module):
    """Per-dimension mean/variance normalization with statistics of the training set (streaming-safe)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("inv_std", torch.ones(dim))

    @torch.no_grad()
    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.inv_std.copy_(1.0 / torch.clamp(std, min=1e-5))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) * self.inv_std


def frequency_warp(features: torch.Tensor, factors: torch.Tensor, centers_hz: torch.Tensor) -> torch.Tensor:
    """(batch, frames, n_mels) log-mels as if every frequency of utterance ``b`` were scaled by ``factors[b]``.

    Filter ``k`` of the warped utterance sees what filter position ``s`` saw at ``centers_hz[k] / factor``
    (linear interpolation between filters, edges held). Scaling every frequency is what a pitch shift of
    the whole spectrum does (sox ``pitch``, speakers' vocal tracts), so this is vocal tract length
    perturbation (Jaitly & Hinton 2013) on cached features.
    """
    n = features.shape[-1]
    mel_lo, mel_hi = hz_to_mel(centers_hz[0]), hz_to_mel(centers_hz[-1])
    source = hz_to_mel(centers_hz[None, :] / factors[:, None].double())
    position = ((source - mel_lo) / (mel_hi - mel_lo) * (n - 1)).clamp(0, n - 1).to(features.device, features.dtype)  # (batch, n_mels)
    lower = position.floor().long().clamp(max=n - 2)
    frac = (position - lower).unsqueeze(1)
    expand = lambda index: index.unsqueeze(1).expand(-1, features.shape[1], -1)  # noqa: E731
    return features.gather(-1, expand(lower)) * (1 - frac) + features.gather(-1, expand(lower + 1)) * frac


class SpecAugment(nn.Module):
    """Frequency warping, then frequency and time masking (Park et al. 2019), in training mode only.

    Warping (``freq_warp`` > 0): each utterance's frequencies are scaled by ``exp(u)``, ``u`` uniform in
    ``[-freq_warp, freq_warp]`` (:func:`frequency_warp`; 0.12 spans +/- 2 semitones). Masks are filled
    with 0 (the normalized mean). Time masks are at most ``time_mask_ratio`` of each utterance's own
    length, so short requests are not wiped out. Uses torch's global RNG (seeded by the training loop
    and saved in checkpoints).
    """

    def __init__(self, freq_masks: int = 2, freq_width: int = 15, time_masks: int = 2, time_width: int = 20, time_mask_ratio: float = 0.1,
                 freq_warp: float = 0.0):
        super().__init__()
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.time_masks, self.time_width, self.time_mask_ratio = time_masks, time_width, time_mask_ratio
        self.freq_warp = freq_warp

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return features
        batch, frames, dims = features.shape
        if self.freq_warp > 0:
            factors = torch.exp((2 * torch.rand(batch) - 1) * self.freq_warp)
            features = frequency_warp(features, factors, mel_centers(dims))
        keep = torch.ones_like(features, dtype=torch.bool)
        freq_index = torch.arange(dims, device=features.device)
        time_index = torch.arange(frames, device=features.device)
        for b in range(batch):
            for _ in range(self.freq_masks):
                width = int(torch.randint(0, self.freq_width + 1, ()))
                start = int(torch.randint(0, max(1, dims - width), ()))
                keep[b, :, (freq_index >= start) & (freq_index < start + width)] = False
            max_width = min(self.time_width, int(self.time_mask_ratio * int(lengths[b])))
            for _ in range(self.time_masks):
                width = int(torch.randint(0, max_width + 1, ()))
                start = int(torch.randint(0, max(1, int(lengths[b]) - width), ()))
                keep[b, (time_index >= start) & (time_index < start + width), :] = False
        return features * keep
