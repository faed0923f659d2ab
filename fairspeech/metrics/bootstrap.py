"""Speaker-level uncertainty: bootstrap and jackknife intervals, permutation p-values, Benjamini-Hochberg.

Utterances of one speaker are correlated, so the resampling unit is always the speaker (or, where an
attribute varies within a speaker, the speaker's utterances inside one cohort). Every function takes
per-unit sums of errors and reference words; WER of a resample is sum(errors) / sum(words).

Random streams are derived from (seed, label) with a stable hash, so a cohort's interval does not
change when other cohorts are added or reordered.
"""

from __future__ import annotations

import warnings
import zlib
from typing import NamedTuple

import numpy as np

# Bound on int32 indices drawn at once (B x units), keeps peak memory near 40 MB per draw.
_MAX_DRAW = 10_000_000


def stream(seed: int, label: object = "") -> np.random.Generator:
    """A generator for (seed, label), independent of any other label's and of call order."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(str(label).encode())]))


def bootstrap_sums(errors: np.ndarray, words: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Summed errors and words of ``n_boot`` resamples (with replacement) of the units."""
    errors = np.asarray(errors, dtype=np.float64)
    words = np.asarray(words, dtype=np.float64)
    n = len(errors)
    out_e = np.empty(n_boot)
    out_w = np.empty(n_boot)
    if n == 0:
        out_e.fill(0.0)
        out_w.fill(0.0)
        return out_e, out_w
    packed = _packed_counts(errors, words)
    # Draws in blocks of ~1M indices, which keeps the gathered values in cache; the stream of draws is
    # the same whatever the block size (numpy's bounded integers consume the generator in order).
    rows = max(1, _BLOCK // n)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n), dtype=np.int32 if n < 2**31 else np.int64)
        if packed is not None:  # one gather and one exact integer sum for both counts
            sums = packed[idx].sum(axis=1)
            out_e[start:stop] = sums >> 32
            out_w[start:stop] = sums & 0xFFFFFFFF
        else:
            out_e[start:stop] = errors[idx].sum(axis=1)
            out_w[start:stop] = words[idx].sum(axis=1)
    return out_e, out_w


_BLOCK = 1 << 20


def _packed_counts(errors: np.ndarray, words: np.ndarray) -> np.ndarray | None:
    """errors * 2^32 + words as int64 when both are whole numbers >= 0 whose resample sums stay below
    2^31 (so neither half overflows into the other); None otherwise. Counts are whole numbers, and
    sums of whole numbers are exact both as integers and as float64 below 2^53, so the float sums of
    the two arrays and the integer sum of the packed one are the same numbers."""
    n = len(errors)
    if n == 0:
        return None
    top_e, top_w = float(errors.max()), float(words.max())
    if min(errors.min(), words.min()) < 0 or n * max(top_e, top_w) >= 2**31:
        return None
    e, w = errors.astype(np.int64), words.astype(np.int64)
    if not (np.array_equal(e, errors) and np.array_equal(w, words)):
        return None
    return (e << 32) | w


def stratified_bootstrap(
    errors: np.ndarray, words: np.ndarray, strata: np.ndarray, labels, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Replicate sums per stratum, (n_boot, n_strata) each; units resampled within their stratum.

    ``strata`` holds integer codes into ``labels``; stratum k uses the stream of ``labels[k]``.
    """
    strata = np.asarray(strata)
    order = np.argsort(strata, kind="stable")
    bounds = np.searchsorted(strata[order], np.arange(len(labels) + 1))
    rep_e = np.empty((n_boot, len(labels)))
    rep_w = np.empty((n_boot, len(labels)))
    for k, label in enumerate(labels):
        members = order[bounds[k] : bounds[k + 1]]
        rep_e[:, k], rep_w[:, k] = bootstrap_sums(errors[members], words[members], n_boot, stream(seed, label))
    return rep_e, rep_w


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ratio with NaN where the denominator is 0 (a WER with no words)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def percentile_interval(replicates: np.ndarray, alpha: float = 0.05, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval, ignoring replicates that are undefined (NaN); NaN if all are."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: a WER with no words
        low, high = np.nanpercentile(replicates, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=axis)
    return low, high


def jackknife_se(errors: np.ndarray, words: np.ndarray, strata: np.ndarray, n_strata: int) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-unit-out jackknife standard errors of each stratum's WER, on the WER and the log-WER scale.

    NaN where a stratum has fewer than 2 units; the log-scale one is also NaN (or inf) where leaving
    out one unit leaves no errors, since log 0 is undefined.
    """
    errors, words, strata, n, total_e, total_w = _stratum_totals(errors, words, strata, n_strata)
    left_out = ratio(total_e[strata] - errors, total_w[strata] - words)
    with np.errstate(divide="ignore"):
        log_left_out = np.log(left_out)
    return np.sqrt(_jackknife_variance(left_out, strata, n)), np.sqrt(_jackknife_variance(log_left_out, strata, n))


def _stratum_totals(errors, words, strata, n_strata: int):
    """Units' errors, words and strata as arrays, with each stratum's unit count, errors and words."""
    errors = np.asarray(errors, dtype=np.float64)
    words = np.asarray(words, dtype=np.float64)
    strata = np.asarray(strata, dtype=np.int64)
    n = np.bincount(strata, minlength=n_strata).astype(np.float64)
    total_e = np.bincount(strata, weights=errors, minlength=n_strata)
    total_w = np.bincount(strata, weights=words, minlength=n_strata)
    return errors, words, strata, n, total_e, total_w


def _jackknife_variance(values: np.ndarray, strata: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Per stratum, (n - 1) / n times the summed squared deviations of leave-one-out ``values`` from their
    stratum mean: the stratum's jackknife variance. NaN where a stratum has fewer than 2 units."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(strata, weights=values, minlength=len(n)) / n
        squares = np.bincount(strata, weights=(values - mean[strata]) ** 2, minlength=len(n))
        return np.where(n >= 2, (n - 1) / n * squares, np.nan)


def jackknife_difference_to_overall(
    errors: np.ndarray, words: np.ndarray, strata: np.ndarray, n_strata: int, log: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Jackknife standard error and degrees of freedom of WER(stratum) - WER(overall), for each stratum.

    The stratum's units are part of the overall, so the two WERs are correlated; leaving one unit out
    moves both when it belongs to the stratum and only the overall when it does not. Strata are
    sample sizes fixed by design (as in :func:`stratified_bootstrap`), so the variance is the sum of
    per-stratum jackknife variances of that difference: the stratum's own (leave-out changes of both
    WERs) plus every other stratum's (changes of the overall only), all from one pass over the units.

    Degrees of freedom: Welch-Satterthwaite over those per-stratum components, each with the
    :func:`effective_df` of its stratum; they are near the stratum's own effective count when it is a
    small part of the overall. NaN where the stratum has fewer than 2 units.
    """
    errors, words, strata, n, total_e, total_w = _stratum_totals(errors, words, strata, n_strata)
    # Leave-one-out changes: of the overall WER (o) and of the unit's own stratum's WER (a).
    scale = np.log if log else (lambda x: x)
    with np.errstate(divide="ignore", invalid="ignore"):
        o = scale(ratio(errors.sum() - errors, words.sum() - words)) - scale(ratio(errors.sum(), words.sum()))
        a = scale(ratio(total_e[strata] - errors, total_w[strata] - words)) - scale(ratio(total_e, total_w))[strata]
    own = _jackknife_variance(a - o, strata, n)  # the stratum's own units: both WERs move
    overall_only = np.nan_to_num(_jackknife_variance(o, strata, n))  # a 1-unit stratum has no spread
    df_strata = effective_df(words, strata, n_strata)
    with np.errstate(invalid="ignore", divide="ignore"):
        overall_only_term = np.where(overall_only > 0, overall_only**2 / df_strata, 0.0)
        variance = own + overall_only.sum() - overall_only
        others_term = np.maximum(overall_only_term.sum() - overall_only_term, 0.0)
        df = variance**2 / (own**2 / df_strata + others_term)
        df = np.where(variance > 0, df, df_strata)  # no spread at all: the stratum's own count
    return np.sqrt(variance), df


class ToOverallIntervals(NamedTuple):
    diff_low: np.ndarray
    diff_high: np.ndarray
    ratio_low: np.ndarray
    ratio_high: np.ndarray


def to_overall_intervals(
    errors: np.ndarray, words: np.ndarray, strata: np.ndarray, n_strata: int, alpha: float = 0.05
) -> ToOverallIntervals:
    """Intervals of each stratum's WER(stratum) / WER(overall) and WER(stratum) - WER(overall).

    Jackknife-t of the log ratio (:func:`jackknife_difference_to_overall` with ``log=True``): a small
    stratum's WER is skewed right, and on the WER scale the symmetric interval excluded 0 on null
    data in ~6.5% of cohorts, mostly from below (benchmarks/audit_calibration.py). The difference
    interval is the ratio interval times WER(overall) minus WER(overall), WER(overall) (R - 1), so it
    excludes 0 exactly when the ratio interval excludes 1. Where the log is undefined (no errors in
    the stratum, or none left when one unit is left out), the WER-scale jackknife-t of the difference,
    the ratio interval then derived from it and floored at 0.
    """
    errors = np.asarray(errors, dtype=np.float64)
    words = np.asarray(words, dtype=np.float64)
    strata = np.asarray(strata, dtype=np.int64)
    overall = ratio(errors.sum(), words.sum())
    wer = ratio(np.bincount(strata, weights=errors, minlength=n_strata), np.bincount(strata, weights=words, minlength=n_strata))
    se, df = jackknife_difference_to_overall(errors, words, strata, n_strata)
    se_log, df_log = jackknife_difference_to_overall(errors, words, strata, n_strata, log=True)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        log_ratio = np.log(ratio(wer, overall))
        on_log = np.isfinite(se_log) & np.isfinite(log_ratio)
        log_low, log_high = difference_t_interval(log_ratio, np.where(on_log, se_log, 0.0), df_log, alpha)
        d_low, d_high = difference_t_interval(wer - overall, se, df, alpha)
        ratio_low = np.where(on_log, np.exp(log_low), np.maximum(1 + ratio(d_low, overall), 0.0))
        ratio_high = np.where(on_log, np.exp(log_high), 1 + ratio(d_high, overall))
        diff_low = np.where(on_log, overall * (ratio_low - 1), d_low)
        diff_high = np.where(on_log, overall * (ratio_high - 1), d_high)
    return ToOverallIntervals(diff_low, diff_high, ratio_low, ratio_high)


def difference_t_interval(
    difference: np.ndarray, se: np.ndarray, df: np.ndarray, alpha: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric Student-t interval ``difference +- t(1 - alpha/2, df) * se``; NaN where df or se is undefined."""
    from scipy import stats

    difference, se, df = (np.asarray(v, dtype=np.float64) for v in (difference, se, df))
    with np.errstate(invalid="ignore"):
        t = np.where(df > 0, stats.t.ppf(1 - alpha / 2, np.where(df > 0, df, 1.0)), np.nan)
    return difference - t * se, difference + t * se


def effective_df(words: np.ndarray, strata: np.ndarray, n_strata: int) -> np.ndarray:
    """Degrees of freedom of each stratum's jackknife variance: (n - 1) / n times the effective number of units.

    A unit's share of the variance grows with its words squared, so a few long-talking speakers carry
    it; Satterthwaite's effective count (sum w^2)^2 / sum w^4 is n when all units have as many words
    and shrinks as they differ. With n - 1 degrees of freedom, 5-speaker cohorts covered ~93%
    (benchmarks/audit_calibration.py).
    """
    words = np.asarray(words, dtype=np.float64)
    strata = np.asarray(strata, dtype=np.int64)
    n = np.bincount(strata, minlength=n_strata).astype(np.float64)
    w2 = np.bincount(strata, weights=words**2, minlength=n_strata)
    w4 = np.bincount(strata, weights=words**4, minlength=n_strata)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= 2, w2**2 / w4 * (n - 1) / n, np.nan)


def t_interval(
    wer: np.ndarray, se: np.ndarray, se_log: np.ndarray, df: np.ndarray, alpha: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """WER interval from jackknife standard errors with Student-t quantiles on ``df`` (:func:`effective_df`).

    On the log scale where it is defined: a cohort's WER is skewed to the right when few speakers
    carry most errors, and the symmetric interval then misses high (benchmarks/audit_calibration.py
    measures coverage by cohort size). Elsewhere the WER-scale interval, floored at 0.
    """
    from scipy import stats

    wer, se, se_log = (np.asarray(v, dtype=np.float64) for v in (wer, se, se_log))
    df = np.asarray(df, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        t = np.where(df > 0, stats.t.ppf(1 - alpha / 2, np.where(df > 0, df, 1.0)), np.nan)
    on_log = np.isfinite(se_log) & (wer > 0)
    with np.errstate(invalid="ignore", over="ignore"):
        low = np.where(on_log, wer * np.exp(-t * np.where(on_log, se_log, 0)), np.maximum(wer - t * se, 0.0))
        high = np.where(on_log, wer * np.exp(t * np.where(on_log, se_log, 0)), wer + t * se)
    return low, high


def simultaneous_critical(se: np.ndarray, df: np.ndarray, alpha: float, n_draws: int, rng: np.random.Generator) -> float:
    """Critical value c such that every pairwise difference d_ij +- c * se_ij covers at once with 1 - alpha.

    The 1 - alpha quantile of max over pairs of |m_i - m_j| / sqrt(s_i^2 + s_j^2), each cohort drawn
    with its own standard error and degrees of freedom (m_i ~ se_i N(0, 1), s_i^2 ~ se_i^2
    chi2(df_i) / df_i), so small cohorts get their t-like tails. An interval from it stays valid for
    the pair picked after looking (worst vs best), because it holds for all pairs together.
    """
    se = np.asarray(se, dtype=np.float64)
    df = np.asarray(df, dtype=np.float64)
    k = len(se)
    if k < 2 or not (np.isfinite(se).all() and (df > 0).all()):
        return float("nan")
    i, j = np.triu_indices(k, 1)
    maxima = np.empty(n_draws)
    rows = max(1, _MAX_DRAW // len(i))
    for start in range(0, n_draws, rows):
        p = min(n_draws, start + rows) - start
        mean = se * rng.standard_normal((p, k))
        var = se**2 * rng.chisquare(df, (p, k)) / df
        with np.errstate(invalid="ignore", divide="ignore"):
            pair = np.abs(mean[:, i] - mean[:, j]) / np.sqrt(var[:, i] + var[:, j])
        maxima[start : start + p] = np.nan_to_num(pair, nan=0.0).max(axis=1)  # 0/0: two error-free cohorts
    return float(np.quantile(maxima, 1 - alpha))


class PermutationTests(NamedTuple):
    pvalues: np.ndarray  # per stratum: |WER(stratum) - WER(rest)|
    max_pvalue: float  # global null "no stratum differs": the largest standardized statistic


def permutation_tests(
    errors: np.ndarray,
    words: np.ndarray,
    strata: np.ndarray,
    n_strata: int,
    n_permutations: int,
    seed: int,
    include: np.ndarray | None = None,
) -> PermutationTests:
    """Permutation p-values per stratum and of the max statistic, permuting stratum labels over units.

    Each stratum's statistic |WER(stratum) - WER(rest)| is divided by its standard deviation over the
    observed and permuted labelings before taking the max over the ``include``d strata (default all),
    so a small stratum's noisy statistic does not decide the max alone. The observed labeling is in
    that reference set, which keeps the standardization a symmetric function of exchangeable labelings
    and the test exact. p = (1 + #{permutations at least as extreme}) / (1 + n_permutations), never 0.
    """
    errors = np.asarray(errors, dtype=np.float64)
    words = np.asarray(words, dtype=np.float64)
    strata = np.asarray(strata, dtype=np.int64)
    total_e, total_w = errors.sum(), words.sum()

    def statistic(e_in: np.ndarray, w_in: np.ndarray) -> np.ndarray:
        return np.abs(ratio(e_in, w_in) - ratio(total_e - e_in, total_w - w_in))

    observed = statistic(
        np.bincount(strata, weights=errors, minlength=n_strata), np.bincount(strata, weights=words, minlength=n_strata)
    )
    rng = stream(seed, "permutation")
    # One permutation at a time, of the labels in the smallest integer type: the shuffle draws the
    # same numbers whatever the type or the number of rows shuffled per call, so the permutations
    # are the ones a (permutations x units) int64 shuffle gives, at a fraction of the memory traffic.
    labels = strata.astype(np.int8 if n_strata <= 127 else np.int16 if n_strata <= 32767 else np.int64)
    e_in = np.empty((n_permutations, n_strata))
    w_in = np.empty((n_permutations, n_strata))
    for i in range(n_permutations):
        permuted = rng.permuted(labels).astype(np.intp)
        e_in[i] = np.bincount(permuted, weights=errors, minlength=n_strata)
        w_in[i] = np.bincount(permuted, weights=words, minlength=n_strata)
    permuted_stats = statistic(e_in, w_in)
    # A tiny tolerance so ties from floating-point sums count as "at least as extreme".
    exceed = (permuted_stats >= observed - 1e-12).sum(axis=0)
    pvalues = (1.0 + exceed) / (1.0 + n_permutations)

    columns = np.ones(n_strata, bool) if include is None else np.asarray(include, bool)
    reference = np.vstack([observed[None, columns], permuted_stats[:, columns]])
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: a stratum with no words
        sd = np.nanstd(reference, axis=0)
        standardized = np.where(sd > 0, reference / sd, 0.0)
        maxima = np.nanmax(standardized, axis=1) if columns.any() else np.zeros(len(reference))
    max_pvalue = (1.0 + (maxima[1:] >= maxima[0] - 1e-12).sum()) / (1.0 + n_permutations)
    return PermutationTests(pvalues, float(max_pvalue))


def permutation_pvalues(
    errors: np.ndarray, words: np.ndarray, strata: np.ndarray, n_strata: int, n_permutations: int, seed: int
) -> np.ndarray:
    """Two-sided p-value per stratum for |WER(stratum) - WER(rest)| (see :func:`permutation_tests`)."""
    return permutation_tests(errors, words, strata, n_strata, n_permutations, seed).pvalues


def benjamini_hochberg(pvalues: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (step-up, monotone, capped at 1); NaN stays NaN."""
    p = np.asarray(pvalues, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    valid = ~np.isnan(p)
    m = int(valid.sum())
    if m == 0:
        return adjusted
    pv = p[valid]
    order = np.argsort(pv)
    scaled = pv[order] * m / np.arange(1, m + 1)
    monotone = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(monotone, 1.0)
    adjusted[valid] = out
    return adjusted
