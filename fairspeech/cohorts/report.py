"""The one reporting path all discovery methods go through: gaps, shares, cross-fitting, comparison, agreement.

Roles. A fitted method names a *bottom* cohort (highest WER) and a *top* cohort (lowest WER) among
its cohorts with at least ``min_speakers`` speakers; every other included speaker is *middle*.
Everything below is computed from per-speaker roles, so the three methods are reported identically.

In-sample vs honest. The in-sample gap measures the cohorts on the speakers used to find them, which
inflates it (the search picked the worst-looking cohort). The honest gap is cross-fitted: see
``DEFINITIONS`` for the exact construction. Intervals are speaker-bootstrap percentile intervals
with roles held fixed (``bootstrap.stratified_bootstrap`` over the three roles): they express
sampling noise given the cohorts; the selection effect is what the honest gap removes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from fairspeech.cohorts.base import BOTTOM, MIDDLE, TOP, UTTERANCES, CannotDiscover, CohortDiscoverer, plain, records
from fairspeech.data import schema
from fairspeech.metrics import bootstrap as bs

DEFINITIONS = {
    "wer": "sum of errors / sum of reference words over the speakers of a cohort (never a mean of per-speaker WERs)",
    "bottom_cohort": "the method's cohort with the highest WER among cohorts with at least min_speakers speakers",
    "top_cohort": "the method's cohort with the lowest WER among cohorts with at least min_speakers speakers",
    "gap_vs_top": "relative WER gap of the bottom cohort against the top cohort: WER(bottom) / WER(top) - 1",
    "gap_vs_rest": "relative WER gap of the bottom cohort against all other included speakers: WER(bottom) / WER(rest) - 1",
    "share_speakers": "speakers in the bottom cohort / speakers the method could use (excluded speakers are counted separately)",
    "share_utterances": "utterances of bottom-cohort speakers / utterances of the speakers the method could use",
    "in_sample": "cohorts fitted on all usable speakers and measured on the same speakers (inflated by the search)",
    "honest": (
        "cross-fitted: the method's usable speakers are split at random (seeded) into halves A and B; the method is "
        "fitted on A alone, and predict() assigns each speaker of B to one of A's cohorts, giving it the role that "
        "cohort has in A's fit (bottom, top or middle); then the same with A and B swapped. Every speaker thus has "
        "one held-out role, from the fit that did not see it. The two folds' held-out speakers are pooled and the "
        "gap is WER(pooled held-out bottom) / WER(pooled held-out top) - 1 (and against the pooled rest). A fold "
        "whose fit finds fewer than two cohorts contributes its held-out speakers to the rest only."
    ),
    "interval": (
        "percentile interval of speaker-bootstrap replicates (speakers resampled with replacement within their "
        "role, roles held fixed); it covers sampling noise given the cohorts, not the search"
    ),
    "p_value": (
        "the method's search-aware permutation p-value: speakers' (errors, words) shuffled over speakers and the "
        "whole search rerun (max-statistic); for the geographic tree, the largest p-value among the splits that "
        "carve out the bottom region"
    ),
}

ROLE_CODES = {BOTTOM: 0, TOP: 1, MIDDLE: 2}


def _sums(speakers: pd.DataFrame, roles: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-speaker errors, words, utterances and role codes of the speakers that have a role."""
    known = roles.notna().to_numpy()
    frame = speakers.loc[roles.index[known]]
    codes = roles[known].map(ROLE_CODES).to_numpy(np.int64)
    return (
        frame[schema.ERRORS].to_numpy(np.float64),
        frame[schema.REF_WORDS].to_numpy(np.float64),
        frame[UTTERANCES].to_numpy(np.float64),
        codes,
    )


def _interval(replicates: np.ndarray, alpha: float) -> tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]
    if not len(finite):
        return np.nan, np.nan
    low, high = bs.percentile_interval(finite, alpha)
    return float(low), float(high)


def gap_estimate(speakers: pd.DataFrame, roles: pd.Series, *, n_boot: int, seed: int, label: str, alpha: float = 0.05) -> dict:
    """WER gaps of the bottom cohort (vs top, vs rest) and its shares, with speaker-bootstrap intervals.

    ``roles`` is indexed like ``speakers``: 'bottom', 'top', 'middle', or <NA> for speakers not included.
    """
    errors, words, utterances, codes = _sums(speakers, roles)
    e = np.bincount(codes, weights=errors, minlength=3)
    w = np.bincount(codes, weights=words, minlength=3)
    count = np.bincount(codes, minlength=3)
    wer_bottom, wer_top = bs.ratio(e[0], w[0]).item(), bs.ratio(e[1], w[1]).item()
    wer_rest = bs.ratio(e[1] + e[2], w[1] + w[2]).item()
    out = {
        "speakers": int(len(codes)),
        "speakers_bottom": int(count[0]),
        "speakers_top": int(count[1]),
        "share_speakers": float(count[0] / len(codes)) if len(codes) else np.nan,
        "share_utterances": float(utterances[codes == 0].sum() / utterances.sum()) if len(codes) else np.nan,
        "wer_bottom": wer_bottom,
        "wer_top": wer_top,
        "wer_rest": wer_rest,
        "gap_vs_top": bs.ratio(wer_bottom, wer_top).item() - 1,
        "gap_vs_rest": bs.ratio(wer_bottom, wer_rest).item() - 1,
    }
    out.update(dict.fromkeys(("gap_vs_top_low", "gap_vs_top_high", "gap_vs_rest_low", "gap_vs_rest_high"), np.nan))
    if count[0] == 0 or n_boot <= 0:
        return out
    labels = [f"{label}/{role}" for role in ROLE_CODES]
    rep_e, rep_w = bs.stratified_bootstrap(errors, words, codes, labels, n_boot, seed)
    rep_bottom = bs.ratio(rep_e[:, 0], rep_w[:, 0])
    rep_top = bs.ratio(rep_e[:, 1], rep_w[:, 1])
    rep_rest = bs.ratio(rep_e[:, 1] + rep_e[:, 2], rep_w[:, 1] + rep_w[:, 2])
    out["gap_vs_top_low"], out["gap_vs_top_high"] = _interval(bs.ratio(rep_bottom, rep_top) - 1, alpha)
    out["gap_vs_rest_low"], out["gap_vs_rest_high"] = _interval(bs.ratio(rep_bottom, rep_rest) - 1, alpha)
    return out


def cohort_intervals(speakers: pd.DataFrame, model: CohortDiscoverer, *, n_boot: int, seed: int, alpha: float = 0.05) -> pd.DataFrame:
    """The fitted cohort table with each cohort's speaker-bootstrap WER interval added."""
    table = model.cohorts_.copy()
    labels = model.labels_.dropna()
    frame = speakers.loc[labels.index]
    positions = pd.Index(table.index).get_indexer(labels.to_numpy(np.int64))
    if n_boot > 0:
        stream_labels = [f"{model.method}/cohort {c}" for c in table.index]
        rep_e, rep_w = bs.stratified_bootstrap(
            frame[schema.ERRORS].to_numpy(np.float64), frame[schema.REF_WORDS].to_numpy(np.float64), positions, stream_labels, n_boot, seed
        )
        table["wer_low"], table["wer_high"] = bs.percentile_interval(bs.ratio(rep_e, rep_w), alpha)
    else:
        table["wer_low"] = table["wer_high"] = np.nan
    return table


def split_halves(speakers: pd.DataFrame, usable: np.ndarray, seed: int) -> tuple[pd.Index, pd.Index]:
    """Seeded halves of the usable speakers. One shuffle of all speakers serves every method, so methods
    that can use the same speakers get the same halves."""
    order = bs.stream(seed, "cross-fit").permutation(len(speakers))
    ids = speakers.index[order[usable[order]]]
    half = len(ids) // 2
    return ids[:half], ids[half:]


def fresh(model: CohortDiscoverer) -> CohortDiscoverer:
    """An unfitted copy with the same parameters (sharing, not copying, large ones like the zip table)."""
    return type(model)(**model.get_params(deep=False))


def cross_fit(model: CohortDiscoverer, speakers: pd.DataFrame, seed: int) -> tuple[pd.Series, list[dict]]:
    """Held-out role of every usable speaker (see DEFINITIONS['honest']) and what each fold's fit found."""
    first, second = split_halves(speakers, model.usable(speakers), seed)
    roles = pd.Series(pd.NA, index=speakers.index, dtype="string")
    folds = []
    for name, fit_ids, held_ids in (("A", first, second), ("B", second, first)):
        fold = {"fold": name, "fitted_speakers": len(fit_ids), "held_out_speakers": len(held_ids)}
        try:
            fitted = fresh(model).fit(speakers.loc[fit_ids])
        except CannotDiscover as reason:
            roles.loc[held_ids] = MIDDLE
            folds.append({**fold, "error": str(reason)})
            continue
        held = fitted.roles(fitted.predict(speakers.loc[held_ids]))
        roles.loc[held_ids] = held
        folds.append(
            {
                **fold,
                "bottom_cohort": fitted.describe(fitted.bottom_cohort_),
                "top_cohort": fitted.describe(fitted.top_cohort_),
                "cohorts": int(len(fitted.cohorts_)),
                "p_value": fitted.p_value_,
                "significant": fitted.significant_,
                "held_out_bottom": int((held == BOTTOM).sum()),
            }
        )
    return roles, folds


@dataclass
class MethodReport:
    """Everything the audit reports about one method's discovery."""

    method: str
    model: CohortDiscoverer | None
    params: dict
    excluded: dict
    status: str = "ok"  # or "unavailable" when the data cannot support the method
    reason: str | None = None
    cohorts: pd.DataFrame = field(default_factory=pd.DataFrame)
    in_sample: dict = field(default_factory=dict)
    honest: dict = field(default_factory=dict)
    folds: list = field(default_factory=list)

    @property
    def bottom_description(self) -> str | None:
        return None if self.model is None else self.model.describe(self.model.bottom_cohort_)

    def to_dict(self) -> dict:
        model = self.model
        return plain(
            {
                "method": self.method,
                "status": self.status,
                "reason": self.reason,
                "params": self.params,
                "speakers_included": None if model is None else model.n_speakers_,
                "excluded": self.excluded,
                "cohorts": records(self.cohorts, index="cohort") if len(self.cohorts) else [],
                "bottom_cohort": self.bottom_description,
                "top_cohort": None if model is None else model.describe(model.top_cohort_),
                "p_value": None if model is None else model.p_value_,
                "significant": None if model is None else model.significant_,
                "gap": self.in_sample,
                "honest_gap": self.honest,
                "cross_fit_folds": self.folds,
                "details": {} if model is None else model.details(),
            }
        )


def describe_params(model: CohortDiscoverer) -> dict:
    """Parameters as JSON-ready values; tables are summarized by shape and columns."""
    out = {}
    for name, value in model.get_params(deep=False).items():
        if isinstance(value, pd.DataFrame):
            value = {"rows": len(value), "columns": [str(c) for c in value.columns]}
        out[name] = plain(value)
    return out


def method_report(model: CohortDiscoverer, speakers: pd.DataFrame, *, n_boot: int, seed: int, alpha: float = 0.05) -> MethodReport:
    """Fit ``model`` on all speakers, then measure it in sample and cross-fitted."""
    params = describe_params(model)
    try:
        model.fit(speakers)
    except CannotDiscover as reason:  # excluded_ is set before fit gives up
        return MethodReport(model.method, None, params, model.excluded_, status="unavailable", reason=str(reason))
    held_out_roles, folds = cross_fit(model, speakers, seed)
    return MethodReport(
        method=model.method,
        model=model,
        params=params,
        excluded=model.excluded_,
        cohorts=cohort_intervals(speakers, model, n_boot=n_boot, seed=seed, alpha=alpha),
        in_sample=gap_estimate(speakers, model.roles(model.labels_), n_boot=n_boot, seed=seed, label=f"{model.method}/in-sample", alpha=alpha),
        honest=gap_estimate(speakers, held_out_roles, n_boot=n_boot, seed=seed, label=f"{model.method}/honest", alpha=alpha),
        folds=folds,
    )


def _pct(x) -> float:
    return 100.0 * x if x is not None and np.isfinite(x) else np.nan


def comparison_table(reports: dict[str, MethodReport]) -> pd.DataFrame:
    """One row per method, side by side (after Dheram et al. 2022): gaps in %, shares in %, significance."""
    rows = []
    for name, report in reports.items():
        gap, honest = report.in_sample, report.honest
        model = report.model
        rows.append(
            {
                "method": name,
                "status": report.status,
                "bottom_cohort": report.bottom_description,
                "cohorts": np.nan if model is None else len(model.cohorts_),
                "wer_bottom_pct": _pct(gap.get("wer_bottom")),
                "wer_top_pct": _pct(gap.get("wer_top")),
                "wer_gap_pct": _pct(gap.get("gap_vs_top")),
                "wer_gap_low_pct": _pct(gap.get("gap_vs_top_low")),
                "wer_gap_high_pct": _pct(gap.get("gap_vs_top_high")),
                "honest_gap_pct": _pct(honest.get("gap_vs_top")),
                "honest_gap_low_pct": _pct(honest.get("gap_vs_top_low")),
                "honest_gap_high_pct": _pct(honest.get("gap_vs_top_high")),
                "gap_vs_rest_pct": _pct(gap.get("gap_vs_rest")),
                "honest_gap_vs_rest_pct": _pct(honest.get("gap_vs_rest")),
                "bottom_share_speakers_pct": _pct(gap.get("share_speakers")),
                "bottom_share_utterances_pct": _pct(gap.get("share_utterances")),
                "p_value": np.nan if model is None else model.p_value_,
                "significant": None if model is None else model.significant_,
                "speakers": np.nan if model is None else model.n_speakers_,
                "excluded": sum(report.excluded.values()),
            }
        )
    return pd.DataFrame(rows)


def assignments(reports: dict[str, MethodReport], speakers: pd.Index) -> pd.DataFrame:
    """speaker_id, then per method its cohort (Int64, <NA> if excluded) and ``<method>_is_bottom``."""
    frame = pd.DataFrame({schema.SPEAKER_ID: speakers.to_numpy()})
    for name, report in reports.items():
        if report.model is None:
            continue
        labels = report.model.labels_.reindex(speakers)
        bottom = report.model.bottom_cohort_
        is_bottom = labels.eq(bottom) if bottom is not None else labels.notna() & False
        frame[name] = labels.array
        frame[f"{name}_is_bottom"] = is_bottom.astype("boolean").mask(labels.isna()).array
    return frame


def agreement(assignment_frame: pd.DataFrame, methods: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pairwise adjusted Rand index of the cohort assignments, and Jaccard overlap of the bottom cohorts,
    each over the speakers both methods assign."""
    present = [m for m in methods if m in assignment_frame.columns]
    ari = pd.DataFrame(np.eye(len(present)), index=present, columns=present)
    overlap = ari.copy()
    for a, b in combinations(present, 2):
        both = assignment_frame[a].notna() & assignment_frame[b].notna()
        pair = assignment_frame[both]
        ari.loc[a, b] = ari.loc[b, a] = adjusted_rand_score(pair[a].astype(int), pair[b].astype(int)) if both.sum() > 1 else np.nan
        in_a, in_b = pair[f"{a}_is_bottom"].to_numpy(bool), pair[f"{b}_is_bottom"].to_numpy(bool)
        union = np.count_nonzero(in_a | in_b)
        overlap.loc[a, b] = overlap.loc[b, a] = np.count_nonzero(in_a & in_b) / union if union else np.nan
    return ari, overlap
