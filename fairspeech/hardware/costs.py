"""Cost on every shipped profile, as a table, and its join with per-cohort WER.

    from fairspeech.hardware.costs import cost_table, join_wer_and_cost
    costs = cost_table(model, (features, lengths), audio_seconds=3.0)      # one row per profile
    costs.insert(0, "model", "asr_baseline")
    table = join_wer_and_cost(cohort_wer, costs)                            # every cohort row x every profile

``cohort_wer`` is any frame with a ``model`` column (and whatever cohort columns the evaluation
has: attribute, cohort, wer, interval...); the join repeats each cohort row once per profile of the
same model, so one table answers "how accurate, for whom, at what cost, on which device".
"""

from __future__ import annotations

from typing import Iterable, Sequence

import pandas as pd
import torch

from fairspeech.hardware.estimator import CostReport, decompose, estimate_graph
from fairspeech.hardware.profile import PROFILES_DIR, AcceleratorProfile, load_profile

COST_COLUMNS = ["profile", "method", "latency_s", "latency_per_frame_s", "real_time_factor", "flops", "flops_per_frame",
                "params_bytes", "peak_activation_bytes", "memory_bytes", "output_frames", "operators"]


def shipped_profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def load_profiles(names: Iterable[str | AcceleratorProfile]) -> list[AcceleratorProfile]:
    return [n if isinstance(n, AcceleratorProfile) else load_profile(n) for n in names]


def cost_reports(model: torch.nn.Module, example_input, profiles: Sequence[str | AcceleratorProfile] | None = None,
                 audio_seconds: float | None = None) -> list[CostReport]:
    """One decomposition of ``model(*example_input)``, estimated on each profile (default: all shipped)."""
    graph, frames = decompose(model, example_input)
    return [estimate_graph(graph, frames, p, audio_seconds) for p in load_profiles(profiles or shipped_profile_names())]


def cost_table(model: torch.nn.Module, example_input, profiles: Sequence[str | AcceleratorProfile] | None = None,
               audio_seconds: float | None = None) -> pd.DataFrame:
    """:func:`cost_reports` as a frame, one row per profile, columns :data:`COST_COLUMNS`."""
    rows = [{k: r.to_dict()[k] for k in COST_COLUMNS} for r in cost_reports(model, example_input, profiles, audio_seconds)]
    return pd.DataFrame(rows, columns=COST_COLUMNS)


def join_wer_and_cost(cohort_wer: pd.DataFrame, costs: pd.DataFrame, on: str = "model") -> pd.DataFrame:
    """Every cohort row of a model next to that model's cost on each profile."""
    for name, frame in (("cohort_wer", cohort_wer), ("costs", costs)):
        if on not in frame.columns:
            raise KeyError(f"{name} has no {on!r} column; columns: {list(frame.columns)}")
    return cohort_wer.merge(costs, on=on, how="inner", validate="many_to_many")
