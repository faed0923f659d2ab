"""Pretrained speaker embeddings from resemblyzer (GE2E d-vectors, 256-d, weights inside its wheel).

    encoder = PretrainedSpeakerEncoder()
    emb = encoder.embed_utterances(paths)             # (n, 256) float32, each row L2-normalised
    ids, means = speaker_means(emb, speaker_ids)      # per-speaker mean, L2-normalised again

On CPU this small model runs faster on one torch thread than on two (measured 2.4x), so
``PretrainedSpeakerEncoder`` sets ``torch.set_num_threads(1)`` unless told otherwise; parallelize over
processes instead.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from fairspeech.cohorts.embedding import EMBEDDING_PREFIX
from fairspeech.data import schema

EMBEDDING_DIM = 256


class PretrainedSpeakerEncoder:
    def __init__(self, device: str = "cpu", torch_threads: int | None = 1):
        try:
            import torch
            from resemblyzer import VoiceEncoder
        except ImportError as exc:
            raise RuntimeError(
                "pretrained speaker embeddings need 'resemblyzer' (pip install --no-deps resemblyzer, "
                "plus webrtcvad-wheels and librosa: pip install 'fairspeech[speech]')"
            ) from exc
        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        self._encoder = VoiceEncoder(device, verbose=False)

    def embed_file(self, path: str | Path) -> np.ndarray:
        """One utterance's 256-d embedding (L2-normalised by resemblyzer)."""
        from resemblyzer import preprocess_wav

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"audio file not found: {path}")
        wav = preprocess_wav(path)
        if len(wav) == 0:
            raise ValueError(f"{path}: no speech left after resemblyzer's silence trimming")
        return self._encoder.embed_utterance(wav).astype(np.float32)

    def embed_utterances(self, paths: Sequence[str | Path]) -> np.ndarray:
        """``(len(paths), 256)`` float32, row i for ``paths[i]``."""
        if len(paths) == 0:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        return np.stack([self.embed_file(p) for p in paths])


def embed_utterances(paths: Sequence[str | Path], encoder: PretrainedSpeakerEncoder | None = None) -> np.ndarray:
    """Utterance embeddings ``(n, 256)`` float32 with a fresh or given encoder."""
    return (encoder or PretrainedSpeakerEncoder()).embed_utterances(paths)


def l2_normalize(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def speaker_means(embeddings: np.ndarray, speaker_ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Sorted speaker ids and their mean utterance embedding, L2-normalised (float32)."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    speaker_ids = np.asarray(speaker_ids)
    if len(speaker_ids) != len(embeddings):
        raise ValueError(f"{len(embeddings)} embeddings but {len(speaker_ids)} speaker ids")
    ids, inverse = np.unique(speaker_ids, return_inverse=True)
    sums = np.zeros((len(ids), embeddings.shape[1]))
    np.add.at(sums, inverse, embeddings)
    means = sums / np.bincount(inverse)[:, None]
    return [str(i) for i in ids], l2_normalize(means).astype(np.float32)


def speaker_embeddings_from_audio(
    utterances: pd.DataFrame, *, audio_root: str | Path | None = None, encoder=None, progress: bool = False
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Speaker embeddings from audio: the mean resemblyzer d-vector of each speaker's utterances, L2-normalized.

    ``encoder``: a :class:`PretrainedSpeakerEncoder` (one is made if None).
    Relative ``audio_path`` values are read under ``audio_root``. Utterances with no path, a missing
    file, or no speech left after trimming are skipped and counted by reason; a speaker with no usable
    utterance gets no row, so :class:`fairspeech.cohorts.embedding.EmbeddingKMeans` counts it as ``missing_embedding``.
    Returns (speaker_id-indexed ``emb_000...`` table, skipped utterances by reason).
    """
    from tqdm.auto import tqdm

    if schema.AUDIO_PATH not in utterances.columns:
        raise ValueError(f"computing speaker embeddings needs an {schema.AUDIO_PATH!r} column")
    encoder = encoder or PretrainedSpeakerEncoder()
    vectors, owners, skipped = [], [], Counter()
    rows = zip(utterances[schema.SPEAKER_ID], utterances[schema.AUDIO_PATH])
    for speaker, path in tqdm(rows, total=len(utterances), desc="speaker embeddings", disable=not progress):
        if pd.isna(path) or not str(path).strip():
            skipped["no_audio_path"] += 1
            continue
        path = Path(path) if audio_root is None or Path(path).is_absolute() else Path(audio_root) / path
        try:
            vectors.append(encoder.embed_file(path))
        except FileNotFoundError:
            skipped["audio_not_found"] += 1
            continue
        except ValueError:  # nothing left after resemblyzer's silence trimming
            skipped["no_speech"] += 1
            continue
        owners.append(speaker)
    dim = vectors[0].shape[0] if vectors else 0
    ids, means = speaker_means(np.stack(vectors), owners) if vectors else ([], np.zeros((0, dim)))
    columns = [f"{EMBEDDING_PREFIX}{i:03d}" for i in range(dim)]
    return pd.DataFrame(means, index=pd.Index(ids, name=schema.SPEAKER_ID), columns=columns), dict(skipped)
