"""Under no plant, the search-aware tests reject at about the nominal rate, and the honest gap is not inflated."""

import numpy as np
import pytest

from fairspeech.cohorts import EmbeddingKMeans, GeoClusteringTree, GeodemographicPartition
from fairspeech.cohorts import synthetic as syn
from fairspeech.cohorts.report import method_report
from fairspeech.data.speakers import speaker_table

ALPHA = 0.05
N_NULL = 40


def null_speakers(method: str, seed: int, n_speakers: int):
    """(model factory input, speaker frame) of a corpus where WER does not depend on the method's features."""
    if method == "geo":
        corpus = syn.planted_map(n_speakers=n_speakers, seed=seed, plant_wer=0.10, utterances_per_speaker=5)
        return None, speaker_table(corpus.utterances, ["lat", "lon"])
    if method == "geodemo":
        corpus = syn.planted_zips(n_speakers=n_speakers, seed=seed, plant_wer=0.10, n_zips=60)
        return corpus.zip_attributes, speaker_table(corpus.utterances, ["zip"])
    corpus = syn.planted_clusters(n_speakers=n_speakers, seed=seed, plant_wer=0.10, k=4)
    return None, speaker_table(corpus.utterances).join(corpus.embeddings.add_prefix("emb_"))


def model_for(method: str, table, seed: int, **params):
    if method == "geo":
        return GeoClusteringTree(seed=seed, alpha=ALPHA, **params)
    if method == "geodemo":
        return GeodemographicPartition(table, seed=seed, alpha=ALPHA, **params)
    return EmbeddingKMeans(k=4, seed=seed, alpha=ALPHA, **params)


@pytest.mark.parametrize("method", ["geo", "geodemo", "embedding"])
def test_false_positive_rate_is_near_nominal(method):
    pvalues = []
    for i in range(N_NULL):
        table, speakers = null_speakers(method, 5000 + i, n_speakers=300)
        model = model_for(method, table, seed=i, n_permutations=99).fit(speakers)
        pvalues.append(model.p_value_)
        if method == "geo":  # a rejected null is a tree that split; an accepted one is a single region
            assert (len(model.regions_) > 1) == model.significant_
    pvalues = np.array(pvalues)
    assert np.mean(pvalues <= ALPHA) <= 0.125
    # Roughly uniform p-values: a test that never rejects (p always 1) fails here.
    assert 0.35 <= pvalues.mean() <= 0.65
    assert np.mean(pvalues <= 0.5) >= 0.35


@pytest.mark.parametrize("method", ["geo", "geodemo", "embedding"])
def test_honest_gap_removes_the_selection_bias_on_null_data(method):
    in_sample, honest = [], []
    for i in range(8):
        table, speakers = null_speakers(method, 7000 + i, n_speakers=300)
        # The tree is forced to split (no test) so that it always names a bottom region to measure.
        params = {"n_permutations": 0, "max_regions": 4} if method == "geo" else {"n_permutations": 19}
        report = method_report(model_for(method, table, seed=i, **params), speakers, n_boot=0, seed=i)
        in_sample.append(report.in_sample["gap_vs_top"])
        honest.append(report.honest["gap_vs_top"])
    in_sample, honest = np.array(in_sample), np.array(honest)
    assert np.mean(honest < in_sample) >= 0.75
    assert honest.mean() < in_sample.mean() / 2
    assert abs(honest.mean()) < 0.06  # no true gap: the honest estimate centres near 0
