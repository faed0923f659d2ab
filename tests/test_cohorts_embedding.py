"""EmbeddingKMeans: recovers a planted high-WER voice cluster; k choice, scale path, inputs, exclusions."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from fairspeech.cohorts import EmbeddingKMeans
from fairspeech.cohorts import synthetic as syn
from fairspeech.cohorts.embedding import expand_embedding_lists
from fairspeech.data.speakers import speaker_table


def speakers_of(corpus: syn.PlantedCorpus) -> pd.DataFrame:
    return speaker_table(corpus.utterances).join(corpus.embeddings.add_prefix("emb_"))


def assert_recovers_plant(model: EmbeddingKMeans, corpus: syn.PlantedCorpus) -> None:
    labels = model.labels_.dropna().astype(int)
    truth = corpus.truth["cluster"].loc[labels.index]
    assert adjusted_rand_score(truth, labels) >= 0.8
    bottom = (labels == model.bottom_cohort_).to_numpy()
    assert adjusted_rand_score(corpus.planted.loc[labels.index], bottom) >= 0.8
    assert model.significant_


@pytest.mark.parametrize("seed", [0, 1])
def test_recovers_planted_cluster_with_given_k(seed):
    corpus = syn.planted_clusters(seed=seed, k=6)
    model = EmbeddingKMeans(k=6, seed=seed).fit(speakers_of(corpus))
    assert_recovers_plant(model, corpus)
    assert model.details()["algorithm"] == "KMeans"


def test_k_chosen_by_silhouette_finds_the_true_k():
    corpus = syn.planted_clusters(seed=2, k=5)
    model = EmbeddingKMeans(k=None, k_range=(2, 8), seed=2).fit(speakers_of(corpus))
    assert model.k_ == 5 and max(model.silhouette_, key=model.silhouette_.get) == 5
    assert_recovers_plant(model, corpus)


def test_minibatch_path_above_threshold():
    corpus = syn.planted_clusters(seed=3, k=6, n_speakers=1500)
    model = EmbeddingKMeans(k=6, minibatch_above=1000, seed=3).fit(speakers_of(corpus))
    assert model.details()["algorithm"] == "MiniBatchKMeans"
    assert_recovers_plant(model, corpus)


def test_embeddings_are_l2_normalized_so_scale_does_not_matter():
    corpus = syn.planted_clusters(seed=4, k=4)
    speakers = speakers_of(corpus)
    emb = [c for c in speakers.columns if c.startswith("emb_")]
    scaled = speakers.copy()
    scaled[emb] = scaled[emb].mul(np.random.default_rng(0).uniform(0.1, 50, len(scaled)), axis=0)
    a = EmbeddingKMeans(k=4, seed=4).fit(speakers)
    b = EmbeddingKMeans(k=4, seed=4).fit(scaled)
    assert adjusted_rand_score(a.labels_.astype(int), b.labels_.astype(int)) > 0.99


def test_list_column_and_missing_embeddings():
    corpus = syn.planted_clusters(seed=5, k=4, n_speakers=600)
    speakers = speaker_table(corpus.utterances)
    vectors = pd.Series([row.to_numpy() for _, row in corpus.embeddings.iterrows()], index=corpus.embeddings.index, dtype=object)
    vectors.iloc[:9] = None
    speakers["embedding"] = vectors
    speakers.loc[speakers.index[9:12], "embedding"] = pd.Series([np.zeros(32)] * 3, index=speakers.index[9:12], dtype=object)
    model = EmbeddingKMeans(k=4, n_permutations=99, seed=5).fit(speakers)
    assert model.excluded_ == {"missing_embedding": 9, "zero_embedding": 3}
    assert model.labels_.isna().sum() == 12
    assert model.predict(speakers).equals(model.labels_)


def test_expand_embedding_lists_rejects_ragged_vectors():
    with pytest.raises(ValueError, match="different lengths"):
        expand_embedding_lists(pd.Series([[1.0, 2.0], [1.0, 2.0, 3.0]], dtype=object))


class FakeEncoder:
    """Stands in for the resemblyzer encoder: a fixed vector per file name, errors as the real one raises."""

    def embed_file(self, path):
        name = path.name
        if name.startswith("missing"):
            raise FileNotFoundError(path)
        if name.startswith("silent"):
            raise ValueError(f"{path}: no speech")
        vector = np.zeros(4, dtype=np.float32)
        vector[int(name[1])] = 1.0
        return vector


def test_speaker_embeddings_from_audio_average_and_count_skips(tmp_path):
    pytest.importorskip("fairspeech.verification.pretrained")  # the encoder module is another engineer's
    from fairspeech.verification.pretrained import speaker_embeddings_from_audio

    manifest = pd.DataFrame(
        {
            "speaker_id": ["a", "a", "a", "b", "b", "c"],
            "audio_path": ["v0.wav", "v1.wav", "missing.wav", "v2.wav", None, "silent.wav"],
        }
    )
    embeddings, skipped = speaker_embeddings_from_audio(manifest, audio_root=tmp_path, encoder=FakeEncoder())
    assert skipped == {"audio_not_found": 1, "no_audio_path": 1, "no_speech": 1}
    assert list(embeddings.index) == ["a", "b"]  # c had no usable utterance
    assert embeddings.loc["a"].to_numpy() == pytest.approx(np.array([1, 1, 0, 0]) / np.sqrt(2))
    assert embeddings.loc["b"].to_numpy() == pytest.approx([0, 0, 1, 0])


@pytest.mark.speech
@pytest.mark.slow  # importing librosa and torch takes most of its ~5-10 s
def test_speaker_embeddings_from_real_audio(tmp_path):
    """Two flite voices, two sentences each: one 256-d unit vector per speaker, and the voices differ.

    Both voices speak at 16 kHz, resemblyzer's rate, so no resampling (and its slow first call) happens.
    """
    import shutil
    import subprocess

    if shutil.which("flite") is None:
        pytest.skip("flite is not installed")
    pytest.importorskip("fairspeech.verification.pretrained")
    pytest.importorskip("resemblyzer")
    from fairspeech.verification.pretrained import speaker_embeddings_from_audio

    rows = []
    for voice in ("awb", "slt"):
        for i, text in enumerate(["Set an alarm for seven thirty tomorrow morning.", "What is the weather like in Denver today?"]):
            path = tmp_path / f"{voice}{i}.wav"
            subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True)
            rows.append({"speaker_id": voice, "audio_path": path.name})
    embeddings, skipped = speaker_embeddings_from_audio(pd.DataFrame(rows), audio_root=tmp_path)
    assert skipped == {} and embeddings.shape == (2, 256)
    assert np.linalg.norm(embeddings.to_numpy(), axis=1) == pytest.approx(1.0, abs=1e-5)
    assert float(embeddings.loc["awb"] @ embeddings.loc["slt"]) < 0.95
