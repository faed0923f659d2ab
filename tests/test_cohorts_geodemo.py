"""GeodemographicPartition: finds the planted attribute value; zips are normalized and exclusions counted."""

import numpy as np
import pandas as pd
import pytest

from fairspeech.cohorts import GeodemographicPartition
from fairspeech.cohorts import synthetic as syn
from fairspeech.cohorts.geodemographic import MISSING_VALUE, normalize_zip
from fairspeech.data.speakers import speaker_table


def fitted(corpus: syn.PlantedCorpus, **params) -> tuple[GeodemographicPartition, pd.DataFrame]:
    speakers = speaker_table(corpus.utterances, ["zip"])
    return GeodemographicPartition(corpus.zip_attributes, **params).fit(speakers), speakers


@pytest.mark.parametrize(
    "attribute, value", [("majority_language", "Spanish"), ("majority_ethnicity", "Black"), ("majority_language", "English")]
)
def test_finds_the_planted_attribute_and_value(attribute, value):
    corpus = syn.planted_zips(seed=11, attribute=attribute, value=value)
    model, speakers = fitted(corpus, seed=11)
    assert model.partition_["attribute"] == attribute and model.partition_["value"] == value
    assert model.bottom_cohort_ == 0  # the named side is the worse-served one
    assert model.significant_ and model.p_value_ <= 0.01
    bottom = model.labels_ == 0
    assert bottom[bottom.notna()].astype(bool).eq(corpus.planted[bottom.notna()]).all()


def test_numeric_attribute_is_thresholded_at_the_speakers_median():
    rng = np.random.default_rng(3)
    corpus = syn.planted_zips(seed=3, plant_wer=0.10)  # no categorical plant
    speakers = speaker_table(corpus.utterances, ["zip"])
    income = corpus.zip_attributes.set_index(normalize_zip(corpus.zip_attributes["zip"]).to_numpy())["median_income"]
    speaker_income = income.reindex(normalize_zip(speakers["zip"]).to_numpy()).to_numpy()
    # Re-plant: speakers in zips with income at or below the speakers' median get a high WER.
    median = np.nanmedian(speaker_income)
    low = speaker_income <= median
    words = speakers["ref_words"].to_numpy()
    speakers = speakers.assign(errors=rng.binomial(words, np.where(low, 0.2, 0.1)))
    model = GeodemographicPartition(corpus.zip_attributes, seed=3).fit(speakers)
    assert model.partition_["attribute"] == "median_income"
    assert model.partition_["value"] == f"<= {median:.6g}"
    assert model.bin_edges_["median_income"] == pytest.approx([median])
    assert model.describe(model.bottom_cohort_) == f"median_income <= {median:.6g}"


def test_missing_and_unknown_zips_are_counted_not_dropped():
    corpus = syn.planted_zips(seed=5, missing_zip_share=0.05, unknown_zip_share=0.04)
    model, speakers = fitted(corpus, n_permutations=99)
    raw = speakers["zip"]
    assert model.excluded_["missing_zip"] == raw.isna().sum() > 0
    assert model.excluded_["zip_not_in_table"] == (raw == "99999").sum() > 0
    assert model.n_speakers_ + sum(model.excluded_.values()) == len(speakers)
    assert model.labels_.isna().sum() == sum(model.excluded_.values())


def test_zip_normalization():
    values = pd.Series([2134, 2134.0, " 02134", "02134-1234", "2134", None, "abc", "123456", ""], dtype=object)
    out = normalize_zip(values)
    assert out.iloc[:5].tolist() == ["02134"] * 5
    assert out.iloc[5:].isna().all()


def test_missing_attribute_values_form_their_own_category_and_predict_matches_fit():
    corpus = syn.planted_zips(seed=8, n_speakers=3000)
    model, speakers = fitted(corpus, n_permutations=99)
    table = corpus.zip_attributes.set_index(normalize_zip(corpus.zip_attributes["zip"]).to_numpy())
    income = table["median_income"].reindex(normalize_zip(speakers["zip"]).to_numpy())
    expected = int((income.isna().to_numpy() & model.labels_.notna().to_numpy()).sum())
    missing = model.candidates_[model.candidates_["value"] == MISSING_VALUE]
    assert missing["attribute"].tolist() == ["median_income"]  # only income has missing values
    assert missing["speakers"].iloc[0] == expected >= model.min_speakers
    assert model.predict(speakers).equals(model.labels_)


def test_duplicate_zip_rows_are_rejected():
    corpus = syn.planted_zips(seed=9)
    table = pd.concat([corpus.zip_attributes, corpus.zip_attributes.iloc[:1]])
    with pytest.raises(ValueError, match="duplicate"):
        fitted(syn.PlantedCorpus(corpus.utterances, corpus.planted, zip_attributes=table))
