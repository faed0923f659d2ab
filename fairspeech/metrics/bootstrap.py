"""Speaker-level resampling: bootstrap intervals, permutation p-values, Benjamini-Hochberg.

Utterances of one speaker are correlated, so the resampling unit is always the speaker (or, where an
attribute varies within a speaker, the speaker's utterances inside one cohort). Every function takes
per-unit sums of errors and reference words; WER of a resample is sum(errors) / sum(words).

Random streams are derived from (seed, label) with a stable hash, so a cohort's interval does not
change when other cohorts are added or reordered.
"""

from __future__ import annotations

import warnings
import zlib

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
    rows = max(1, _MAX_DRAW // n)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n), dtype=np.int32 if n < 2**31 else np.int64)
        out_e[start:stop] = errors[idx].sum(axis=1)
        out_w[start:stop] = words[idx].sum(axis=1)
    return out_e, out_w


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


def permutation_pvalues(
    errors: np.ndarray, words: np.ndarray, strata: np.ndarray, n_strata: int, n_permutations: int, seed: int
) -> np.ndarray:
    """Two-sided p-value per stratum for |WER(stratum) - WER(rest)|, permuting stratum labels over units.

    p = (1 + #{permutations at least as extreme}) / (1 + n_permutations), so it is never 0.
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
    n = len(strata)
    rng = stream(seed, "permutation")
    exceed = np.zeros(n_strata)
    rows = max(1, _MAX_DRAW // max(n, 1))
    for start in range(0, n_permutations, rows):
        p = min(n_permutations, start + rows) - start
        permuted = rng.permuted(np.broadcast_to(strata, (p, n)), axis=1)
        flat = (permuted + (np.arange(p) * n_strata)[:, None]).ravel()
        e_in = np.bincount(flat, weights=np.tile(errors, p), minlength=p * n_strata).reshape(p, n_strata)
        w_in = np.bincount(flat, weights=np.tile(words, p), minlength=p * n_strata).reshape(p, n_strata)
        # A tiny tolerance so ties from floating-point sums count as "at least as extreme".
        exceed += (statistic(e_in, w_in) >= observed - 1e-12).sum(axis=0)
    return (1.0 + exceed) / (1.0 + n_permutations)


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
