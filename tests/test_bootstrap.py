import numpy as np
import pandas as pd
import pytest

from fairspeech.metrics import bootstrap as bs
from fairspeech.metrics.cohort_frame import CohortFrame


def simulate_speakers(rng, n_speakers, mean_rate=0.15, words=(3, 20), utts=(2, 12)):
    """Speakers with their own error rates (Beta), several utterances each: correlated within speaker."""
    rates = rng.beta(2.0, 2.0 * (1 - mean_rate) / mean_rate, n_speakers)
    rows = []
    for s, rate in enumerate(rates):
        for _ in range(rng.integers(*utts)):
            w = int(rng.integers(*words))
            rows.append((f"s{s}", int(rng.binomial(w, rate)), w))
    return pd.DataFrame(rows, columns=["speaker_id", "errors", "ref_words"])


def test_speaker_bootstrap_interval_covers_true_wer_at_nominal_rate():
    rng = np.random.default_rng(0)
    # True population WER: E[errors]/E[words] = E[rate] because words are independent of rate.
    true_wer = 0.15
    covered = 0
    trials = 300
    for trial in range(trials):
        frame = simulate_speakers(rng, n_speakers=60)
        cf = CohortFrame(frame, None, n_boot=500, n_permutations=0, seed=trial)
        covered += cf.overall["wer_low"] <= true_wer <= cf.overall["wer_high"]
    coverage = covered / trials
    # Percentile bootstrap with 60 clusters slightly under-covers; nominal 0.95.
    assert 0.88 <= coverage <= 0.99, coverage


def test_utterance_bootstrap_would_under_cover_so_the_unit_matters():
    """Sanity check on the simulation: resampling utterances ignores the speaker correlation."""
    rng = np.random.default_rng(1)
    covered = 0
    trials = 200
    for trial in range(trials):
        frame = simulate_speakers(rng, n_speakers=60)
        e, w = bs.bootstrap_sums(frame["errors"].to_numpy(), frame["ref_words"].to_numpy(), 400, bs.stream(trial))
        low, high = bs.percentile_interval(e / w)
        covered += low <= 0.15 <= high
    assert covered / trials < 0.85


def test_permutation_pvalues_are_calibrated_under_the_null():
    rng = np.random.default_rng(2)
    pvalues = []
    for trial in range(150):
        frame = simulate_speakers(rng, n_speakers=40, utts=(1, 4))
        sums = frame.groupby("speaker_id")[["errors", "ref_words"]].sum()
        strata = rng.integers(0, 2, len(sums))
        p = bs.permutation_pvalues(sums["errors"].to_numpy(), sums["ref_words"].to_numpy(), strata, 2, 199, trial)
        pvalues.append(p[0])
    rejection = np.mean(np.array(pvalues) < 0.05)
    assert rejection < 0.1


def test_permutation_detects_a_real_difference():
    rng = np.random.default_rng(3)
    errors = np.concatenate([rng.binomial(100, 0.10, 30), rng.binomial(100, 0.25, 30)]).astype(float)
    words = np.full(60, 100.0)
    strata = np.repeat([0, 1], 30)
    p = bs.permutation_pvalues(errors, words, strata, 2, 999, seed=0)
    assert p.max() == pytest.approx(1 / 1000)


def test_benjamini_hochberg_matches_hand_computation():
    p = np.array([0.01, 0.04, 0.03, 0.20, np.nan])
    # sorted 0.01, 0.03, 0.04, 0.20 -> scaled 0.04, 0.06, 0.0533, 0.20 -> monotone 0.04, 0.0533, 0.0533, 0.20
    expected = np.array([0.04, 0.16 / 3, 0.16 / 3, 0.20, np.nan])
    np.testing.assert_allclose(bs.benjamini_hochberg(p), expected, equal_nan=True)


def test_streams_do_not_depend_on_other_labels():
    a = bs.stream(7, "female").integers(0, 10**9, 5)
    b = bs.stream(7, "female").integers(0, 10**9, 5)
    c = bs.stream(7, "male").integers(0, 10**9, 5)
    assert (a == b).all() and not (a == c).all()


def test_cohort_frame_views_suppression_and_gap():
    rng = np.random.default_rng(4)
    frame = simulate_speakers(rng, n_speakers=80)
    speakers = frame["speaker_id"].unique()
    gender = dict(zip(speakers, rng.choice(["f", "m"], len(speakers))))
    frame["gender"] = frame["speaker_id"].map(gender)
    frame["age"] = frame["speaker_id"].map(dict(zip(speakers, ["young"] * 40 + ["old"] * 37 + ["rare"] * 3)))
    cf = CohortFrame(frame, ["gender", "age"], n_boot=300, n_permutations=99, min_speakers=5, seed=0)
    assert cf.suppressed["cohorts"] >= 1 and cf.suppressed["speakers"] <= 3
    assert "rare" not in cf.by_group.index.get_level_values("age")
    table = cf.by_group
    assert (table["wer_low"] <= table["wer"]).all() and (table["wer"] <= table["wer_high"]).all()
    assert cf.difference() == pytest.approx(table["wer"].max() - table["wer"].min())
    assert cf.ratio() == pytest.approx(table["wer"].min() / table["wer"].max())
    assert cf.gap["difference_low"] <= cf.gap["difference"] <= cf.gap["difference_high"]
    # Cohort WER is a ratio of sums, checked against the raw data.
    sub = frame[(frame.gender == "f") & (frame.age == "young")]
    assert table.loc[("f", "young"), "wer"] == pytest.approx(sub.errors.sum() / sub.ref_words.sum())
    # Same seed, same numbers.
    again = CohortFrame(frame, ["gender", "age"], n_boot=300, n_permutations=99, min_speakers=5, seed=0)
    pd.testing.assert_frame_equal(cf.by_group, again.by_group)
