"""The shared reporting path: gap arithmetic, cross-fitting semantics, agreement, the split criterion."""

import numpy as np
import pandas as pd
import pytest

from fairspeech.cohorts import EmbeddingKMeans
from fairspeech.cohorts import synthetic as syn
from fairspeech.cohorts.report import agreement, cross_fit, fresh, gap_estimate, split_halves
from fairspeech.cohorts.search import partition_gain, permutation_test
from fairspeech.data.speakers import speaker_table
from fairspeech.metrics import bootstrap as bs


def tiny_speakers() -> tuple[pd.DataFrame, pd.Series]:
    speakers = pd.DataFrame(
        {"errors": [30, 10, 5, 5, 20, 0], "ref_words": [100, 100, 100, 100, 100, 50], "utterances": [4, 6, 5, 5, 10, 2]},
        index=pd.Index(list("abcdef"), name="speaker_id"),
    )
    roles = pd.Series(["bottom", "bottom", "top", "top", "middle", pd.NA], index=speakers.index, dtype="string")
    return speakers, roles


def test_gap_arithmetic_and_shares():
    speakers, roles = tiny_speakers()
    gap = gap_estimate(speakers, roles, n_boot=200, seed=0, label="t")
    # bottom: 40/200 = 0.2; top: 10/200 = 0.05; rest (top + middle): 30/300 = 0.1. Speaker f has no role.
    assert gap["wer_bottom"] == pytest.approx(0.2) and gap["wer_top"] == pytest.approx(0.05)
    assert gap["gap_vs_top"] == pytest.approx(3.0) and gap["gap_vs_rest"] == pytest.approx(1.0)
    assert gap["share_speakers"] == pytest.approx(2 / 5) and gap["share_utterances"] == pytest.approx(10 / 30)
    assert gap["gap_vs_top_low"] <= gap["gap_vs_top"] <= gap["gap_vs_top_high"]
    assert gap["gap_vs_rest_low"] <= gap["gap_vs_rest"] <= gap["gap_vs_rest_high"]


def test_gap_without_bottom_cohort_is_undefined_not_zero():
    speakers, roles = tiny_speakers()
    gap = gap_estimate(speakers, roles.replace({"bottom": "middle", "top": "middle"}), n_boot=50, seed=0, label="t")
    assert np.isnan(gap["gap_vs_top"]) and gap["share_speakers"] == 0


def test_cross_fit_gives_each_speaker_the_role_from_the_fold_that_did_not_see_it():
    corpus = syn.planted_clusters(seed=21, k=4, n_speakers=500)
    speakers = speaker_table(corpus.utterances).join(corpus.embeddings.add_prefix("emb_"))
    model = EmbeddingKMeans(k=4, n_permutations=19, seed=21)
    roles, folds = cross_fit(model, speakers, seed=3)
    first, second = split_halves(speakers, model.usable(speakers), seed=3)
    assert len(first) == len(second) == 250 and not set(first) & set(second)
    fitted_on_first = fresh(model).fit(speakers.loc[first])
    expected = fitted_on_first.roles(fitted_on_first.predict(speakers.loc[second]))
    assert roles.loc[second].equals(expected)
    assert [f["fold"] for f in folds] == ["A", "B"] and roles.notna().all()
    assert sum(f["held_out_bottom"] for f in folds) == (roles == "bottom").sum()


def test_agreement_is_label_invariant_and_bottom_overlap_is_jaccard():
    frame = pd.DataFrame(
        {
            "a": pd.array([0, 0, 1, 1, 2, 2], dtype="Int64"),
            "a_is_bottom": pd.array([True, True, False, False, False, False], dtype="boolean"),
            "b": pd.array([5, 5, 7, 7, 9, 9], dtype="Int64"),  # same partition, other names
            "b_is_bottom": pd.array([True, False, False, False, False, True], dtype="boolean"),
            "c": pd.array([0, 1, 0, 1, pd.NA, pd.NA], dtype="Int64"),
            "c_is_bottom": pd.array([True, False, True, False, pd.NA, pd.NA], dtype="boolean"),
        }
    )
    ari, overlap = agreement(frame, ["a", "b", "c"])
    assert ari.loc["a", "b"] == pytest.approx(1.0) and ari.loc["b", "a"] == pytest.approx(1.0)
    assert ari.loc["a", "c"] < 0.5  # c crosses a's cohorts (over the 4 speakers both assign)
    assert overlap.loc["a", "b"] == pytest.approx(1 / 3)  # {0,1} vs {0,5}
    assert overlap.loc["a", "c"] == pytest.approx(1 / 3)  # {0,1} vs {0,2} among speakers 0-3


def test_partition_gain_is_the_weighted_squared_wer_difference():
    rng = np.random.default_rng(0)
    e_in, w_in = rng.integers(0, 50, 10).astype(float), rng.integers(60, 200, 10).astype(float)
    e_total, w_total = 400.0, 1500.0
    expected = w_in * (w_total - w_in) / w_total * (e_in / w_in - (e_total - e_in) / (w_total - w_in)) ** 2
    assert partition_gain(e_in, w_in, e_total, w_total) == pytest.approx(expected, rel=1e-12)
    assert partition_gain(0.0, 0.0, e_total, w_total) == 0.0  # an empty side is no partition


def test_permutation_test_early_stop_keeps_the_decision():
    rng = np.random.default_rng(1)
    n = 50_000  # several permutation blocks, so that stopping early is possible
    words = rng.integers(80, 120, n).astype(float)
    membership = (rng.random((n, 5)) < 0.3).astype(float)

    def best(e, w):
        return partition_gain(e @ membership, w @ membership, e.sum(1, keepdims=True), w.sum(1, keepdims=True)).max(1)

    null_errors = rng.binomial(words.astype(int), 0.1).astype(float)
    planted_errors = rng.binomial(words.astype(int), np.where(membership[:, 0] > 0, 0.11, 0.1)).astype(float)
    for errors, significant in ((null_errors, False), (planted_errors, True)):
        full = permutation_test(errors, words, best, 199, bs.stream(0, "x"))
        early = permutation_test(errors, words, best, 199, bs.stream(0, "x"), alpha=0.05)
        assert full.permutations == 199 and not full.stopped_early
        assert (full.p_value <= 0.05) == (early.p_value <= 0.05) == significant
        assert early.stopped_early != significant
        if significant:
            assert early.p_value == full.p_value
