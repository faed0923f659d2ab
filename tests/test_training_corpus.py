"""The training corpus: one setting scales it, splits are disjoint, held-out voices are never in training,
every word is one the synthesizers and pocketsphinx share, and a tiny build renders and resumes."""

from __future__ import annotations

import pandas as pd
import pytest

from fairspeech.data import schema
from fairspeech.demo import sentences as sent
from conftest import load_recipe_module
from test_demo_corpus import _require  # skip locally, fail under CI, when a speech part is missing

training = load_recipe_module("asr_baseline", "corpus")


def _config(tmp_path=None, **overrides):
    values = dict(hours=0.6, utterances_per_speaker=3, n_sentences=400, unseen_share=0.1, progress=False)
    if tmp_path is not None:
        values.update(audio_dir=str(tmp_path / "audio"), output_dir=str(tmp_path / "corpus"),
                      benchmark_path=str(tmp_path / "train_corpus.json"))
    return training.TrainingCorpusConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def small():
    _require(modules=["pocketsphinx", "zipcodes"])  # the recognizer's vocabulary filters city names
    return training.build_training_metadata(_config())


def test_hours_decide_the_number_of_speakers():
    assert _config(hours=24.0, utterances_per_speaker=12).n_speakers == 2544
    assert _config(hours=48.0, utterances_per_speaker=12).n_speakers == 2 * 2544


def test_metadata_is_deterministic_and_disjoint_by_speaker(small):
    again = training.build_training_metadata(_config())
    pd.testing.assert_frame_equal(small, again, check_exact=True)
    assert len(small) == _config().n_speakers * 3
    splits_per_speaker = small.groupby(schema.SPEAKER_ID)[schema.SPLIT].nunique()
    assert (splits_per_speaker == 1).all()
    assert set(small[schema.SPLIT]) == {"train", "dev", "test", training.UNSEEN_SPLIT}


def test_train_share_keeps_a_nested_sample_of_train_speakers_and_every_eval_speaker(small):
    half, quarter = (training.build_training_metadata(_config(train_share=share)) for share in (0.5, 0.25))
    speakers = {name: {split: set(part[schema.SPEAKER_ID]) for split, part in frame.groupby(schema.SPLIT)}
                for name, frame in (("all", small), ("half", half), ("quarter", quarter))}
    for split in ("dev", "test", training.UNSEEN_SPLIT):
        assert speakers["half"][split] == speakers["quarter"][split] == speakers["all"][split]
    assert speakers["quarter"]["train"] < speakers["half"]["train"] < speakers["all"]["train"]
    assert len(speakers["half"]["train"]) == round(0.5 * len(speakers["all"]["train"]))
    kept = small[small[schema.SPEAKER_ID].isin(speakers["half"]["train"] | speakers["half"]["dev"] | speakers["half"]["test"]
                                               | speakers["half"][training.UNSEEN_SPLIT])].reset_index(drop=True)
    pd.testing.assert_frame_equal(half, kept)  # the same rows as the full corpus's, sentences included
    with pytest.raises(ValueError, match="train_share"):
        _config(train_share=0)


def test_held_out_voices_are_never_in_training(small):
    keys = small["voice_family"] + "/" + small["voice"]
    unseen = set(training.DEFAULT_UNSEEN_VOICES)
    assert set(keys[small[schema.SPLIT] == training.UNSEEN_SPLIT]) <= unseen
    assert not set(keys[small[schema.SPLIT] != training.UNSEEN_SPLIT]) & unseen
    assert (small["voice_seen"] == (small[schema.SPLIT] != training.UNSEEN_SPLIT)).all()
    # at least one flite or festival voice and several espeak-ng variants are held out
    assert {k.split("/")[0] for k in unseen} >= {"flite", "espeak-ng"}
    assert sum(k.startswith("espeak-ng/") for k in unseen) >= 3


def test_unknown_held_out_voice_is_named():
    with pytest.raises(ValueError, match="espeak-ng/xx"):
        _config(unseen_voices=("espeak-ng/xx",))


def test_training_templates_extend_the_demo_without_changing_it():
    assert set(sent.TEMPLATES) < set(sent.TRAINING_TEMPLATES)
    assert len(sent.TRAINING_TEMPLATES) >= 2 * len(sent.TEMPLATES) - 5
    _require(modules=["pocketsphinx"])
    words = sent.template_vocabulary(sent.TRAINING_TEMPLATES)
    assert words > sent.template_vocabulary()
    assert sent.recognizer_vocabulary(words) == words  # every word pocketsphinx can also write


def test_references_are_distinct_and_in_the_vocabulary(small):
    words = {w for text in small[schema.REFERENCE] for w in text.split()}
    cities = {w for c in sent.speakable_cities(training.spk.zip_attributes(_config().seed)) for w in c.name.split()}
    states = {w for name in sent.STATE_NAMES.values() for w in name.split()}
    assert words <= sent.template_vocabulary(sent.TRAINING_TEMPLATES) | cities | states
    assert set(small["sentence_template"]) & set(sent.EXTRA_TEMPLATES)


@pytest.mark.speech
def test_tiny_build_renders_recognizes_and_resumes(tmp_path):
    _require(binaries=["sox", "flite", "espeak-ng", "text2wave"], modules=["pocketsphinx", "zipcodes"])
    config = _config(tmp_path, hours=0.05, utterances_per_speaker=1, n_sentences=40, workers=1)
    first = training.build_training_corpus(config)
    manifest = pd.read_parquet(tmp_path / "corpus" / "manifest.parquet")
    assert (manifest[schema.DURATION] > 0.5).all() and manifest[schema.HYPOTHESIS].isna().all()
    assert first["utterances"] == len(manifest) and first["hours"] > 0
    wavs = sorted((tmp_path / "audio").rglob("*.wav"))
    stamps = {p: p.stat().st_mtime_ns for p in wavs}
    second = training.build_training_corpus(config, recognize=True)  # reuses every wav, recognizes eval splits
    assert {p: p.stat().st_mtime_ns for p in wavs} == stamps
    manifest = pd.read_parquet(tmp_path / "corpus" / "manifest.parquet")
    recognized = manifest[schema.HYPOTHESIS].notna()
    assert (recognized == manifest[schema.SPLIT].isin(config.recognize_splits)).all()
    assert second["pocketsphinx_wer"]
