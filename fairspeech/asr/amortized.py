"""Amortized branched encoder (after Macoskey et al., "Amortized neural networks for low-latency speech
recognition", Interspeech 2021).

A small arbitrator looks at each subsampled frame and at the device's current audio backlog, and
sends the frame through a full ("slow") encoder branch or a lean ("fast") one whose linear layers are
low-rank factorizations (the paper's matrix-factorization branch). As the paper's RNN-T branches share
the LSTM state, our two branches share the sequence state: at every layer each frame's hidden state
comes from the branch it was routed to, and self-attention runs over those mixed states, so a frame
routed fast is still context for later slow frames. At inference each layer computes every frame with
its own branch only (boolean indexing), so the FLOP counter sees the real routed compute.

Training is end to end: the gate is a Gumbel-sigmoid relaxation (soft mixture of the two branches)
whose temperature is annealed until routing is binary; the backlog each frame sees is simulated from
the hard decisions and the branches' FLOPs per frame (measured with torch's FLOP counter) on the
accelerator profile; the amortization loss (:func:`fairspeech.asr.backlog.amortization_loss`)
penalizes the fast branch when there is no backlog and the slow one in proportion to a backlog, and
a latency term penalizes the backlog left at the end of the utterance (the user-perceived latency),
through a relaxed copy of the backlog recursion that costs each frame ``g * slow + (1 - g) * fast``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from fairspeech.asr.backlog import amortization_loss, next_backlog
from fairspeech.asr.ctc_model import ASROutput, FrontEnd, SpecAugmentConfig
from fairspeech.asr.encoder import EncoderConfig, StreamingTransformerEncoder, TransformerLayer, attend
from fairspeech.asr.flops import count_flops, reference_input
from fairspeech.asr.routing import TemperatureSchedule, binary_fraction, gate
from fairspeech.accelerator import load_profile


@dataclass
class AmortizedConfig:
    fast_rank: int = 32  # rank of every linear layer of the fast branch
    arbitrator_hidden: int = 32
    idle_weight: float = 1.0  # penalty for the fast branch with no backlog
    busy_weight: float = 0.5  # penalty for the slow branch per frame shift of backlog
    latency_weight: float = 0.5  # penalty per frame shift of backlog left when the utterance ends
    temperature_start: float = 2.0
    temperature_end: float = 0.05
    anneal_fraction: float = 0.7
    straight_through: bool = False
    profile: str = "single_thread_650mflops"  # accelerator profile whose peak rate drains the backlog
    frame_shift: float = 0.04  # seconds per encoder frame (10 ms features, 4x subsampling)


def mix(route: torch.Tensor, slow: Callable, fast: Callable, x: torch.Tensor) -> torch.Tensor:
    """Apply ``slow`` to frames routed slow and ``fast`` to the others.

    ``route`` bool (batch, frames): each frame is computed by its own branch only (inference).
    ``route`` float: the relaxed mixture ``g * slow(x) + (1 - g) * fast(x)`` (training).
    """
    if route.dtype == torch.bool:
        y_slow, y_fast = slow(x[route]), fast(x[~route])
        out = x.new_empty(*route.shape, (y_slow if y_slow.numel() else y_fast).shape[-1])
        out[route], out[~route] = y_slow, y_fast
        return out
    g = route.unsqueeze(-1)
    return g * slow(x) + (1 - g) * fast(x)


def mix_sequence(route: torch.Tensor, slow: Callable, fast: Callable, x: torch.Tensor) -> torch.Tensor:
    """As :func:`mix` for operations over the sequence (a convolution): both run on every frame, each
    frame keeps its own branch's result. Used only for the cheap depthwise convolution."""
    if route.dtype == torch.bool:
        return torch.where(route.unsqueeze(-1), slow(x), fast(x))
    g = route.unsqueeze(-1)
    return g * slow(x) + (1 - g) * fast(x)


def branched_layer(slow: TransformerLayer, fast: TransformerLayer, x: torch.Tensor, route: torch.Tensor, bias, rope) -> torch.Tensor:
    """One layer of the branched encoder: the pieces of :class:`TransformerLayer`, branch by branch.

    Self-attention (and the depthwise convolution) run over the sequence of mixed hidden states, so
    a frame computed by the fast branch is still context for the slow frames after it.
    """
    context = attend(mix(route, slow.qkv_projection, fast.qkv_projection, x), slow.heads, bias, rope)
    x = x + mix(route, slow.attention_output, fast.attention_output, context)
    if slow.conv is not None:
        u = mix(route, slow.conv.inner, fast.conv.inner, x)
        x = x + mix(route, slow.conv.outer, fast.conv.outer, mix_sequence(route, slow.conv.depthwise, fast.conv.depthwise, u))
    return x + mix(route, slow.feed_forward, fast.feed_forward, x)


class Arbitrator(nn.Module):
    """Frame features and backlog -> logit of "use the slow branch". A few thousand FLOPs per frame.

    The frame part (a projection of the frame) is computed for all frames at once; only the backlog
    part runs frame by frame, because the backlog depends on the previous decisions.
    """

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.frame = nn.Linear(dim, hidden)
        self.backlog = nn.Linear(2, hidden, bias=False)  # backlog in frame shifts, and "is there one"
        self.out = nn.Linear(hidden, 1)

    def decide(self, frame_part: torch.Tensor, backlog_shifts: torch.Tensor) -> torch.Tensor:
        state = torch.stack([backlog_shifts, (backlog_shifts > 0).to(backlog_shifts.dtype)], dim=-1)
        return self.out(torch.relu(frame_part + self.backlog(state))).squeeze(-1)


class AmortizedCTCModel(nn.Module):
    def __init__(self, config: EncoderConfig, vocab_size: int, amortized: AmortizedConfig | None = None,
                 specaugment: SpecAugmentConfig | None = None):
        super().__init__()
        self.config = config
        self.amortized = amortized or AmortizedConfig()
        self.frontend = FrontEnd(config, specaugment)
        self.arbitrator = Arbitrator(config.dim, self.amortized.arbitrator_hidden)
        self.slow = StreamingTransformerEncoder(config)
        self.fast = StreamingTransformerEncoder(config, rank=self.amortized.fast_rank)
        self.head = nn.Linear(config.dim, vocab_size)
        self.use_profile(self.amortized.profile)
        self.schedule = TemperatureSchedule(self.amortized.temperature_start, self.amortized.temperature_end, self.amortized.anneal_fraction)
        self.temperature = self.amortized.temperature_start
        self.force_route: str | None = None  # "slow" / "fast": every frame to one branch (the single-encoder baselines)
        # FLOPs per frame [fast, slow], measured on first need (see fairspeech.asr.flops on why not here).
        self.register_buffer("branch_flops", torch.zeros(2, dtype=torch.float64))

    # -- compute ------------------------------------------------------------------------------
    @torch.no_grad()
    def measure_branch_flops(self, seconds: float = 3.0) -> None:
        """FLOPs per encoder frame of the whole model with every frame routed fast, then slow.

        Includes the shared front end, the arbitrator and the output layer, so each figure is what one
        frame costs the device on that branch. Attention grows with the context; ``seconds`` of audio
        is about a voice-assistant request.
        """
        features, lengths = reference_input(self.config.n_mels, seconds)
        frames = int(self.frontend.subsampling.output_length(lengths).sum())
        was_training, previous = self.training, self.force_route
        self.eval()
        x = torch.zeros(1, frames, self.config.dim)
        arbitrator = count_flops(lambda: self.arbitrator.frame(x)) / frames + count_flops(
            lambda: self.arbitrator.decide(x[:, 0, : self.amortized.arbitrator_hidden], torch.zeros(1)))
        costs = []
        for branch in ("fast", "slow"):
            self.force_route = branch  # forced routes skip the arbitrator: added below
            costs.append(count_flops(lambda: self(features, lengths)) / frames + arbitrator)
        self.force_route = previous
        self.train(was_training)
        self.branch_flops.copy_(torch.tensor(costs, dtype=torch.float64))

    def frame_costs(self) -> tuple[float, float]:
        """(fast, slow) FLOPs per frame, measured once."""
        if not self.branch_flops.any():
            self.measure_branch_flops()
        fast, slow = self.branch_flops.tolist()
        return fast, slow

    def on_step(self, step: int, total_steps: int) -> None:
        self.temperature = self.schedule(step, total_steps)

    def use_profile(self, profile: str) -> None:
        """Simulate the backlog (the arbitrator's input) on this device: the one trained for, or another deployed on."""
        self.rate = load_profile(profile).peak_flops

    # -- routing ------------------------------------------------------------------------------
    def route(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gates (batch, frames) (soft in training, bool in evaluation), the backlog each frame saw (from
        the hard decisions), and the relaxed final backlog (differentiable in training)."""
        batch, frames, _ = x.shape
        if self.force_route is not None:  # no decisions, so no backlog is needed to make them
            zeros = x.new_zeros(batch, frames)
            return torch.full((batch, frames), self.force_route == "slow", dtype=torch.bool, device=x.device), zeros, zeros[:, 0]
        shift = self.amortized.frame_shift
        fast_cost, slow_cost = self.frame_costs()
        frame_part = self.arbitrator.frame(x)
        backlog = x.new_zeros(batch)  # the device's backlog under the hard decisions
        relaxed = x.new_zeros(batch)  # the same recursion with soft costs, for the latency gradient
        gates, seen = [], []
        for t in range(frames):
            seen.append(backlog)
            logit = self.arbitrator.decide(frame_part[:, t], backlog / shift)
            g = gate(logit, self.training, self.temperature, self.amortized.straight_through)
            hard = g if g.dtype == torch.bool else g.detach() > 0.5
            active = t < lengths
            backlog = torch.where(active, next_backlog(backlog, torch.where(hard, slow_cost, fast_cost), self.rate, shift), backlog)
            if g.dtype != torch.bool:
                relaxed = torch.where(active, next_backlog(relaxed, g * slow_cost + (1 - g) * fast_cost, self.rate, shift), relaxed)
            gates.append(g)
        return torch.stack(gates, 1), torch.stack(seen, 1), relaxed

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> ASROutput:
        x, lengths = self.frontend(features, lengths)
        route, seen, relaxed_latency = self.route(x, lengths)
        bias = self.slow.attention_bias(lengths, x.shape[1])
        for slow, fast in zip(self.slow.layers, self.fast.layers):
            x = branched_layer(slow, fast, x, route, bias, self.slow.rope)
        x = mix(route, self.slow.norm, self.fast.norm, x)
        log_probs = torch.log_softmax(self.head(x), dim=-1)
        mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        hard = route if route.dtype == torch.bool else route.detach() > 0.5
        stats = {"slow_rate": float(hard[mask].float().mean()) if mask.any() else 0.0}
        penalty = None
        if self.training and route.dtype != torch.bool:
            penalty, idle = amortization_loss(route, seen, mask, self.amortized.frame_shift, self.amortized.idle_weight, self.amortized.busy_weight)
            latency = relaxed_latency.mean() / self.amortized.frame_shift
            penalty = penalty + self.amortized.latency_weight * latency
            stats.update({"amortization": penalty.item(), "fast_when_idle": idle.item(), "temperature": self.temperature,
                          "latency_ms": 1000 * self.amortized.frame_shift * latency.item(),
                          "binary": binary_fraction(route, mask)})
        return ASROutput(log_probs, lengths, penalty, stats, routing=hard)

    # -- initialization from a trained baseline -------------------------------------------------
    @torch.no_grad()
    def init_from_state(self, weights: dict[str, torch.Tensor]) -> dict:
        """Slow branch, front end and head from a baseline :class:`CTCModel`; the fast branch from a
        truncated SVD of each slow linear layer (the best rank-r approximation), norms copied."""
        own = self.state_dict()
        renamed = {("slow." + k[len("encoder."):] if k.startswith("encoder.") else k): v for k, v in weights.items()}
        usable = {k: v for k, v in renamed.items() if k in own and own[k].shape == v.shape}
        self.load_state_dict(usable, strict=False)
        factorized = 0
        for name, slow_module in self.slow.named_modules():
            fast_module = self.fast.get_submodule(name) if name else self.fast
            if isinstance(slow_module, nn.Linear) and isinstance(fast_module, nn.Sequential):
                u, s, vh = torch.linalg.svd(slow_module.weight, full_matrices=False)
                root = s[: fast_module[0].out_features].sqrt()
                fast_module[0].weight.copy_(root[:, None] * vh[: len(root)])
                fast_module[1].weight.copy_(u[:, : len(root)] * root)
                fast_module[1].bias.copy_(slow_module.bias)
                factorized += 1
            elif isinstance(slow_module, (nn.Linear, nn.LayerNorm, nn.Conv1d)):  # full rank, a norm, a depthwise conv: copied
                fast_module.load_state_dict(slow_module.state_dict())
        return {"loaded": len(usable), "svd_factorized_layers": factorized,
                "fresh": sorted(k for k in own if k not in usable and not k.startswith("fast."))}
