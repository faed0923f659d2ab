"""Speaker verification metrics: EER and minDCF, overall and per group, with speaker-bootstrap intervals.

    eer(scores, labels)                       # equal error rate, interpolated
    min_dcf(scores, labels, p_target=0.01)    # NIST-normalized minimum detection cost
    verification_report(scores, left, right, target, speakers, {"gender": genders, ...}, n_boot=500, seed=0)

Trials are sorted by score once; miss and false-alarm rates at every distinct threshold come from
cumulative sums of (weighted) target and non-target counts (accept when score >= threshold, so tied
scores move together, as ``sklearn.metrics.roc_curve(drop_intermediate=False)``). The EER is where
the miss and false-alarm curves cross, linearly interpolated between the two operating points that
bracket the crossing (the same number as ``brentq(1 - x - interp(x, fpr, tpr))`` on the ROC).
minDCF = min over thresholds of ``C_miss P_t P_miss + C_fa (1 - P_t) P_fa``, divided by the cost of
the better trivial system, ``min(C_miss P_t, C_fa (1 - P_t))``.

A group's trials are those whose two sides are both in the group. Fairness figures per attribute: the
absolute EER gap (best vs worst group: for two groups, their difference) and the standard deviation
of group EERs (ddof 0). Intervals resample speakers with replacement (streams from
:func:`fairspeech.metrics.bootstrap.stream`): a trial between speakers a != b drawn c_a and c_b times
counts c_a * c_b times, a target trial of speaker a counts c_a times; every group and gap of one
replicate comes from the same resample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from fairspeech.metrics.bootstrap import percentile_interval, stream


@dataclass
class SortedTrials:
    """Trials sorted by descending score, with the last position of each run of tied scores."""

    order: np.ndarray
    labels: np.ndarray  # bool, in sorted order
    ends: np.ndarray


def sort_trials(scores: np.ndarray, labels: np.ndarray) -> SortedTrials:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if scores.ndim != 1 or scores.shape != labels.shape:
        raise ValueError(f"scores and labels must be vectors of one length, got {scores.shape} and {labels.shape}")
    if np.isnan(scores).any():
        raise ValueError(f"{int(np.isnan(scores).sum())} trial scores are NaN")
    order = np.argsort(-scores, kind="stable")
    ordered = scores[order]
    ends = np.r_[np.flatnonzero(np.diff(ordered)), len(ordered) - 1] if len(ordered) else np.zeros(0, dtype=np.int64)
    return SortedTrials(order, labels[order], ends)


def error_rates(trials: SortedTrials, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Miss and false-alarm rates at each distinct threshold, from accepting nothing to accepting all.

    ``weights`` (one per trial, in the original order) count trials fractionally or repeatedly;
    NaN rates where there are no (weighted) targets or non-targets.
    """
    w = np.ones(len(trials.order)) if weights is None else np.asarray(weights, dtype=np.float64)[trials.order]
    hits = np.cumsum(np.where(trials.labels, w, 0.0))[trials.ends]
    false_alarms = np.cumsum(np.where(trials.labels, 0.0, w))[trials.ends]
    n_target = hits[-1] if len(hits) else 0.0
    n_nontarget = false_alarms[-1] if len(false_alarms) else 0.0
    if n_target <= 0 or n_nontarget <= 0:
        nan = np.full(len(hits) + 1, np.nan)
        return nan, nan
    return np.r_[1.0, 1.0 - hits / n_target], np.r_[0.0, false_alarms / n_nontarget]


def eer_from_rates(miss: np.ndarray, false_alarm: np.ndarray) -> float:
    if np.isnan(miss[0]):
        return float("nan")
    diff = miss - false_alarm  # starts at 1, ends at -1: crosses zero once (non-increasing)
    k = int(np.argmax(diff <= 0))
    if diff[k] == 0:
        return float(miss[k])
    t = diff[k - 1] / (diff[k - 1] - diff[k])
    return float(miss[k - 1] + t * (miss[k] - miss[k - 1]))


def min_dcf_from_rates(miss: np.ndarray, false_alarm: np.ndarray, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    if np.isnan(miss[0]):
        return float("nan")
    cost = c_miss * p_target * miss + c_fa * (1 - p_target) * false_alarm
    return float(cost.min() / min(c_miss * p_target, c_fa * (1 - p_target)))


def _check_p_target(p_target: float) -> None:
    if not 0 < p_target < 1:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")


def eer(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Equal error rate (a fraction); NaN without both target and non-target trials."""
    return eer_from_rates(*error_rates(sort_trials(scores, labels), weights))


def min_dcf(scores: np.ndarray, labels: np.ndarray, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0,
            weights: np.ndarray | None = None) -> float:
    """NIST-normalized minimum detection cost (1.0 = no better than always rejecting)."""
    _check_p_target(p_target)
    return min_dcf_from_rates(*error_rates(sort_trials(scores, labels), weights), p_target, c_miss, c_fa)


def _subset_figures(trials: SortedTrials, weights: np.ndarray | None, p_target: float) -> tuple[float, float]:
    miss, false_alarm = error_rates(trials, weights)
    return eer_from_rates(miss, false_alarm), min_dcf_from_rates(miss, false_alarm, p_target)


def verification_report(scores: np.ndarray, left: np.ndarray, right: np.ndarray, target: np.ndarray, speakers: Sequence,
                        groups: Mapping[str, Sequence] | None = None, n_boot: int = 500, seed: int = 0, alpha: float = 0.05,
                        p_target: float = 0.01) -> dict:
    """EER and minDCF overall and per group, fairness figures per attribute, all with speaker-bootstrap intervals.

    ``left``/``right`` index the per-utterance arrays ``speakers`` and ``groups[attribute]`` for each trial.
    """
    _check_p_target(p_target)
    scores = np.asarray(scores, dtype=np.float64)
    left, right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    target = np.asarray(target).astype(bool)
    if not (len(scores) == len(left) == len(right) == len(target)):
        raise ValueError(f"scores, left, right and target differ in length: {len(scores)}, {len(left)}, {len(right)}, {len(target)}")
    speaker_codes, _ = _codes(speakers)
    n_utts = len(speaker_codes)
    if len(left) and (max(left.max(), right.max()) >= n_utts or min(left.min(), right.min()) < 0):
        raise ValueError(f"trial indices must lie in [0, {n_utts}) (one per utterance of 'speakers')")
    same_speaker = speaker_codes[left] == speaker_codes[right]
    if (same_speaker != target).any():
        raise ValueError(f"{int((same_speaker != target).sum())} trials have a target label that disagrees with their speakers")

    subsets = {("overall", ""): np.arange(len(scores))}
    for attribute, values in (groups or {}).items():
        values = np.asarray(values, dtype=object)
        if len(values) != n_utts:
            raise ValueError(f"group attribute {attribute!r} has {len(values)} values for {n_utts} utterances")
        both = values[left] == values[right]
        for value in sorted({v for v in values if v is not None and v == v}, key=str):
            subsets[(attribute, str(value))] = np.flatnonzero(both & (values[left] == value))
    prepared = {key: sort_trials(scores[idx], target[idx]) for key, idx in subsets.items()}
    point = {key: _subset_figures(prepared[key], None, p_target) for key in subsets}

    n_speakers = int(speaker_codes.max()) + 1 if n_utts else 0
    boot = {key: np.full((n_boot, 2), np.nan) for key in subsets}
    rng = stream(seed, "verification speakers")
    sa, sb = speaker_codes[left], speaker_codes[right]
    for b in range(n_boot):
        counts = np.bincount(rng.integers(0, n_speakers, n_speakers), minlength=n_speakers).astype(np.float64)
        weights = np.where(same_speaker, counts[sa], counts[sa] * counts[sb])
        for key, idx in subsets.items():
            boot[key][b] = _subset_figures(prepared[key], weights[idx], p_target)

    def entry(key) -> dict:
        idx = subsets[key]
        eer_low, eer_high = percentile_interval(boot[key][:, 0], alpha)
        dcf_low, dcf_high = percentile_interval(boot[key][:, 1], alpha)
        utts = np.union1d(left[idx], right[idx])
        return {"eer": point[key][0], "eer_low": float(eer_low), "eer_high": float(eer_high),
                "min_dcf": point[key][1], "min_dcf_low": float(dcf_low), "min_dcf_high": float(dcf_high),
                "trials": int(len(idx)), "target_trials": int(target[idx].sum()), "speakers": int(len(np.unique(speaker_codes[utts])))}

    report = {"overall": entry(("overall", "")), "groups": {}, "fairness": {}, "n_boot": n_boot, "alpha": alpha, "p_target": p_target, "seed": seed}
    for attribute in groups or {}:
        keys = [k for k in subsets if k[0] == attribute]
        report["groups"][attribute] = {k[1]: entry(k) for k in keys}
        eers = np.array([point[k][0] for k in keys])
        reps = np.stack([boot[k][:, 0] for k in keys], axis=1) if keys else np.zeros((n_boot, 0))
        fair = {"groups": [k[1] for k in keys]}
        for name, fn in (("gap", lambda e: np.max(e, axis=-1) - np.min(e, axis=-1)), ("std", lambda e: np.std(e, axis=-1))):
            if len(keys) < 2:
                fair |= {name: float("nan"), f"{name}_low": float("nan"), f"{name}_high": float("nan")}
                continue
            low, high = percentile_interval(fn(reps), alpha)
            fair |= {name: float(fn(eers)), f"{name}_low": float(low), f"{name}_high": float(high)}
        report["fairness"][attribute] = fair
    return _nan_to_none(report)


def _nan_to_none(tree):
    """Undefined figures (a group without target or non-target trials) as None, so the report is valid JSON."""
    if isinstance(tree, dict):
        return {k: _nan_to_none(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_nan_to_none(v) for v in tree]
    return None if isinstance(tree, float) and tree != tree else tree


def _codes(values: Sequence) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(values).astype(str)
    uniques, codes = np.unique(values, return_inverse=True)
    return codes.astype(np.int64), uniques
