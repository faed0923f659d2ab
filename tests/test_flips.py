"""Negative flips: utterance and word level, impact, per-cohort table with speaker-bootstrap intervals."""

import numpy as np
import pandas as pd
import pytest

from fairspeech.metrics.flips import flip_counts, flip_table
from fairspeech.metrics.wer import alignment_counts, reference_hits


def test_reference_hits_agree_with_alignment_counts():
    refs = ["the cat sat on the mat", "hello world", "a b c d", "one"]
    hyps = ["the bat sat on mat", "hello there world", "", "One!"]
    hits = reference_hits(refs, hyps)
    counts = alignment_counts(refs, hyps)
    assert [int(m.sum()) for m in hits] == counts["hits"].tolist()
    assert hits[0].tolist() == [True, False, True, True, True, True] or hits[0].sum() == 4
    assert hits[3].tolist() == [True]  # normalization: case and punctuation


def test_flip_counts_by_hand():
    refs = ["turn on the light", "call mom", "play jazz now"]
    old = ["turn on the light", "call tom", "play jazz now"]
    new = ["turn off the light", "call mom", "play jazz now"]
    counts = flip_counts(refs, old, new)
    assert counts["negative_flip"].tolist() == [1, 0, 0]  # right before, wrong after
    assert counts["positive_flip"].tolist() == [0, 1, 0]
    assert counts["word_negative_flips"].tolist() == [1, 0, 0]  # "on" substituted
    assert counts["word_positive_flips"].tolist() == [0, 1, 0]  # "mom" fixed
    assert counts["new_errors"].tolist() == [1, 0, 0] and counts["old_errors"].tolist() == [0, 1, 0]


def test_flip_table_rates_and_intervals():
    rng = np.random.default_rng(0)
    rows = []
    for s in range(40):
        cohort = "a" if s < 20 else "b"
        for u in range(5):
            ref = "alpha beta gamma delta"
            old = ref
            # cohort b: the update breaks a word in about half of the utterances
            new = "alpha beta gamma" if (cohort == "b" and rng.random() < 0.5) else ref
            rows.append({"speaker_id": f"s{s}", "cohort": cohort, "reference": ref, "old": old, "new": new})
    frame = pd.DataFrame(rows)
    table = flip_table(frame.join(flip_counts(frame.reference, frame.old, frame.new)), by="cohort", n_boot=200, seed=1)
    table = table.set_index("cohort")
    assert list(table.index) == ["(overall)", "a", "b"]
    assert table.loc["a", "negative_flip_rate"] == 0.0
    b = table.loc["b"]
    expected = frame[frame.cohort == "b"].eval("new != old").mean()
    assert b["negative_flip_rate"] == pytest.approx(expected)
    assert b["negative_flip_rate_low"] < b["negative_flip_rate"] < b["negative_flip_rate_high"]
    assert b["word_negative_flip_rate"] == pytest.approx(expected / 4)
    assert b["negative_flip_impact"] == 1.0  # every utterance now wrong used to be right
    assert table.loc["(overall)", "utterances"] == 200 and b["speakers"] == 20
    again = flip_table(frame.join(flip_counts(frame.reference, frame.old, frame.new)), by="cohort", n_boot=200, seed=1)
    pd.testing.assert_frame_equal(again.set_index("cohort"), table)


def test_flip_table_names_missing_columns():
    with pytest.raises(KeyError, match="flip_counts"):
        flip_table(pd.DataFrame({"speaker_id": ["a"]}))
