"""Compute and latency of a trained model on a split, on an accelerator profile.

For each utterance, one forward pass in evaluation mode (batch of one, so padding costs nothing)
under torch's FLOP counter gives its FLOPs; its routing gives how they spread over its frames:

    cost_t = base + w_t * delta

where ``w_t`` is the frame's routing value (1 = slow branch / all blocks on), ``delta`` what the full
path costs a frame more than the lean one (measured per branch or per block, see the models), and
``base`` is set so the frames add up to the measured total. Models without routing cost the same on
every frame. The backlog simulation (:mod:`fairspeech.asr.backlog`) on the profile's peak rate then
gives each utterance's end-of-utterance latency.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from fairspeech.asr.backlog import simulate_backlog
from fairspeech.asr.data import SplitData
from fairspeech.asr.flops import count_flops
from fairspeech.accelerator import AcceleratorProfile

FRAME_SHIFT = 0.04  # seconds per encoder frame: 10 ms features, 4x subsampling


def routing_delta(model) -> float:
    """FLOPs per frame between the full and the lean path of a routing model (0 for the baseline)."""
    if hasattr(model, "frame_costs"):  # amortized: slow minus fast branch
        fast, slow = model.frame_costs()
        return slow - fast
    if hasattr(model, "gated_block_costs"):  # gated: every gated block of every layer
        return model.config.layers * sum(model.gated_block_costs())
    return 0.0


@torch.no_grad()
def measure(model, data: SplitData, profile: AcceleratorProfile, frame_shift: float = FRAME_SHIFT) -> pd.DataFrame:
    """Per utterance (split order): encoder frames, FLOPs, latency on ``profile`` (seconds)."""
    was_training = model.training
    model.eval()
    delta = routing_delta(model)
    rows = []
    for i in range(len(data)):
        batch = data.batch([i])
        outputs = {}
        flops = count_flops(lambda: outputs.setdefault("out", model(batch.features, batch.lengths)))
        out = outputs["out"]
        n = int(out.lengths[0])
        weights = out.routing[0, :n].double() if out.routing is not None else torch.zeros(n, dtype=torch.float64)
        base = (flops - delta * float(weights.sum())) / max(n, 1)
        _, latency = simulate_backlog(base + delta * weights, None, profile.peak_flops, frame_shift)
        rows.append({"encoder_frames": n, "flops": flops, "latency_s": float(latency[0]) if n else 0.0})
    model.train(was_training)
    return pd.DataFrame(rows)


def summarize(per_utt: pd.DataFrame, profile: AcceleratorProfile, frame_shift: float = FRAME_SHIFT) -> dict:
    frames = int(per_utt["encoder_frames"].sum())
    per_frame = float(per_utt["flops"].sum() / max(frames, 1))
    latency_ms = 1000 * per_utt["latency_s"].to_numpy()
    return {
        "profile": profile.name,
        "frame_shift_s": frame_shift,
        "flops_per_frame": per_frame,
        "mflops_per_audio_second": per_frame / frame_shift / 1e6,
        "real_time_factor_on_profile": per_frame / profile.peak_flops / frame_shift,
        "latency_ms": {
            "mean": float(latency_ms.mean()), "median": float(np.median(latency_ms)),
            "p90": float(np.percentile(latency_ms, 90)), "max": float(latency_ms.max()),
            "share_under_10ms": float((latency_ms < 10).mean()),
        },
        "utterances": int(len(per_utt)),
    }
