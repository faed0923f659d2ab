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

from fairspeech.accelerator import PROFILES_DIR, AcceleratorProfile, load_profile
from fairspeech.hardware.estimator import CostReport, decompose, estimate_graph

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


def cost_by_cohort(variants: dict[str, Path], models: dict[str, Path], split: str = "test", seconds: float = 3.0) -> pd.DataFrame:
    """One table: every variant's per-cohort WER (with interval) next to its estimated cost on each shipped
    profile (latency, memory, FLOPs per frame, from :mod:`fairspeech.hardware`), for a ``seconds`` input."""
    from fairspeech.asr.results import load_eval, split_view
    from fairspeech.hardware import zoo
    from fairspeech.hardware.cli import load_model

    missing = sorted(set(variants) - set(models))
    if missing:
        raise KeyError(f"no --model given for variant(s) {missing}")
    wer_rows, costs = [], []
    for label, eval_dir in variants.items():
        view = split_view(load_eval(eval_dir / "eval.json")[split])
        wer_rows.append({"model": label, "attribute": "(overall)", "cohort": "(overall)", "wer": view["wer"],
                         "wer_low": view["wer_interval"][0], "wer_high": view["wer_interval"][1], "speakers": view["speakers"]})
        for attr, cohorts in view["by"].items():
            wer_rows += [{"model": label, "attribute": attr, "cohort": c, "wer": v["wer"], "wer_low": v["interval"][0],
                          "wer_high": v["interval"][1], "speakers": v["speakers"]} for c, v in cohorts.items()]
        model, n_mels, _ = load_model(str(models[label]))
        table = cost_table(model, zoo.example_input(seconds, n_mels=n_mels), audio_seconds=seconds)
        table.insert(0, "model", label)
        costs.append(table)
    return join_wer_and_cost(pd.DataFrame(wer_rows), pd.concat(costs, ignore_index=True))


def main(argv=None) -> None:
    """``python -m fairspeech.hardware.costs --variant LABEL=EVAL_DIR --model LABEL=MODEL --out costs.csv``."""
    import argparse
    from pathlib import Path

    from fairspeech.utils import io

    parser = argparse.ArgumentParser(description="Per-cohort WER x estimated cost on every shipped profile (CSV).")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL=EVAL_DIR")
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=MODEL_PATH")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", required=True, help="CSV path")
    args = parser.parse_args(argv)
    pairs = lambda items: {label: Path(path) for label, _, path in (item.partition("=") for item in items)}  # noqa: E731
    table = cost_by_cohort(pairs(args.variant), pairs(args.model), args.split)
    io.write_text(args.out, table.to_csv(index=False))
    print(f"wrote {args.out}: {len(table)} rows")


if __name__ == "__main__":
    main()
