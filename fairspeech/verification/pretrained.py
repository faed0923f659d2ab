"""Pretrained speaker embeddings from resemblyzer (GE2E d-vectors, 256-d, weights inside its wheel).

    encoder = PretrainedSpeakerEncoder()
    emb = encoder.embed_utterances(paths)             # (n, 256) float32, each row L2-normalised
    ids, means = speaker_means(emb, speaker_ids)      # per-speaker mean, L2-normalised again

On CPU this small model runs faster on one torch thread than on two (measured 2.4x), so
``PretrainedSpeakerEncoder`` sets ``torch.set_num_threads(1)`` unless told otherwise; parallelize over
processes instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

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
