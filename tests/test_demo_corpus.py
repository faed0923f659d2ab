"""The demo corpus: seeded metadata, the shipped manifest, and the real audio pipeline end to end.

Audio tests (``@pytest.mark.speech``) use the real flite / festival / espeak-ng, sox, pocketsphinx and
resemblyzer. A missing part fails them when ``CI`` is set and skips them (saying what is missing)
otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import wave
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairspeech.data import schema
from fairspeech.demo import build as demo_build
from fairspeech.demo import build_metadata, metadata_columns

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "data_manifests" / "demo"


def _require(binaries=(), modules=()):
    missing = [b for b in binaries if shutil.which(b) is None]
    missing += [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        reason = f"demo corpus parts not installed: {', '.join(missing)} (scripts/install.sh installs them)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


# ----------------------------------------------------------------------------------------------------
# (a) metadata: deterministic, and the shipped manifest is exactly build_metadata(shipped seed)


@pytest.fixture(scope="module")
def small_metadata():
    _require(modules=["pocketsphinx", "zipcodes"])  # the recognizer's vocabulary filters city names
    return build_metadata(seed=7, n_speakers=24, utterances_per_speaker=3, n_sentences=60)


def test_metadata_is_deterministic_for_a_seed(small_metadata):
    again = build_metadata(seed=7, n_speakers=24, utterances_per_speaker=3, n_sentences=60)
    pd.testing.assert_frame_equal(small_metadata.manifest, again.manifest, check_exact=True)
    pd.testing.assert_frame_equal(small_metadata.zip_attributes, again.zip_attributes, check_exact=True)
    other = build_metadata(seed=8, n_speakers=24, utterances_per_speaker=3, n_sentences=60)
    assert not small_metadata.manifest[schema.REFERENCE].equals(other.manifest[schema.REFERENCE])


def test_sentence_does_not_depend_on_pool_size(small_metadata):
    from fairspeech.demo import sentences, speakers

    cities = sentences.speakable_cities(speakers.active_standard_zips())
    short = sentences.sentence_pool(7, 20, cities)
    long = sentences.sentence_pool(7, 60, cities)
    assert [s.text for s in short] == [s.text for s in long[:20]]


@pytest.fixture(scope="module")
def shipped():
    if not (SHIPPED / demo_build.MANIFEST_NAME).exists():
        pytest.fail(f"{SHIPPED / demo_build.MANIFEST_NAME} is missing: run recipes/demo_corpus/run.sh")
    manifest = pd.read_parquet(SHIPPED / demo_build.MANIFEST_NAME)
    config = json.loads((SHIPPED / demo_build.BUILD_INFO_NAME).read_text())["config"]
    return manifest, config


def test_shipped_manifest_equals_build_metadata(shipped):
    _require(modules=["pocketsphinx", "zipcodes"])
    manifest, config = shipped
    fresh = build_metadata(config["seed"], config["n_speakers"], config["utterances_per_speaker"],
                           config["n_sentences"])
    columns = metadata_columns(manifest)
    assert set(metadata_columns(fresh.manifest)) == set(columns)
    pd.testing.assert_frame_equal(manifest[columns], fresh.manifest[columns], check_exact=True)
    # keep_default_na=False: an empty language_region stays "" as build_metadata makes it.
    shipped_zips = pd.read_csv(SHIPPED / demo_build.ZIP_ATTRIBUTES_NAME, dtype={"zip": str}, keep_default_na=False)
    pd.testing.assert_frame_equal(shipped_zips, fresh.zip_attributes.reset_index(drop=True),
                                  check_exact=False, rtol=0, atol=1e-9)


def test_shipped_manifest_content(shipped):
    manifest, _ = shipped
    assert list(manifest.columns[:13]) == list(schema.CANONICAL)
    assert manifest[schema.UTT_ID].is_unique
    assert manifest[schema.SPEAKER_ID].nunique() >= 300
    assert manifest[schema.REFERENCE].nunique() >= 1000
    assert manifest[schema.REFERENCE].str.fullmatch(r"[a-z']+( [a-z']+)*").all()
    assert manifest[schema.HYPOTHESIS].notna().all()
    assert (manifest[schema.DURATION] > 0.3).all()
    assert manifest[schema.ZIP].str.fullmatch(r"\d{5}").all()
    assert set(manifest["voice_family"]) == {"flite", "festival", "espeak-ng"}
    assert set(manifest["condition"]) == {"clean", "noise", "telephone", "reverb"}
    noisy = manifest["condition"] == "noise"
    assert manifest.loc[noisy, "snr_db"].notna().all() and manifest.loc[~noisy, "snr_db"].isna().all()
    zips = pd.read_csv(SHIPPED / demo_build.ZIP_ATTRIBUTES_NAME, dtype={"zip": str})
    assert set(manifest[schema.ZIP]) <= set(zips["zip"])


def test_shipped_references_are_words_the_recognizer_can_output(shipped):
    _require(modules=["pocketsphinx"])
    from fairspeech.demo.sentences import recognizer_vocabulary

    words = {w for ref in shipped[0][schema.REFERENCE] for w in ref.split()}
    assert recognizer_vocabulary(words) == words


def test_shipped_embeddings_align_with_manifest(shipped):
    manifest, _ = shipped
    utterance = np.load(SHIPPED / demo_build.UTTERANCE_EMBEDDINGS_NAME)
    assert utterance.shape == (len(manifest), 256)
    assert np.allclose(np.linalg.norm(utterance.astype(np.float32), axis=1), 1.0, atol=1e-2)
    speakers = pd.read_parquet(SHIPPED / demo_build.SPEAKER_EMBEDDINGS_NAME)
    assert set(speakers[schema.SPEAKER_ID]) == set(manifest[schema.SPEAKER_ID])
    assert np.stack(speakers["embedding"]).shape == (len(speakers), 256)


def test_shipped_corpus_has_easy_and_hard_cohorts(shipped):
    import jiwer

    manifest, _ = shipped
    by_family = {f: jiwer.wer(list(g[schema.REFERENCE]), list(g[schema.HYPOTHESIS]))
                 for f, g in manifest.groupby("voice_family")}
    assert by_family["espeak-ng"] > by_family["flite"] + 0.3
    assert by_family["espeak-ng"] > by_family["festival"] + 0.3


# ----------------------------------------------------------------------------------------------------
# (b) splits by speaker


def _assert_speaker_disjoint_splits(manifest: pd.DataFrame) -> None:
    splits_per_speaker = manifest.groupby(schema.SPEAKER_ID)[schema.SPLIT].nunique()
    assert (splits_per_speaker == 1).all()
    assert set(manifest[schema.SPLIT]) == {"train", "dev", "test"}


def test_small_build_splits_are_disjoint_by_speaker(small_metadata):
    _assert_speaker_disjoint_splits(small_metadata.manifest)


def test_shipped_splits_are_disjoint_by_speaker_and_near_70_15_15(shipped):
    manifest, _ = shipped
    _assert_speaker_disjoint_splits(manifest)
    shares = manifest.drop_duplicates(schema.SPEAKER_ID)[schema.SPLIT].value_counts(normalize=True)
    assert abs(shares["train"] - 0.70) < 0.05 and abs(shares["test"] - 0.15) < 0.05
    for family, group in manifest.groupby("voice_family"):
        assert set(group[schema.SPLIT]) == {"train", "dev", "test"}, family


# ----------------------------------------------------------------------------------------------------
# (c) end to end with the real parts, on six utterances

SENTENCES = (
    "set a timer for ten minutes",
    "what is the weather in denver colorado tomorrow",
    "turn off the kitchen lights",
)


def _row(utt_id: str, family: str, voice: str, text: str, **condition) -> dict:
    row = {
        schema.UTT_ID: utt_id, schema.REFERENCE: text, schema.AUDIO_PATH: f"{utt_id}.wav",
        "voice_family": family, "voice": voice, "pitch_cents": 0.0, "tempo": 1.0, "formant_shift": 1.0,
        "gain_db": -3.0, "condition": "clean", "snr_db": float("nan"), "noise_color": "", "noise_seed": -1,
        "reverberance": float("nan"), "room_scale": float("nan"),
    }
    row.update(condition)
    return row


@pytest.fixture(scope="module")
def speech_parts():
    _require(binaries=["flite", "espeak-ng", "text2wave", "festival", "sox"],
             modules=["pocketsphinx", "resemblyzer", "torch", "librosa"])


@pytest.mark.speech
def test_end_to_end_flite_is_recognized_far_better_than_non_native_espeak(speech_parts, tmp_path):
    import jiwer

    import torch

    rows = [_row(f"flite-{i}", "flite", "kal16", s) for i, s in enumerate(SENTENCES)]
    rows += [_row(f"espeak-{i}", "espeak-ng", "pl+boris", s) for i, s in enumerate(SENTENCES)]
    threads = torch.get_num_threads()
    try:
        demo_build._init_worker(("recognizer", "encoder"))  # what each build worker runs (sets one torch thread)
        results = {r[schema.UTT_ID]: demo_build._process((r, str(tmp_path))) for r in rows}
    finally:
        torch.set_num_threads(threads)

    for row in rows:
        wav_path = tmp_path / row[schema.AUDIO_PATH]
        with wave.open(str(wav_path)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
            assert w.getnframes() > 16000 * 0.5
        result = results[row[schema.UTT_ID]]
        assert len(result["embedding"]) == 256
        assert abs(np.linalg.norm(result["embedding"]) - 1.0) < 1e-3
        assert json.loads(wav_path.with_suffix(".json").read_text())["hypothesis"] == result["hypothesis"]

    def wer(prefix):
        return jiwer.wer(list(SENTENCES), [results[f"{prefix}-{i}"]["hypothesis"] for i in range(len(SENTENCES))])

    assert all(results[f"flite-{i}"]["hypothesis"] for i in range(len(SENTENCES)))
    assert wer("flite") < 0.3
    assert wer("espeak") > wer("flite") + 0.4

    # A rerun reuses the cached result without touching the wav.
    mtime = (tmp_path / rows[0][schema.AUDIO_PATH]).stat().st_mtime_ns
    assert demo_build._process((rows[0], str(tmp_path))) == results[rows[0][schema.UTT_ID]]
    assert (tmp_path / rows[0][schema.AUDIO_PATH]).stat().st_mtime_ns == mtime


@pytest.mark.speech
def test_rendering_is_bit_for_bit_and_conditions_apply(speech_parts, tmp_path):
    from fairspeech.demo import synth

    text = SENTENCES[0]
    rows = [
        _row("fest", "festival", "kal_diphone", text, condition="reverb", reverberance=60.0, room_scale=70.0),
        _row("tel", "flite", "slt", text, condition="telephone", pitch_cents=150.0, tempo=0.9,
             formant_shift=1.08),
        _row("noise", "espeak-ng", "es+miguel", text, condition="noise", snr_db=5.0, noise_color="pink",
             noise_seed=123),
    ]
    for row in rows:
        first, second = tmp_path / "a" / f"{row[schema.UTT_ID]}.wav", tmp_path / "b" / f"{row[schema.UTT_ID]}.wav"
        synth.render(row, first)
        synth.render(row, second)
        assert first.read_bytes() == second.read_bytes(), row[schema.UTT_ID]
    # The telephone band leaves (almost) nothing above 3.4 kHz.
    samples = synth.read_pcm16(tmp_path / "a" / "tel.wav").astype(float)
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / 16000)
    assert spectrum[freqs > 3600].sum() < 0.01 * spectrum.sum()
    # Noise at 5 dB SNR fills the silences: no near-silent stretch remains.
    noisy = synth.read_pcm16(tmp_path / "a" / "noise.wav").astype(float)
    assert np.abs(noisy[:800]).mean() > 10


@pytest.mark.speech
def test_missing_voice_is_named(speech_parts):
    from fairspeech.demo import synth
    from fairspeech.demo.speakers import Voice

    with pytest.raises(synth.SynthesisError, match="no_such_voice"):
        synth.require_tools([Voice("festival", "no_such_voice", "us", "male", "english")])
    with pytest.raises(synth.SynthesisError, match=r"en-us\+nonexistent"):
        synth.require_tools([Voice("espeak-ng", "en-us+nonexistent", "us", "male", "english")])


@pytest.mark.speech
def test_recognizer_names_unreadable_audio(speech_parts, tmp_path):
    from fairspeech.asr.pocketsphinx_backend import AudioReadError, PocketSphinxRecognizer

    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(AudioReadError, match="broken.wav"):
        PocketSphinxRecognizer().transcribe(bad)
    with pytest.raises(AudioReadError, match="missing.wav"):
        PocketSphinxRecognizer().transcribe(tmp_path / "missing.wav")


@pytest.mark.speech
def test_forked_decoder_equals_a_fresh_decoder_in_any_order(speech_parts, tmp_path):
    from fairspeech.asr.pocketsphinx_backend import FAST_SEARCH, PocketSphinxRecognizer
    from fairspeech.demo import synth

    paths = []
    for i, (voice, text) in enumerate([("slt", SENTENCES[1]), ("rms", SENTENCES[2])]):
        paths.append(tmp_path / f"{i}.wav")
        synth.render(_row(str(i), "flite", voice, text), paths[-1])
    fresh = PocketSphinxRecognizer(fork_fresh_decoders=False, **FAST_SEARCH)
    forked = PocketSphinxRecognizer(fork_fresh_decoders=True, **FAST_SEARCH)
    expected = [fresh.transcribe(p) for p in paths]
    assert [forked.transcribe(p) for p in reversed(paths)][::-1] == expected
    assert forked.transcribe(paths[0]) == expected[0]
