"""Speaker verification metrics: EER and minDCF, overall and per group, with speaker-bootstrap intervals.

    eer(scores, labels)                       # equal error rate, interpolated
    min_dcf(scores, labels, p_target=0.01)    # NIST-normalized minimum detection cost
    verification_report(scores, left, right, target, speakers, {"gender": genders, ...}, n_boot=500, seed=0)
    update_report(old_scores, new_scores, left, right, target, speakers, groups)   # EER change and negative flips

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
    speaker_codes = _checked_speakers(speakers, left, right, target)
    n_utts = len(speaker_codes)

    subsets = _group_subsets(left, right, groups, n_utts)
    prepared = {key: sort_trials(scores[idx], target[idx]) for key, idx in subsets.items()}
    point = {key: _subset_figures(prepared[key], None, p_target) for key in subsets}

    boot = {key: np.full((n_boot, 2), np.nan) for key in subsets}
    for b, weights in enumerate(_speaker_resamples(speaker_codes, left, right, n_boot, seed)):
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


def _checked_speakers(speakers: Sequence, left: np.ndarray, right: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Speaker codes per utterance, after checking the trials index them and agree with their target labels."""
    speaker_codes, _ = _codes(speakers)
    n_utts = len(speaker_codes)
    if len(left) and (max(left.max(), right.max()) >= n_utts or min(left.min(), right.min()) < 0):
        raise ValueError(f"trial indices must lie in [0, {n_utts}) (one per utterance of 'speakers')")
    same_speaker = speaker_codes[left] == speaker_codes[right]
    if (same_speaker != target).any():
        raise ValueError(f"{int((same_speaker != target).sum())} trials have a target label that disagrees with their speakers")
    return speaker_codes


def _group_subsets(left: np.ndarray, right: np.ndarray, groups: Mapping[str, Sequence] | None, n_utts: int) -> dict[tuple[str, str], np.ndarray]:
    """Trial indices overall and per (attribute, group): a group's trials have both sides in it."""
    subsets = {("overall", ""): np.arange(len(left))}
    for attribute, values in (groups or {}).items():
        values = np.asarray(values, dtype=object)
        if len(values) != n_utts:
            raise ValueError(f"group attribute {attribute!r} has {len(values)} values for {n_utts} utterances")
        both = values[left] == values[right]
        for value in sorted({v for v in values if v is not None and v == v}, key=str):
            subsets[(attribute, str(value))] = np.flatnonzero(both & (values[left] == value))
    return subsets


def _speaker_resamples(speaker_codes: np.ndarray, left: np.ndarray, right: np.ndarray, n_boot: int, seed: int):
    """Per replicate, each trial's weight under a resample of speakers (see the module docstring)."""
    n_speakers = int(speaker_codes.max()) + 1 if len(speaker_codes) else 0
    rng = stream(seed, "verification speakers")
    sa, sb = speaker_codes[left], speaker_codes[right]
    same_speaker = sa == sb
    for _ in range(n_boot):
        counts = np.bincount(rng.integers(0, n_speakers, n_speakers), minlength=n_speakers).astype(np.float64)
        yield np.where(same_speaker, counts[sa], counts[sa] * counts[sb])


def eer_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The score threshold (accept at or above it) whose miss and false-alarm rates are closest: the
    system's operating point at its EER."""
    trials = sort_trials(scores, labels)
    miss, false_alarm = error_rates(trials)
    if np.isnan(miss[0]):
        raise ValueError("an EER threshold needs both target and non-target trials")
    k = 1 + int(np.argmin(np.abs(miss[1:] - false_alarm[1:])))
    return float(np.asarray(scores, dtype=np.float64)[trials.order][trials.ends[k - 1]])


def update_report(old_scores: np.ndarray, new_scores: np.ndarray, left: np.ndarray, right: np.ndarray, target: np.ndarray,
                  speakers: Sequence, groups: Mapping[str, Sequence] | None = None, n_boot: int = 500, seed: int = 0,
                  alpha: float = 0.05, old_threshold: float | None = None, new_threshold: float | None = None) -> dict:
    """What replacing an old verifier's scores by a new one's does to the same trials, overall and per group.

    Each system decides at its own threshold (default: its EER operating point, :func:`eer_threshold`).
    A negative flip is a trial the old system decided right and the new one wrong (a positive flip the
    reverse). Rates are balanced like the EER: the mean of the target trials' rate and the non-target
    trials' rate, so the many non-target trials do not drown the misses. Per row: both EERs, the EER
    change with a paired speaker-bootstrap interval (the same resample scores both systems), negative
    and positive flip rates with intervals, flipped trials, and speakers with a newly missed target trial.
    Returns ``{"thresholds": {"old", "new"}, "rows": [...]}``; the rows feed
    :class:`fairspeech.updates.check.RegressionGate` as ASR updates' regression tables do.
    """
    old_scores, new_scores = np.asarray(old_scores, dtype=np.float64), np.asarray(new_scores, dtype=np.float64)
    left, right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    target = np.asarray(target).astype(bool)
    if not (len(old_scores) == len(new_scores) == len(left) == len(right) == len(target)):
        raise ValueError("old scores, new scores, left, right and target differ in length")
    speaker_codes = _checked_speakers(speakers, left, right, target)
    old_threshold = eer_threshold(old_scores, target) if old_threshold is None else old_threshold
    new_threshold = eer_threshold(new_scores, target) if new_threshold is None else new_threshold
    old_right = (old_scores >= old_threshold) == target
    new_right = (new_scores >= new_threshold) == target
    negative, positive = old_right & ~new_right, ~old_right & new_right
    subsets = _group_subsets(left, right, groups, len(speaker_codes))
    sorted_old = {key: sort_trials(old_scores[idx], target[idx]) for key, idx in subsets.items()}
    sorted_new = {key: sort_trials(new_scores[idx], target[idx]) for key, idx in subsets.items()}

    def balanced(flags: np.ndarray, idx: np.ndarray, weights: np.ndarray | None) -> float:
        w = np.ones(len(idx)) if weights is None else weights[idx]
        t = target[idx]
        rates = [np.sum(w[m] * flags[idx][m]) / np.sum(w[m]) if np.sum(w[m]) > 0 else np.nan for m in (t, ~t)]
        return float(np.mean(rates))

    def figures(key, weights):
        idx = subsets[key]
        old_eer = eer_from_rates(*error_rates(sorted_old[key], None if weights is None else weights[idx]))
        new_eer = eer_from_rates(*error_rates(sorted_new[key], None if weights is None else weights[idx]))
        return old_eer, new_eer, new_eer - old_eer, balanced(negative, idx, weights), balanced(positive, idx, weights)

    names = ("old_eer", "new_eer", "eer_change", "negative_flip_rate", "positive_flip_rate")
    point = {key: figures(key, None) for key in subsets}
    boot = {key: np.full((n_boot, len(names)), np.nan) for key in subsets}
    for b, weights in enumerate(_speaker_resamples(speaker_codes, left, right, n_boot, seed)):
        for key in subsets:
            boot[key][b] = figures(key, weights)
    rows = []
    for key, idx in subsets.items():
        low, high = percentile_interval(boot[key], alpha)
        utts = np.union1d(left[idx], right[idx])
        missed = idx[negative[idx] & target[idx]]
        row = {"attribute": key[0], "cohort": key[1] or "(overall)", "speakers": int(len(np.unique(speaker_codes[utts]))),
               "trials": int(len(idx)), "target_trials": int(target[idx].sum()), "negative_flips": int(negative[idx].sum()),
               "speakers_with_new_misses": int(len(np.unique(speaker_codes[left[missed]])))}
        for k, name in enumerate(names):
            row |= {name: point[key][k], f"{name}_low": float(low[k]), f"{name}_high": float(high[k])}
        rows.append(row)
    return _nan_to_none({"thresholds": {"old": old_threshold, "new": new_threshold}, "rows": rows})


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
