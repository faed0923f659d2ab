"""Audio backlog on a device that computes slower than real time, and the amortization loss.

A streaming recognizer receives an encoder frame every ``frame_shift`` seconds. Processing frame
``t`` costs ``cost_t`` FLOPs, i.e. ``cost_t / rate`` seconds on a device of ``rate`` FLOP/s. The
backlog (seconds of work not yet done) grows by that and drains by the frame shift:

    backlog_t = max(0, backlog_{t-1} + cost_t / rate - frame_shift),   backlog_0 = 0

and the user-perceived latency is the backlog left when the audio ends, ``backlog_T``. A model
cheaper than ``rate * frame_shift`` FLOPs per frame never builds a backlog; a dearer one makes the
user wait ``T * (cost / rate - frame_shift)`` after ``T`` frames.
"""

from __future__ import annotations

import torch


def next_backlog(backlog: torch.Tensor, cost: torch.Tensor, rate: float, frame_shift: float) -> torch.Tensor:
    """One frame of the recursion (element-wise over a batch)."""
    return torch.clamp(backlog + cost / rate - frame_shift, min=0.0)


def simulate_backlog(costs: torch.Tensor, lengths: torch.Tensor | None, rate: float, frame_shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Backlog after each frame (batch, frames) and the latency at each utterance's end (batch,).

    ``costs``: FLOPs per frame, (batch, frames) or (frames,); frames past ``lengths`` are ignored.
    """
    costs = torch.as_tensor(costs, dtype=torch.float64)
    if costs.dim() == 1:
        costs = costs.unsqueeze(0)
    batch, frames = costs.shape
    lengths = torch.full((batch,), frames) if lengths is None else torch.as_tensor(lengths)
    backlog = torch.zeros(batch, dtype=torch.float64)
    trace = torch.zeros(batch, frames, dtype=torch.float64)
    for t in range(frames):
        active = t < lengths
        backlog = torch.where(active, next_backlog(backlog, costs[:, t], rate, frame_shift), backlog)
        trace[:, t] = backlog
    return trace, backlog


def amortization_loss(slow_gates: torch.Tensor, backlog_before: torch.Tensor, mask: torch.Tensor, frame_shift: float,
                      idle_weight: float, busy_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Penalties of the two wasted choices, averaged over valid frames; returns (total, idle part).

    * idle: using the fast encoder while there is no backlog (the device could afford the slow one),
      ``idle_weight * (1 - g_t) * [backlog_{t-1} == 0]``;
    * busy: using the slow encoder while a backlog is waiting, in proportion to that backlog (in
      frame shifts), ``busy_weight * g_t * backlog_{t-1} / frame_shift``; this is the pressure that
      drains the backlog before the user notices.

    ``slow_gates`` are the (soft) slow-encoder gates, ``backlog_before`` the backlog each frame saw
    when it was routed (no gradient: the device's state, not a model output).
    """
    mask = mask.to(slow_gates.dtype)
    count = mask.sum().clamp(min=1.0)
    idle = (backlog_before <= 0).to(slow_gates.dtype)
    idle_term = ((1 - slow_gates) * idle * mask).sum() / count
    busy_term = (slow_gates * (backlog_before.to(slow_gates.dtype) / frame_shift) * mask).sum() / count
    return idle_weight * idle_term + busy_weight * busy_term, idle_term
