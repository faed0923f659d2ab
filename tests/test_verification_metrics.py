"""EER/minDCF against hand-computed values and sklearn's ROC, weighted trials, per-group reports, trial lists."""

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import roc_curve

from fairspeech.metrics.verification import eer, min_dcf, verification_report
from fairspeech.verification.trials import as_norm_scores, build_trials, cosine_scores

# targets 0.9, 0.8, 0.4; non-targets 0.7, 0.3. Operating points (miss, fa) accepting score >= t:
# (1, 0) (2/3, 0) (1/3, 0) (1/3, 1/2) (0, 1/2) (0, 1): miss - fa crosses 0 between (1/3, 0) and (1/3, 1/2).
SCORES = np.array([0.9, 0.7, 0.8, 0.3, 0.4])
LABELS = np.array([1, 0, 1, 0, 1])


def test_eer_hand_computed():
    assert eer(SCORES, LABELS) == pytest.approx(1 / 3)
    # the crossing lands on an operating point: targets 0.9, 0.7; non-targets 0.8, 0.6 -> (1/2, 1/2)
    assert eer([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.5)
    assert eer([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 0.0
    assert eer([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 1.0


def test_min_dcf_hand_computed():
    # normalized cost = miss + 99 fa at p_target 0.01: the best point is (1/3, 0)
    assert min_dcf(SCORES, LABELS, p_target=0.01) == pytest.approx(1 / 3)
    # p_target 0.5: normalized cost = miss + fa, also lowest at (1/3, 0)
    assert min_dcf(SCORES, LABELS, p_target=0.5) == pytest.approx(1 / 3)
    assert min_dcf([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 1.0  # no better than rejecting everything
    with pytest.raises(ValueError, match="p_target"):
        min_dcf(SCORES, LABELS, p_target=1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eer_matches_sklearn_roc(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(400) < 0.2
    scores = np.round(rng.normal(labels * 1.2, 1.0), 1)  # rounded: many ties
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    reference = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)
    assert eer(scores, labels) == pytest.approx(reference, abs=1e-9)
    p = 0.01
    assert min_dcf(scores, labels, p) == pytest.approx(np.min(p * (1 - tpr) + (1 - p) * fpr) / p)


def test_weights_count_trials_repeatedly():
    rng = np.random.default_rng(3)
    labels = rng.random(200) < 0.3
    scores = rng.normal(labels * 1.0, 1.0)
    weights = rng.integers(0, 4, 200)
    repeated = (np.repeat(scores, weights), np.repeat(labels, weights))
    assert eer(scores, labels, weights) == pytest.approx(eer(*repeated))
    assert min_dcf(scores, labels, 0.05, weights=weights) == pytest.approx(min_dcf(*repeated, 0.05))


def _toy_corpus(seed=0):
    rng = np.random.default_rng(seed)
    speakers = np.repeat([f"s{i}" for i in range(12)], 4)
    gender = np.where(np.repeat(np.arange(12), 4) % 2 == 0, "female", "male")
    family = np.repeat(np.array(["a", "b", "c"])[np.arange(12) % 3], 4)
    centers = rng.normal(size=(12, 16))
    noise = np.where(gender == "female", 1.5, 0.5)[:, None]  # female speakers are harder to tell apart
    embeddings = centers[np.repeat(np.arange(12), 4)] + noise * rng.normal(size=(48, 16))
    return speakers, gender, family, embeddings


def test_report_groups_intervals_and_determinism():
    speakers, gender, family, embeddings = _toy_corpus()
    trials = build_trials(speakers)
    scores = cosine_scores(embeddings, trials)
    args = (scores, trials.left, trials.right, trials.target, speakers, {"gender": gender, "voice_family": family})
    report = verification_report(*args, n_boot=100, seed=0)
    assert report == verification_report(*args, n_boot=100, seed=0)
    assert report["overall"]["eer"] == pytest.approx(eer(scores, trials.target))
    female = (gender[trials.left] == "female") & (gender[trials.right] == "female")
    assert report["groups"]["gender"]["female"]["eer"] == pytest.approx(eer(scores[female], trials.target[female]))
    assert report["groups"]["gender"]["female"]["trials"] == int(female.sum())
    assert report["groups"]["gender"]["female"]["speakers"] == 6
    g = report["groups"]["gender"]
    assert report["fairness"]["gender"]["gap"] == pytest.approx(abs(g["female"]["eer"] - g["male"]["eer"]))
    fam = [report["groups"]["voice_family"][k]["eer"] for k in "abc"]
    assert report["fairness"]["voice_family"]["std"] == pytest.approx(np.std(fam))
    assert g["female"]["eer"] > g["male"]["eer"]
    for entry in (report["overall"], g["female"]):
        assert entry["eer_low"] <= entry["eer"] <= entry["eer_high"]
    assert report["fairness"]["gender"]["gap_low"] < report["fairness"]["gender"]["gap_high"]


def test_report_rejects_labels_that_disagree_with_speakers():
    speakers, _, _, embeddings = _toy_corpus()
    trials = build_trials(speakers)
    flipped = trials.target.copy()
    flipped[0] = ~flipped[0]
    with pytest.raises(ValueError, match="target label"):
        verification_report(cosine_scores(embeddings, trials), trials.left, trials.right, flipped, speakers, n_boot=5)


def test_build_trials_all_and_sampled():
    speakers = ["a"] * 3 + ["b"] * 2 + ["c"] * 4
    trials = build_trials(speakers)
    assert trials.summary() == {"trials": 36, "target": 3 + 1 + 6, "nontarget": 26}
    assert (trials.left < trials.right).all()
    assert (np.asarray(speakers)[trials.left] == np.asarray(speakers)[trials.right]).tolist() == trials.target.tolist()
    sampled = build_trials(speakers, max_nontarget=10, seed=1)
    assert sampled.summary() == {"trials": 20, "target": 10, "nontarget": 10}
    again = build_trials(speakers, max_nontarget=10, seed=1)
    assert (sampled.left == again.left).all() and (sampled.right == again.right).all()
    with pytest.raises(ValueError, match="row 2"):
        build_trials(["a", "a", None, "b"])
    with pytest.raises(ValueError, match="no target trials"):
        build_trials(["a", "b", "c"])


def test_as_norm_is_symmetric_and_monotone_for_equal_statistics():
    speakers, _, _, embeddings = _toy_corpus()
    trials = build_trials(speakers)
    cohort = np.random.default_rng(5).normal(size=(30, 16))
    normed = as_norm_scores(embeddings, cohort, trials, top_k=10)
    from fairspeech.verification.trials import Trials

    swapped = as_norm_scores(embeddings, cohort, Trials(trials.right, trials.left, trials.target), top_k=10)
    assert np.allclose(normed, swapped)
    assert eer(normed, trials.target) < 0.5
