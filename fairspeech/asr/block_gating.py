"""Block gating (after Xie et al., "Compute cost amortized Transformer for streaming ASR", Interspeech 2022).

Every attention block, every feed-forward block and (in a conformer-style layer, with ``gate_conv``)
every convolution module of the streaming encoder has its own tiny arbitrator (one linear unit on the
block's input) that switches the block on or off per frame. A frame whose block is off passes through
the residual connection unchanged, and does not feed the block at other frames either: a frame whose
attention block is off is not a key (its keys and values are never computed), and one whose
convolution module is off gives the depthwise convolution zeros (its pointwise layers never run), so
skipping saves the whole block. Gates are Gumbel-sigmoid relaxations annealed to binary, trained
jointly with the CTC loss plus ``compute_weight`` times the expected share of block compute used;
sweeping that weight traces the accuracy/compute trade-off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from fairspeech.asr.ctc_model import ASROutput, FrontEnd, SpecAugmentConfig
from fairspeech.asr.encoder import CausalConvModule, EncoderConfig, StreamingTransformerEncoder, TransformerLayer, attend
from fairspeech.asr.flops import count_flops
from fairspeech.asr.routing import TemperatureSchedule, binary_fraction, gate

_EPS = 1e-6


@dataclass
class GatingConfig:
    compute_weight: float = 0.1  # weight of the expected compute share in the loss
    temperature_start: float = 2.0
    temperature_end: float = 0.05
    anneal_fraction: float = 0.7
    straight_through: bool = False
    initial_bias: float = 3.0  # arbitrators start with blocks on (sigmoid(3) = 0.95), as the baseline was trained
    gate_conv: bool = True  # gate the convolution modules too (else they always run)


def gated_residual(route: torch.Tensor, block: Callable, x: torch.Tensor) -> torch.Tensor:
    """``x + g * block(x)``; with a bool ``route`` the block runs on the active frames only and the
    others are returned exactly as they came in."""
    if route.dtype == torch.bool:
        out = x.clone()
        if route.any():
            out[route] = x[route] + block(x[route])
        return out
    return x + route.unsqueeze(-1) * block(x)


def key_gate_bias(route: torch.Tensor) -> torch.Tensor:
    """(batch, 1, 1 or frames, frames) bias removing gated-off frames as keys: log g (soft) or -inf (hard).

    The diagonal is left open so that a gated-off query still has a key (its output is discarded).
    """
    frames = route.shape[1]
    eye = torch.eye(frames, dtype=torch.bool, device=route.device)
    if route.dtype == torch.bool:
        open_key = route[:, None, :] | eye[None]
        return torch.zeros(open_key.shape, device=route.device).masked_fill_(~open_key, float("-inf")).unsqueeze(1)
    log_g = torch.log(route.clamp(min=_EPS))[:, None, :].expand(-1, frames, -1)
    return log_g.masked_fill(eye[None], 0.0).unsqueeze(1)


def gated_attention(layer: TransformerLayer, x: torch.Tensor, route: torch.Tensor, bias: torch.Tensor, rope) -> torch.Tensor:
    bias = bias + key_gate_bias(route)
    if route.dtype == torch.bool:
        qkv = x.new_zeros(*x.shape[:2], 3 * x.shape[-1])
        qkv[route] = layer.qkv_projection(x[route])
    else:
        qkv = layer.qkv_projection(x)
    context = attend(qkv, layer.heads, bias, rope)
    if route.dtype == torch.bool:
        out = x.clone()
        out[route] = x[route] + layer.attention_output(context[route])
        return out
    return x + route.unsqueeze(-1) * layer.attention_output(context)


def gated_conv(conv: CausalConvModule, x: torch.Tensor, route: torch.Tensor) -> torch.Tensor:
    """``x + g * conv(x)`` where a gated-off frame also gives the depthwise convolution zeros (soft: ``g``
    scales its input); with a bool ``route`` the pointwise layers run on the active frames only."""
    if route.dtype == torch.bool:
        inner = x.new_zeros(x.shape)
        out = x.clone()
        if route.any():
            inner[route] = conv.inner(x[route])
            out[route] = x[route] + conv.outer(conv.depthwise(inner)[route])
        return out
    g = route.unsqueeze(-1)
    return x + g * conv.outer(conv.depthwise(g * conv.inner(x)))


class GatedCTCModel(nn.Module):
    def __init__(self, config: EncoderConfig, vocab_size: int, gating: GatingConfig | None = None,
                 specaugment: SpecAugmentConfig | None = None):
        super().__init__()
        self.config = config
        self.gating = gating or GatingConfig()
        self.frontend = FrontEnd(config, specaugment)
        self.encoder = StreamingTransformerEncoder(config)  # same names as the baseline: fine-tunes from it
        self.head = nn.Linear(config.dim, vocab_size)
        self.attention_gates = nn.ModuleList(nn.Linear(config.dim, 1) for _ in range(config.layers))
        self.ff_gates = nn.ModuleList(nn.Linear(config.dim, 1) for _ in range(config.layers))
        gate_conv = self.gating.gate_conv and config.conv_kernel > 0
        self.conv_gates = nn.ModuleList(nn.Linear(config.dim, 1) for _ in range(config.layers)) if gate_conv else None
        for arbitrator in [*self.attention_gates, *self.ff_gates, *(self.conv_gates or [])]:
            nn.init.normal_(arbitrator.weight, std=0.01)
            nn.init.constant_(arbitrator.bias, self.gating.initial_bias)
        self.schedule = TemperatureSchedule(self.gating.temperature_start, self.gating.temperature_end, self.gating.anneal_fraction)
        self.temperature = self.gating.temperature_start
        self.force_on = False  # every block on: the ungated model
        # FLOPs per frame [attention, feed-forward, convolution], measured on first need (see fairspeech.asr.flops on why not here).
        self.register_buffer("block_flops", torch.zeros(3, dtype=torch.float64))

    @torch.no_grad()
    def measure_block_flops(self, frames: int = 75) -> None:
        """FLOPs per frame of one attention block, feed-forward block and convolution module (0 without one;
        ``frames`` ~ 3 s of audio)."""
        layer = self.encoder.layers[0]
        was_training = layer.training
        layer.eval()
        x = torch.zeros(1, frames, self.config.dim)
        bias = self.encoder.attention_bias(torch.tensor([frames]), frames)
        attention = count_flops(lambda: layer.attention_output(attend(layer.qkv_projection(x), layer.heads, bias, self.encoder.rope)))
        feed_forward = count_flops(lambda: layer.feed_forward(x))
        conv = count_flops(lambda: layer.conv(x)) if layer.conv is not None else 0
        layer.train(was_training)
        self.block_flops.copy_(torch.tensor([attention / frames, feed_forward / frames, conv / frames], dtype=torch.float64))

    def gated_block_costs(self) -> tuple[float, float, float]:
        """FLOPs per frame of one attention block, feed-forward block and gated convolution module (0 when
        the convolution is not gated), measured once."""
        if not self.block_flops.any():
            self.measure_block_flops()
        attention, feed_forward, conv = self.block_flops.tolist()
        return attention, feed_forward, conv if self.conv_gates is not None else 0.0

    def on_step(self, step: int, total_steps: int) -> None:
        self.temperature = self.schedule(step, total_steps)

    def _gate(self, arbitrator: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        if self.force_on:
            return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return gate(arbitrator(x).squeeze(-1), self.training, self.temperature, self.gating.straight_through)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> ASROutput:
        x, lengths = self.frontend(features, lengths)
        bias = self.encoder.attention_bias(lengths, x.shape[1])
        attention_cost, ff_cost, conv_cost = self.gated_block_costs()
        gated_cost = attention_cost + ff_cost + conv_cost
        used = x.new_zeros(x.shape[:2])  # gated compute per frame (soft in training)
        gates = []
        for i, (layer, attention_gate, ff_gate) in enumerate(zip(self.encoder.layers, self.attention_gates, self.ff_gates)):
            route = self._gate(attention_gate, x)
            x = gated_attention(layer, x, route, bias, self.encoder.rope)
            used = used + attention_cost * route
            gates.append(route)
            if self.conv_gates is not None:
                route = self._gate(self.conv_gates[i], x)
                x = gated_conv(layer.conv, x, route)
                used = used + conv_cost * route
                gates.append(route)
            elif layer.conv is not None:
                x = x + layer.conv(x)
            route = self._gate(ff_gate, x)
            x = gated_residual(route, layer.feed_forward, x)
            used = used + ff_cost * route
            gates.append(route)
        x = self.encoder.norm(x)
        log_probs = torch.log_softmax(self.head(x), dim=-1)
        share = used / (self.config.layers * gated_cost)  # of the gated blocks' full compute
        mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        maskf = mask.to(share.dtype)
        expected_share = (share * maskf).sum() / maskf.sum().clamp(min=1.0)
        stats = {"compute_share": float(expected_share.detach())}
        penalty = None
        if self.training and not self.force_on:
            penalty = self.gating.compute_weight * expected_share
            stacked = torch.stack(gates, -1)
            stats.update({"temperature": self.temperature, "binary": binary_fraction(stacked, mask[..., None].expand_as(stacked))})
        return ASROutput(log_probs, lengths, penalty, stats, routing=share.detach())
