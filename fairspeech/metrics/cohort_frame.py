"""CohortFrame: WER overall and by cohort with speaker-level uncertainty, in the spirit of fairlearn's MetricFrame.

    frame = CohortFrame(utterances, by=["gender", "age"], n_boot=1000, seed=0)
    frame.overall        # speakers, utterances, words, errors, WER and its interval
    frame.by_group       # one row per cohort (intersection of the attributes): WER, interval,
                         # difference/ratio to overall and to the best cohort, permutation p-value, BH
    frame.difference()   # worst - best WER ("between_groups"), or largest |cohort - overall| ("to_overall")
    frame.ratio()        # best / worst WER, or smallest cohort/overall ratio
    frame.gap            # worst vs best cohort: difference and ratio with simultaneous (selection-adjusted)
                         # intervals, and the naive bootstrap ones kept under naive_*
    frame.global_test    # max-statistic permutation test of "no cohort differs"

WER intervals are Student-t intervals from a leave-one-speaker-out jackknife (log scale, Satterthwaite
degrees of freedom), which hold
their level down to 5-speaker cohorts where the percentile bootstrap covered ~76-81%
(benchmarks/audit_calibration.py). The ratio to overall, WER(cohort) / WER(overall), gets a Student-t
interval from a jackknife of its log (the cohort's speakers are part of the overall, so leaving one out
moves both) with Welch-Satterthwaite degrees of freedom, and the difference to overall the same
interval as WER(overall) (ratio - 1); the percentile bootstrap excluded 0 for ~11% of null cohorts.

Cohorts with fewer than ``min_speakers`` speakers are not reported one by one (privacy and
stability) and are counted in ``frame.suppressed``; they still count in the overall figures.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import pandas as pd

from fairspeech.data import schema
from fairspeech.metrics import bootstrap as bs

MISSING = "(missing)"


def unit_sums(utterances: pd.DataFrame, by: Sequence[str], speaker: str = schema.SPEAKER_ID) -> pd.DataFrame:
    """Errors, words and utterances summed per (cohort, speaker): the resampling units."""
    keys = list(by) + [speaker]
    summed = [schema.ERRORS, schema.REF_WORDS]
    if schema.N_UTTERANCES in utterances.columns:  # rows pre-aggregated by the out-of-core engine
        summed.append(schema.N_UTTERANCES)
    frame = utterances[keys + summed].copy()
    for column in by:
        frame[column] = frame[column].astype("string").fillna(MISSING)
    grouped = frame.groupby(keys, sort=True, observed=True)
    units = grouped[summed].sum()
    units["utterances"] = units.pop(schema.N_UTTERANCES) if schema.N_UTTERANCES in summed else grouped.size()
    return units.reset_index()


class CohortFrame:
    """WER by cohort of one attribute or one intersection of attributes; see the module docstring."""

    def __init__(
        self,
        utterances: pd.DataFrame,
        by: str | Sequence[str] | None = None,
        *,
        speaker: str = schema.SPEAKER_ID,
        n_boot: int = 1000,
        n_permutations: int = 1000,
        alpha: float = 0.05,
        min_speakers: int = 5,
        seed: int = 0,
    ):
        self.by = [by] if isinstance(by, str) else list(by or [])
        self.speaker = speaker
        self.n_boot = n_boot
        self.n_permutations = n_permutations
        self.alpha = alpha
        self.min_speakers = min_speakers
        self.seed = seed
        missing = [c for c in self.by + [speaker, schema.ERRORS, schema.REF_WORDS] if c not in utterances.columns]
        if missing:
            raise KeyError(f"CohortFrame needs columns {missing}; have {list(utterances.columns)}")
        self._compute(utterances)

    @property
    def name(self) -> str:
        return " x ".join(self.by) if self.by else "overall"

    # -- computation -------------------------------------------------------------------------
    def _compute(self, utterances: pd.DataFrame) -> None:
        speakers = unit_sums(utterances, [], self.speaker)
        e, w = speakers[schema.ERRORS].to_numpy(float), speakers[schema.REF_WORDS].to_numpy(float)
        low, high = self._wer_interval(e, w, np.zeros(len(e), np.int64), 1)
        self.overall = pd.Series(
            {
                "speakers": len(speakers),
                "utterances": int(speakers["utterances"].sum()),
                "ref_words": int(w.sum()),
                "errors": int(e.sum()),
                "wer": bs.ratio(e.sum(), w.sum()).item(),
                "wer_low": float(low[0]),
                "wer_high": float(high[0]),
            }
        )
        self.suppressed = {"cohorts": 0, "speakers": 0, "utterances": 0}
        self.gap = None
        self.global_test = None
        if not self.by:
            self.by_group = pd.DataFrame()
            return

        units = unit_sums(utterances, self.by, self.speaker)
        cohort_index = pd.MultiIndex.from_frame(units[self.by])
        codes, labels = pd.factorize(cohort_index, sort=True)
        labels = pd.MultiIndex.from_tuples(list(labels), names=self.by)
        ue, uw = units[schema.ERRORS].to_numpy(float), units[schema.REF_WORDS].to_numpy(float)
        k = len(labels)
        table = pd.DataFrame(
            {
                "speakers": np.bincount(codes, minlength=k),
                "utterances": np.bincount(codes, weights=units["utterances"], minlength=k).astype(int),
                "ref_words": np.bincount(codes, weights=uw, minlength=k).astype(int),
                "errors": np.bincount(codes, weights=ue, minlength=k).astype(int),
            },
            index=labels,
        )
        table["wer"] = bs.ratio(table["errors"], table["ref_words"])

        reported = (table["speakers"] >= self.min_speakers).to_numpy()
        self.suppressed = {
            "cohorts": int((~reported).sum()),
            "speakers": int(table.loc[~reported, "speakers"].sum()),
            "utterances": int(table.loc[~reported, "utterances"].sum()),
        }
        # The permutation tests and the bootstrap draw from their own streams, so they run side by side
        # (numpy releases the GIL while it shuffles and gathers): the same numbers on two cores.
        with ThreadPoolExecutor(max_workers=1) as pool:
            permutations = pool.submit(bs.permutation_tests, ue, uw, codes, k, self.n_permutations, self.seed, include=reported)
            stream_labels = [" x ".join(map(str, lab)) for lab in labels]
            rep_e, rep_w = bs.stratified_bootstrap(ue, uw, codes, stream_labels, self.n_boot, self.seed)
            rep_wer = bs.ratio(rep_e, rep_w)
            table["wer_low"], table["wer_high"] = self._wer_interval(ue, uw, codes, k)
            tests = permutations.result()
        pvalues = tests.pvalues
        self.global_test = {
            "null": "no reported cohort's WER differs from the rest",
            "statistic": "max over reported cohorts of |WER(cohort) - WER(rest)| / its permutation SD",
            "p_value": tests.max_pvalue if reported.any() else None,
            "n_permutations": self.n_permutations,
        }
        se, se_log = bs.jackknife_se(ue, uw, codes, k)
        df = bs.effective_df(uw, codes, k)

        overall_wer = self.overall["wer"]
        table["diff_overall"] = table["wer"] - overall_wer
        table["ratio_overall"] = bs.ratio(table["wer"], overall_wer)
        # Jackknife-t of log(WER(cohort) / WER(overall)) over units: the cohort's units are part of the
        # overall, and leaving one out moves both; the difference interval is WER(overall) (ratio - 1).
        to_overall = bs.to_overall_intervals(ue, uw, codes, k, self.alpha)
        table["diff_overall_low"], table["diff_overall_high"] = to_overall.diff_low, to_overall.diff_high
        table["ratio_overall_low"], table["ratio_overall_high"] = to_overall.ratio_low, to_overall.ratio_high
        table["p_value"] = pvalues
        table = table[reported]
        rep_wer = rep_wer[:, reported]
        se, se_log, df = se[reported], se_log[reported], df[reported]
        table["p_adjusted"] = bs.benjamini_hochberg(table["p_value"].to_numpy())
        table["significant"] = table["p_adjusted"] < self.alpha
        if len(table):
            best = int(np.nanargmin(table["wer"].to_numpy()))
            worst = int(np.nanargmax(table["wer"].to_numpy()))
            table["diff_best"] = table["wer"] - table["wer"].iloc[best]
            table["ratio_best"] = bs.ratio(table["wer"], table["wer"].iloc[best])
            self.gap = self._gap(table, rep_wer, se, se_log, df, best, worst)
        self.by_group = table

    def _wer_interval(self, errors: np.ndarray, words: np.ndarray, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        se, se_log = bs.jackknife_se(errors, words, codes, k)
        wer = bs.ratio(np.bincount(codes, weights=errors, minlength=k), np.bincount(codes, weights=words, minlength=k))
        return bs.t_interval(wer, se, se_log, bs.effective_df(words, codes, k), self.alpha)

    def _gap(
        self, table: pd.DataFrame, rep_wer: np.ndarray, se: np.ndarray, se_log: np.ndarray, df: np.ndarray, best: int, worst: int
    ) -> dict:
        """Worst vs best: worst and best were picked after looking, so the reported interval is simultaneous
        over every pair of reported cohorts (max-t); the bootstrap interval of this one pair is kept as naive."""
        w, b = table["wer"].iloc[worst], table["wer"].iloc[best]
        rng = bs.stream(self.seed, f"simultaneous {self.name}")
        c = bs.simultaneous_critical(se, df, self.alpha, self.n_boot, rng)
        half = c * np.hypot(se[worst], se[best])
        # The ratio on the log scale, with its own critical value (the log-scale errors differ in proportion).
        c_log = bs.simultaneous_critical(se_log, df, self.alpha, self.n_boot, rng)
        log_half = c_log * np.hypot(se_log[worst], se_log[best])
        rat = bs.ratio(w, b).item()  # undefined (None in JSON) when the best cohort has no errors at all
        with np.errstate(invalid="ignore", over="ignore"):
            r_low, r_high = rat * np.exp(-log_half), rat * np.exp(log_half)
        naive_d = bs.percentile_interval(rep_wer[:, worst] - rep_wer[:, best], self.alpha)
        naive_r = bs.percentile_interval(bs.ratio(rep_wer[:, worst], rep_wer[:, best]), self.alpha)
        gap = {
            "worst": _label(table.index[worst]),
            "best": _label(table.index[best]),
            "wer_worst": w,
            "wer_best": b,
            "difference": w - b,
            "difference_low": w - b - half,
            "difference_high": w - b + half,
            "ratio": rat,
            "ratio_low": r_low,
            "ratio_high": r_high,
            "interval": "simultaneous over all pairs of reported cohorts (max-t), valid for the pair picked after looking",
            "critical_value": c,
            "naive_difference_low": naive_d[0],
            "naive_difference_high": naive_d[1],
            "naive_ratio_low": naive_r[0],
            "naive_ratio_high": naive_r[1],
            "naive": "bootstrap interval of this pair alone: selected after looking; not a test",
        }
        return {k: _plain(v) for k, v in gap.items()}

    # -- fairlearn-style views ---------------------------------------------------------------
    def difference(self, method: str = "between_groups") -> float:
        """``between_groups``: worst minus best cohort WER; ``to_overall``: largest |cohort - overall|."""
        wer = self.by_group["wer"]
        if method == "between_groups":
            return float(wer.max() - wer.min())
        if method == "to_overall":
            return float((wer - self.overall["wer"]).abs().max())
        raise ValueError(f"method must be 'between_groups' or 'to_overall', not {method!r}")

    def ratio(self, method: str = "between_groups") -> float:
        """``between_groups``: best / worst cohort WER (1 = parity); ``to_overall``: smallest min(c/o, o/c)."""
        wer = self.by_group["wer"]
        if method == "between_groups":
            return float(wer.min() / wer.max()) if wer.max() > 0 else 1.0
        if method == "to_overall":
            o = self.overall["wer"]
            return float(np.minimum(wer / o, o / wer).min())
        raise ValueError(f"method must be 'between_groups' or 'to_overall', not {method!r}")

    def to_dict(self) -> dict:
        """Plain JSON-ready data: settings, overall, cohorts, gap, suppression."""
        cohorts = []
        for label, row in self.by_group.iterrows():
            record = {"cohort": _label(label), **dict(zip(self.by, label if isinstance(label, tuple) else (label,)))}
            record.update({k: _plain(v) for k, v in row.items()})
            cohorts.append(record)
        return {
            "by": self.by,
            "name": self.name,
            "settings": {
                "n_boot": self.n_boot,
                "n_permutations": self.n_permutations,
                "alpha": self.alpha,
                "min_speakers": self.min_speakers,
                "seed": self.seed,
            },
            "overall": {k: _plain(v) for k, v in self.overall.items()},
            "cohorts": cohorts,
            "gap": self.gap,
            "global_test": self.global_test,
            "suppressed": self.suppressed,
        }


def _label(label) -> str:
    return " x ".join(map(str, label)) if isinstance(label, tuple) else str(label)


def _plain(value):
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if np.isnan(value) else float(value)
    return value
