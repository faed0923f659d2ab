"""Calibration of the audit's tests and intervals on null data, where no cohort really differs.

Each dataset: speakers with their own error rate (Beta, mean 0.15), 1-20 utterances each of 1-30
words (Poisson), errors Binomial(words, the speaker's rate). Every cohort draws its speakers from
the same population, so its true WER is the population's 0.15 (words do not depend on the rate) and
every rejection is a false positive. Two designs: "mixed" (one cohort each of 5, 6, 8, 10, 20 and 50
speakers) and "equal" (10 cohorts of 10 speakers). Each dataset goes through CohortFrame with the
audit's defaults (1,000 bootstrap replicates, 1,000 permutations, --min-speakers 5).

Measured: false-positive rate at alpha 0.05 of each test and interval, with its Monte Carlo standard
error (the per-cohort difference to overall also by the percentile bootstrap used before); coverage of the per-cohort WER interval of the true 0.15 by cohort size, next to the
percentile speaker bootstrap the audit used before (same replicates count).

    python benchmarks/audit_calibration.py            # full size
    python benchmarks/audit_calibration.py --quick    # a few datasets, to check the script
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save  # noqa: E402

from fairspeech.metrics import bootstrap as bs  # noqa: E402
from fairspeech.metrics.cohort_frame import CohortFrame  # noqa: E402

TRUE_WER = 0.15
RATE_SHAPE = 2.0  # Beta(2, 2 * 0.85 / 0.15): per-speaker WER sd ~0.09, skewed to the right
DESIGNS = {"mixed": (5, 6, 8, 10, 20, 50), "equal": (10,) * 10}
ALPHA = 0.05


def null_dataset(sizes: tuple[int, ...], rng: np.random.Generator) -> pd.DataFrame:
    """Utterance rows (speaker_id, cohort, errors, ref_words) with no true cohort difference."""
    n = sum(sizes)
    cohort = np.repeat(np.arange(len(sizes)), sizes)
    rate = rng.beta(RATE_SHAPE, RATE_SHAPE * (1 - TRUE_WER) / TRUE_WER, n)
    utts = rng.integers(1, 21, n)
    speaker = np.repeat(np.arange(n), utts)
    words = np.clip(rng.poisson(9, len(speaker)) + 1, 1, 30)
    errors = rng.binomial(words, rate[speaker])
    return pd.DataFrame({
        "speaker_id": [f"s{s}" for s in speaker], "cohort": [f"c{c}" for c in cohort[speaker]],
        "errors": errors, "ref_words": words,
    })


def percentile_previous(frame: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """The previous method, the percentile speaker bootstrap (the audit's replicates for this seed), per cohort:
    whether its WER interval covers the true WER, and whether its WER(cohort) - WER(overall) interval excludes 0."""
    units = frame.groupby(["cohort", "speaker_id"])[["errors", "ref_words"]].sum().reset_index()
    codes, labels = pd.factorize(units["cohort"], sort=True)
    rep_e, rep_w = bs.stratified_bootstrap(units["errors"].to_numpy(float), units["ref_words"].to_numpy(float), codes, list(labels), n_boot, seed)
    rep_wer = bs.ratio(rep_e, rep_w)
    low, high = bs.percentile_interval(rep_wer)
    d_low, d_high = bs.percentile_interval(rep_wer - bs.ratio(rep_e.sum(axis=1), rep_w.sum(axis=1))[:, None])
    return pd.DataFrame({"covers": (low <= TRUE_WER) & (TRUE_WER <= high), "diff_excludes_0": (d_low > 0) | (d_high < 0)}, index=labels)


def rate(hits: list[bool]) -> dict:
    p = float(np.mean(hits))
    return {"rate": round(p, 4), "mc_se": round(float(np.sqrt(p * (1 - p) / len(hits))), 4), "n": len(hits)}


def run_design(name: str, sizes: tuple[int, ...], n_datasets: int, n_boot: int, n_permutations: int) -> dict:
    rng = np.random.default_rng([2026, len(sizes), sizes[0]])
    hits: dict[str, list[bool]] = {k: [] for k in (
        "any_cohort_bh", "max_statistic_test", "gap_difference_adjusted", "gap_difference_naive",
        "gap_ratio_adjusted", "gap_ratio_naive", "cohort_p_unadjusted", "cohort_diff_overall_interval",
        "cohort_ratio_overall_interval", "cohort_diff_overall_percentile_previous",
    )}
    covered: dict[int, list[bool]] = {s: [] for s in sorted(set(sizes))}
    covered_percentile: dict[int, list[bool]] = {s: [] for s in sorted(set(sizes))}
    start = time.perf_counter()
    for i in range(n_datasets):
        frame = null_dataset(sizes, rng)
        cf = CohortFrame(frame, "cohort", n_boot=n_boot, n_permutations=n_permutations, alpha=ALPHA, min_speakers=5, seed=i)
        table, gap = cf.by_group, cf.gap
        hits["any_cohort_bh"].append(bool(table["significant"].any()))
        hits["max_statistic_test"].append(cf.global_test["p_value"] < ALPHA)
        # worst - best >= 0, so an interval excludes 0 (ratio: 1) only from above.
        hits["gap_difference_adjusted"].append(gap["difference_low"] > 0)
        hits["gap_difference_naive"].append(gap["naive_difference_low"] > 0)
        hits["gap_ratio_adjusted"].append(gap["ratio_low"] is not None and gap["ratio_low"] > 1)
        hits["gap_ratio_naive"].append(gap["naive_ratio_low"] is not None and gap["naive_ratio_low"] > 1)
        hits["cohort_p_unadjusted"].extend((table["p_value"] < ALPHA).tolist())
        hits["cohort_diff_overall_interval"].extend(((table["diff_overall_low"] > 0) | (table["diff_overall_high"] < 0)).tolist())
        hits["cohort_ratio_overall_interval"].extend(((table["ratio_overall_low"] > 1) | (table["ratio_overall_high"] < 1)).tolist())
        old = percentile_previous(frame, n_boot, i)
        for label, row in table.iterrows():
            covered[int(row["speakers"])].append(bool(row["wer_low"] <= TRUE_WER <= row["wer_high"]))
            covered_percentile[int(row["speakers"])].append(bool(old.loc[label[0], "covers"]))
            hits["cohort_diff_overall_percentile_previous"].append(bool(old.loc[label[0], "diff_excludes_0"]))
    per_dataset = ("any_cohort_bh", "max_statistic_test", "gap_difference_adjusted", "gap_difference_naive", "gap_ratio_adjusted", "gap_ratio_naive")
    return {
        "cohort_sizes": list(sizes),
        "datasets": n_datasets,
        "wall_s": round(time.perf_counter() - start, 1),
        "false_positive_rate": {k: rate(v) for k, v in hits.items() if k in per_dataset},
        "false_positive_rate_per_cohort": {k: rate(v) for k, v in hits.items() if k not in per_dataset},
        "coverage_by_cohort_size": {
            str(s): {"jackknife_t_log_satterthwaite_df": rate(covered[s]), "percentile_bootstrap_previous": rate(covered_percentile[s])} for s in covered
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", type=int, default=600, help="null datasets per design")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--n-permutations", type=int, default=1000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.datasets = 20
    designs = {name: run_design(name, sizes, args.datasets, args.n_boot, args.n_permutations) for name, sizes in DESIGNS.items()}
    result = {
        "benchmark": "audit_calibration",
        "machine": machine(),
        "workload": {
            "datasets_per_design": args.datasets, "n_boot": args.n_boot, "n_permutations": args.n_permutations, "alpha": ALPHA,
            "min_speakers": 5, "true_wer": TRUE_WER,
            "speakers": f"rate ~ Beta({RATE_SHAPE}, {RATE_SHAPE * (1 - TRUE_WER) / TRUE_WER:.2f}); 1-20 utterances; words 1 + Poisson(9), at most 30; errors Binomial(words, rate)",
        },
        "definitions": {
            "any_cohort_bh": "some cohort's permutation p after Benjamini-Hochberg < alpha (family-wise under the global null)",
            "max_statistic_test": "the table's max-statistic permutation p < alpha",
            "gap_*_adjusted": "the worst-vs-best simultaneous (max-t) interval excludes 0 (ratio: 1)",
            "gap_*_naive": "the bootstrap interval of the picked pair alone excludes 0 (ratio: 1)",
            "cohort_p_unadjusted": "per cohort: unadjusted permutation p < alpha",
            "cohort_diff_overall_interval": "per cohort: the interval of WER(cohort) - WER(overall) excludes 0 (jackknife-t of log WER(cohort)/WER(overall), as WER(overall) (ratio - 1))",
            "cohort_ratio_overall_interval": "per cohort: the interval of WER(cohort) / WER(overall) excludes 1 (the same jackknife-t)",
            "cohort_diff_overall_percentile_previous": "per cohort: the previous percentile speaker-bootstrap interval of WER(cohort) - WER(overall) excludes 0",
            "coverage": "share of cohorts whose WER interval contains the true population WER",
        },
        "designs": designs,
        "targets": {"false_positive_rate_max": 0.05, "coverage_min_at_min_speakers": 0.93},
    }
    save("audit_calibration", result)


if __name__ == "__main__":
    main()
