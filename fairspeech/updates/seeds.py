"""The neural-diff experiment over several seeds: each diff's WER gap to the full update, per update.

    python -m fairspeech.updates.seeds benchmarks/results/neural_diff.json benchmarks/results/neural_diff_seed{1,2,3,4}.json \
        --out benchmarks/results/neural_diff_seeds.json

A single run's paired interval covers the speakers sampled, not the run itself: which names an update
brings, which utterances are replayed and the training draws all change with the seed. Over seeds the
gap at each update is reported as its mean with a Student-t 95% interval across seeds, beside every
seed's own figure, and how many seeds are within the tolerance.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import stats

from fairspeech.utils import io


def gaps_by_update(results: dict) -> dict[str, dict[str, float]]:
    """method -> point -> WER relative to the full update there: "update1".."updateN" along the chain, and
    "single" for the one very sparse update (its method named with its density, e.g. "sparse@0.01")."""
    out: dict[str, dict[str, float]] = {}
    for record in results["chain"]:
        if "wer_relative_to_full" in record:
            out.setdefault(record["method"], {})[f"update{int(record['update'])}"] = float(record["wer_relative_to_full"])
    for record in results.get("single_update", []):
        if "wer_relative_to_full" in record:
            out.setdefault(f"{record['method']}@{record['density']:g}", {})["single"] = float(record["wer_relative_to_full"])
    return out


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of ``values`` (the interval is the mean itself for one value)."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half


def _point_order(point: str) -> tuple[int, int]:
    return (0, 0) if point == "single" else (1, int(point.removeprefix("update")))


def markdown_table(summary: dict) -> str:
    """The single update's table, then the chain's: one row per method, one column per point, each cell the mean
    gap [t-interval] (seeds within the tolerance / seeds)."""
    tables = []
    for single in (True, False):
        methods = {m: rows for m, rows in summary["methods"].items() if ("single" in rows) == single}
        points = sorted({k for rows in methods.values() for k in rows}, key=_point_order)
        if not methods:
            continue
        lines = ["| method | " + " | ".join(points) + " |", "|---" * (len(points) + 1) + "|"]
        for method, rows in methods.items():
            cells = [f"{100 * rows[k]['mean']:+.1f}% [{100 * rows[k]['interval'][0]:+.1f}, {100 * rows[k]['interval'][1]:+.1f}] "
                     f"({rows[k]['seeds_within']}/{rows[k]['seeds']})" if k in rows else "" for k in points]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def _comparable(run: dict) -> dict:
    """What must match between seeds: every setting but where files go and which model file is deployed."""
    settings = dict(run["settings"])
    settings["experiment"] = {k: v for k, v in settings.get("experiment", {}).items() if k not in ("out_dir", "results", "base")}
    settings.pop("deployed", None)
    return settings


def across_seeds(runs: Sequence[dict], tolerance: float = 0.01) -> dict:
    """Per diff method and update: every seed's gap to the full update, their mean and t-interval, and how many
    seeds are within ``tolerance``. Runs must share their settings and deployed model; only the seed differs (checked)."""
    seeds = [run["seed"] for run in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"each run must have its own seed, got {seeds}")
    for run in runs[1:]:
        if _comparable(run) != _comparable(runs[0]):
            raise ValueError(f"seed {run['seed']}: settings differ from seed {runs[0]['seed']}'s beyond the seed and paths")
        if run["eval"]["base_wer"] != runs[0]["eval"]["base_wer"]:  # the same deployed model decodes to the same WER
            raise ValueError(f"seed {run['seed']}: its deployed model differs from seed {runs[0]['seed']}'s")
    per_seed = [gaps_by_update(run) for run in runs]
    out = {"seeds": seeds, "tolerance": tolerance, "methods": {}}
    for method in sorted({m for gaps in per_seed for m in gaps}):
        points = sorted({k for gaps in per_seed for k in gaps.get(method, {})}, key=_point_order)
        rows = {}
        for k in points:
            values = [gaps[method][k] for gaps in per_seed if k in gaps.get(method, {})]
            mean, low, high = mean_interval(values)
            rows[k] = {"per_seed": values, "mean": mean, "interval": [low, high], "seeds": len(values),
                                  "seeds_within": int(sum(v <= tolerance for v in values)), "mean_within": bool(mean <= tolerance)}
        out["methods"][method] = rows
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="The neural-diff experiment's gap to full updates over several seeds.")
    parser.add_argument("results", nargs="+", help="the chain's result JSON of each seed")
    parser.add_argument("--tolerance", type=float, default=0.01, help="relative WER gap counted as within (default: %(default)s)")
    parser.add_argument("--out", help="write the summary here (JSON)")
    args = parser.parse_args(argv)
    summary = across_seeds([json.loads(Path(p).read_text(encoding="utf-8")) for p in args.results], args.tolerance)
    summary["results"] = list(args.results)
    if args.out:
        io.write_json(args.out, summary)
    print(markdown_table(summary))

if __name__ == "__main__":
    main()
