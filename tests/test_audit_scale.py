"""The fast paths of the audit (issue 23) give the numbers of the straightforward ones, exactly."""

import json
import random
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fairspeech.audit import speaker_units
from fairspeech.metrics import bootstrap as bs
from fairspeech.metrics import wer as wer_module
from fairspeech.metrics.cohort_frame import CohortFrame
from fairspeech.metrics.normalize import IDENTITY, TextNormalizer
from fairspeech.metrics.wer import alignment_counts

sys.path.insert(0, str(Path(__file__).resolve().parent))
from audit_golden import golden_audit  # noqa: E402

PIECES = ["Don’t", "don't", "'quoted'", "dogs'", "--", "...", "a-b", "x\x1cy", "p\u00a0q", "ΟΔΟΣ", "Σ", "e\u0301", "é", "\u200bzw",
          "ﬁne", "İstanbul", "नमस्ते", "क्\u200dष", "\u0301orphan", "", " ", "\t", "\u3000", "w1", "w2", "W1", "a,b", "_", "1,000", "\u2028"]


def tricky_pairs(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    refs = [" ".join(rng.choice(PIECES) for _ in range(rng.randint(0, 8))) + rng.choice(["", " ", "\n"]) for _ in range(n)]
    hyps = [" ".join(rng.choice(PIECES) for _ in range(rng.randint(0, 8))) for _ in range(n)]
    return refs, hyps


@pytest.mark.parametrize("normalizer", [TextNormalizer(), IDENTITY], ids=["default", "identity"])
def test_arrow_counter_matches_the_python_counter(normalizer):
    refs, hyps = tricky_pairs(5000, seed=4)
    expected = wer_module._ChunkCounter(normalizer)(refs, hyps)
    np.testing.assert_array_equal(wer_module._ArrowCounter(normalizer)(refs, hyps), expected)


def test_arrow_counter_falls_back_when_the_characters_run_out(monkeypatch):
    refs, hyps = tricky_pairs(2000, seed=5)
    refs = [f"{r} v{i} v{i + 1}" for i, r in enumerate(refs)]
    expected = wer_module._ChunkCounter(TextNormalizer())(refs, hyps)
    monkeypatch.setattr(wer_module, "_CHAR_CODES", 40)
    counter = wer_module._ArrowCounter(TextNormalizer())
    np.testing.assert_array_equal(counter(refs, hyps), expected)
    assert counter.fallback is not None and counter.fallback.wide


def test_alignment_counts_takes_lists_series_and_arrow_arrays():
    refs, hyps = tricky_pairs(3000, seed=6)
    expected = alignment_counts(refs, hyps)
    hyps_with_none = [None if i % 7 == 0 else h for i, h in enumerate(hyps)]
    expected_none = alignment_counts(refs, ["" if h is None else h for h in hyps_with_none])
    for kind in (pd.Series, lambda v: pd.Series(v, dtype=object), pa.array, lambda v: pa.chunked_array([v[:1000], v[1000:]])):
        pd.testing.assert_frame_equal(alignment_counts(kind(refs), kind(hyps)), expected)
        pd.testing.assert_frame_equal(alignment_counts(kind(refs), kind(hyps_with_none)), expected_none)


def test_parallel_alignment_matches_one_process(monkeypatch):
    refs, hyps = tricky_pairs(4000, seed=7)
    monkeypatch.setattr(wer_module, "_PARALLEL_MIN", 1000)
    monkeypatch.setattr(wer_module, "_CHUNK", 700)
    pd.testing.assert_frame_equal(alignment_counts(refs, hyps, workers=2), alignment_counts(refs, hyps, workers=1))


def _permutation_stats_reference(errors, words, strata, n_strata, n_permutations, seed):
    """The earlier implementation: all permutations as one (permutations x units) int64 shuffle."""
    rng = bs.stream(seed, "permutation")
    n = len(strata)
    permuted = rng.permuted(np.broadcast_to(np.asarray(strata, np.int64), (n_permutations, n)), axis=1)
    flat = (permuted + (np.arange(n_permutations) * n_strata)[:, None]).ravel()
    e_in = np.bincount(flat, weights=np.tile(errors, n_permutations), minlength=n_permutations * n_strata).reshape(n_permutations, n_strata)
    w_in = np.bincount(flat, weights=np.tile(words, n_permutations), minlength=n_permutations * n_strata).reshape(n_permutations, n_strata)
    return e_in, w_in


def test_permutations_are_the_ones_of_one_big_shuffle(monkeypatch):
    rng = np.random.default_rng(0)
    n, k = 3000, 7
    errors = rng.integers(0, 40, n).astype(float)
    words = errors + rng.integers(1, 100, n)
    strata = rng.integers(0, k, n)
    seen = {}
    original = bs.ratio

    def spy(a, b):
        if np.ndim(a) == 2:
            seen.setdefault("e_in", np.asarray(a).copy())
        return original(a, b)

    monkeypatch.setattr(bs, "ratio", spy)
    bs.permutation_tests(errors, words, strata, k, 60, seed=9)
    e_ref, _ = _permutation_stats_reference(errors, words, strata, k, 60, seed=9)
    np.testing.assert_array_equal(seen["e_in"], e_ref)


def test_bootstrap_sums_are_the_two_gathers_sums():
    rng = np.random.default_rng(1)
    for n in (1, 5, 4000):
        errors = rng.integers(0, 50, n).astype(float)
        words = errors + rng.integers(1, 200, n)
        e, w = bs.bootstrap_sums(errors, words, 300, np.random.default_rng(3))
        draw = np.random.default_rng(3).integers(0, n, size=(300, n), dtype=np.int32)
        np.testing.assert_array_equal(e, errors[draw].sum(axis=1))
        np.testing.assert_array_equal(w, words[draw].sum(axis=1))
    fractional = rng.random(50), rng.random(50) + 1  # not counts: the unpacked path
    e, w = bs.bootstrap_sums(*fractional, 20, np.random.default_rng(4))
    draw = np.random.default_rng(4).integers(0, 50, size=(20, 50), dtype=np.int32)
    np.testing.assert_allclose(e, fractional[0][draw].sum(axis=1))


def test_cohort_tables_on_speaker_units_equal_those_on_utterances():
    rng = np.random.default_rng(2)
    n = 5000
    speaker = rng.integers(0, 400, n)
    utterances = pd.DataFrame({
        "speaker_id": [f"s{s}" for s in speaker],
        "gender": np.array(["f", "m", None], dtype=object)[speaker % 3],
        "noise": rng.choice(["clean", "noisy"], n),  # varies within speakers
        "errors": rng.integers(0, 5, n), "ref_words": rng.integers(5, 15, n),
    })
    units = speaker_units(utterances, ["gender", "noise"])
    assert len(units) < n and units["n_utterances"].sum() == n
    for by in (None, "gender", "noise", ["gender", "noise"]):
        a = CohortFrame(utterances, by, n_boot=100, n_permutations=50, seed=1).to_dict()
        b = CohortFrame(units, by, n_boot=100, n_permutations=50, seed=1).to_dict()
        assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_audit_numbers_are_pinned(tmp_path):
    """Every number of a mid-sized audit equals the one written before the speed work (tests/audit_golden.py)."""
    expected = json.loads((Path(__file__).resolve().parent / "data" / "audit_golden.json").read_text())
    assert golden_audit(tmp_path) == expected
