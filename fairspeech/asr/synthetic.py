"""A tiny synthetic speech corpus for tests and smoke runs: words spelled as tones.

Each letter is a short tone at its own pitch, letters are separated by a few milliseconds and words
by a pause, so a CTC model can learn to read it in seconds. Speakers differ in pitch shift and
speaking rate, and carry a ``voice_family`` and ``gender`` so the audit has cohorts to report.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pandas as pd

from fairspeech.data import schema

WORDS = ("bad", "cab", "dab", "ace", "bed", "fade", "deaf", "cafe")
LETTERS = "abcdef"
SAMPLE_RATE = 16000


def _write_wav(path: Path, samples: np.ndarray) -> None:
    pcm = np.clip(samples * 32767, -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(SAMPLE_RATE)
        handle.writeframes(pcm.tobytes())


def render(text: str, pitch: float = 1.0, letter_s: float = 0.09, rng: np.random.Generator | None = None) -> np.ndarray:
    """Samples of ``text`` (words of :data:`LETTERS`) at ``pitch`` times the base frequencies."""
    rng = rng or np.random.default_rng(0)
    pieces = [np.zeros(int(0.05 * SAMPLE_RATE))]
    for w, word in enumerate(text.split()):
        if w:
            pieces.append(np.zeros(int(0.08 * SAMPLE_RATE)))
        for letter in word:
            n = int(letter_s * SAMPLE_RATE)
            t = np.arange(n) / SAMPLE_RATE
            freq = pitch * (300.0 + 250.0 * LETTERS.index(letter))
            envelope = np.hanning(n)
            pieces.append(0.4 * envelope * (np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(4 * np.pi * freq * t)))
            pieces.append(np.zeros(int(0.01 * SAMPLE_RATE)))
    pieces.append(np.zeros(int(0.05 * SAMPLE_RATE)))
    audio = np.concatenate(pieces)
    return audio + 0.003 * rng.standard_normal(len(audio))


def make_tone_corpus(out_dir: str | Path, n_speakers: int = 8, utterances_per_speaker: int = 6, seed: int = 0) -> Path:
    """Write wavs and ``manifest.parquet`` (train/dev/test by speaker) under ``out_dir``; return the manifest path."""
    out = Path(out_dir)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_speakers):
        family = "low" if s % 2 == 0 else "high"
        pitch = (0.9 if family == "low" else 1.1) * rng.uniform(0.97, 1.03)
        letter_s = rng.uniform(0.08, 0.1)
        split = "dev" if s == n_speakers - 2 else "test" if s == n_speakers - 1 else "train"
        for u in range(utterances_per_speaker):
            text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 3))))
            audio = render(text, pitch, letter_s, rng)
            utt = f"spk{s}_{u}"
            path = out / "wav" / f"{utt}.wav"
            _write_wav(path, audio)
            rows.append({
                schema.UTT_ID: utt, schema.SPEAKER_ID: f"spk{s}", schema.REFERENCE: text, schema.AUDIO_PATH: str(path),
                schema.DURATION: len(audio) / SAMPLE_RATE, schema.SPLIT: split, "voice_family": family,
                schema.GENDER: "female" if s % 4 < 2 else "male",
            })
    manifest = out / "manifest.parquet"
    pd.DataFrame(rows).to_parquet(manifest, index=False)
    return manifest


def tiny_overrides(manifest, cache_dir, **train) -> list[str]:
    """``--set`` overrides for a model small enough to learn the tone corpus in seconds (tests, smoke runs)."""
    overrides = [
        f'data.manifest="{manifest}"', f'data.cache_dir="{cache_dir}"',
        "model.dim=32", "model.heads=2", "model.ff_dim=64", "model.layers=2", "model.subsampling_channels=8",
        "model.chunk_size=4", "model.left_chunks=4", "model.dropout=0.1",
        "train.threads=1", "train.lr=3e-3", "train.warmup_steps=2", "train.max_frames_per_batch=1500",
        "train.progress=false", "train.checkpoint_every=3", "train.log_every=1", "train.dev_every=0",
        'eval.by=["voice_family", "gender"]', "eval.n_boot=50", "eval.min_speakers=1",
    ]
    return overrides + [f"train.{k}={json.dumps(v)}" for k, v in train.items()]


def tiny_config(manifest, cache_dir, **train):
    from fairspeech.asr.config import load_config

    return load_config(None, tiny_overrides(manifest, cache_dir, **train))
