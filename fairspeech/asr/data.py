"""Data for training and evaluation: wav reading, a per-split log-mel cache, length-bucketed batches.

Log-mels are computed once per utterance and cached per split as one safetensors file (all frames
concatenated in float16, plus offsets) whose name carries a hash of the front-end settings, with a
JSON sidecar naming the utterances and settings: a cache of other utterances is rebuilt, one of other
settings refused. Epochs then cost only the
model's own compute, which matters on two shared CPU cores.
"""

from __future__ import annotations

import hashlib
import json
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from fairspeech.asr.features import LogMel
from fairspeech.data import schema
from fairspeech.utils import io


def read_wav(path: str | Path, sample_rate: int = 16000) -> torch.Tensor:
    """A mono 16-bit PCM wav as float32 samples in [-1, 1); another rate or format is an error."""
    with wave.open(str(path), "rb") as handle:
        if handle.getframerate() != sample_rate or handle.getnchannels() != 1 or handle.getsampwidth() != 2:
            raise ValueError(
                f"{path}: need mono 16-bit PCM at {sample_rate} Hz, got {handle.getnchannels()} channel(s), "
                f"{8 * handle.getsampwidth()}-bit, {handle.getframerate()} Hz"
            )
        data = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    return torch.from_numpy(data.astype(np.float32) / 32768.0)


def logmel_settings(logmel: LogMel) -> dict:
    return {k: getattr(logmel, k) for k in ("version", "sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "floor")} | {
        "filters_sha": hashlib.sha1(logmel.filters.numpy().tobytes()).hexdigest()[:12]
    }


@dataclass
class FeatureCache:
    """All log-mel frames of one split: ``features[offsets[i]:offsets[i+1]]`` is utterance ``utt_ids[i]``."""

    utt_ids: list[str]
    features: torch.Tensor  # (total frames, n_mels) float16
    offsets: torch.Tensor  # (n + 1,) int64

    def __len__(self) -> int:
        return len(self.utt_ids)

    def lengths(self) -> np.ndarray:
        return (self.offsets[1:] - self.offsets[:-1]).numpy()

    def get(self, index: int) -> torch.Tensor:
        return self.features[self.offsets[index] : self.offsets[index + 1]].float()

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-dimension statistics over every frame (for :class:`GlobalCMVN`)."""
        x = self.features.double()
        return x.mean(0).float(), x.std(0).float()


def build_feature_cache(frame: pd.DataFrame, path: str | Path, logmel: LogMel | None = None, progress: bool = True) -> FeatureCache:
    """Load ``path`` if it holds exactly these utterances with these front-end settings, else compute and save it."""
    logmel = logmel or LogMel()
    path = Path(path)
    sidecar = path.with_suffix(".json")
    utt_ids = frame[schema.UTT_ID].astype(str).tolist()
    meta = {"utt_ids": utt_ids, "logmel": logmel_settings(logmel)}
    if path.exists() and sidecar.exists():
        found = json.loads(sidecar.read_text())
        if found.get("logmel") != meta["logmel"]:
            # Paths are keyed by the settings (load_splits), so this is a cache written by other code.
            raise ValueError(f"{path}: cached log-mels were made with other front-end settings "
                             f"({found.get('logmel')} vs {meta['logmel']}); remove it or use another cache_dir")
        if found == meta:
            tensors = load_file(str(path))
            return FeatureCache(utt_ids, tensors["features"], tensors["offsets"])
    chunks, offsets = [], [0]
    with torch.inference_mode():
        for audio_path in tqdm(frame[schema.AUDIO_PATH].tolist(), desc=f"log-mel {path.stem}", disable=not progress, mininterval=2.0):
            feats = logmel(read_wav(audio_path, logmel.sample_rate)).to(torch.float16)
            chunks.append(feats)
            offsets.append(offsets[-1] + feats.shape[0])
    cache = FeatureCache(utt_ids, torch.cat(chunks) if chunks else torch.zeros(0, logmel.n_mels, dtype=torch.float16), torch.tensor(offsets, dtype=torch.int64))
    with io.atomic_path(path) as tmp:
        save_file({"features": cache.features.contiguous(), "offsets": cache.offsets}, str(tmp))
    io.write_json(sidecar, meta)  # written last: a cache without its sidecar is never trusted
    return cache


@dataclass
class Batch:
    features: torch.Tensor  # (batch, frames, n_mels)
    lengths: torch.Tensor  # (batch,)
    targets: torch.Tensor  # (sum of target lengths,) concatenated token ids
    target_lengths: torch.Tensor  # (batch,)
    indices: list[int]  # positions in the split


def length_buckets(lengths: np.ndarray, max_frames: int, shuffle_seed: Sequence[int] | None = None, indices: Sequence[int] | None = None,
                   bucketed: bool = True) -> list[list[int]]:
    """Index lists of similar-length utterances, each padding to at most ``max_frames`` frames (or samples).

    Sorted by length (shortest first) unless ``shuffle_seed`` is given: then lengths are jittered
    within buckets and the batch order shuffled, deterministically for that seed (e.g. ``[seed, epoch]``).
    ``bucketed=False`` batches in random order instead (more padding: the throughput benchmark's control).
    """
    lengths = np.asarray(lengths)
    indices = np.arange(len(lengths)) if indices is None else np.asarray(indices)
    jittered = lengths[indices].astype(float)
    rng = np.random.default_rng(list(shuffle_seed)) if shuffle_seed is not None else None
    if rng is not None:
        jittered = jittered * rng.uniform(0.9, 1.1, len(jittered))  # different neighbours each epoch
    if bucketed:
        order = indices[np.argsort(jittered, kind="stable")]
    else:
        order = indices[(rng or np.random.default_rng(0)).permutation(len(indices))]
    out, current, longest = [], [], 0
    for i in order:
        n = int(lengths[i])
        if current and max(longest, n) * (len(current) + 1) > max_frames:
            out.append(current)
            current, longest = [], 0
        current.append(int(i))
        longest = max(longest, n)
    if current:
        out.append(current)
    if rng is not None:
        out = [out[j] for j in rng.permutation(len(out))]
    return out


def collate(inputs: Sequence[torch.Tensor], targets: Sequence[torch.Tensor] | None, indices: Sequence[int]) -> "Batch":
    """Pad time-first ``inputs`` into a batch; concatenate the ``targets`` (token ids) as CTC wants them."""
    lengths = torch.tensor([x.shape[0] for x in inputs], dtype=torch.int64)
    padded = torch.nn.utils.rnn.pad_sequence(list(inputs), batch_first=True)
    if targets is not None:
        target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.int64)
        flat = torch.cat(list(targets)) if len(targets) else torch.zeros(0, dtype=torch.int64)
    else:
        target_lengths, flat = torch.zeros(len(indices), dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
    return Batch(padded, lengths, flat, target_lengths, list(indices))


class UtteranceData:
    """Utterances held in memory as time-first tensors (raw waveforms for wav2vec 2.0, log-mels for
    Whisper) with their token ids: the dataset of a user's own model, batched like :class:`SplitData`.

    ``inputs``: one tensor per utterance, time first; ``targets``: token ids per utterance (or None).
    """

    def __init__(self, inputs: Sequence[torch.Tensor], targets: Sequence[Sequence[int]] | None = None):
        self.inputs = list(inputs)
        self.targets = None if targets is None else [torch.as_tensor(t, dtype=torch.int64) for t in targets]
        if self.targets is not None and len(self.targets) != len(self.inputs):
            raise ValueError(f"{len(self.inputs)} inputs but {len(self.targets)} targets")
        self.frames = np.array([x.shape[0] for x in self.inputs], dtype=np.int64)

    @classmethod
    def from_manifest(cls, frame: pd.DataFrame, encode=None, transform=None, sample_rate: int = 16000) -> "UtteranceData":
        """Waveforms of ``frame``'s ``audio_path`` rows (resolved paths; see :func:`resolve_audio_paths`),
        each passed through ``transform`` when given (e.g. a feature extractor), and ``encode(reference)``
        token ids when given. An unreadable file is an error naming the row."""
        inputs = []
        for position, path in enumerate(frame[schema.AUDIO_PATH]):
            try:
                wav = read_wav(path, sample_rate)
            except (OSError, EOFError, ValueError, wave.Error) as error:
                raise ValueError(f"row {position} ({frame[schema.UTT_ID].iloc[position]}), field {schema.AUDIO_PATH}: {error}") from error
            inputs.append(transform(wav) if transform is not None else wav)
        targets = [encode(text) for text in frame[schema.REFERENCE]] if encode is not None else None
        return cls(inputs, targets)

    def __len__(self) -> int:
        return len(self.inputs)

    def batch(self, indices: Sequence[int]) -> "Batch":
        return collate([self.inputs[i] for i in indices], None if self.targets is None else [self.targets[i] for i in indices], indices)

    def batches(self, max_frames: int, shuffle_seed: Sequence[int] | None = None, indices: Sequence[int] | None = None) -> list[list[int]]:
        return length_buckets(self.frames, max_frames, shuffle_seed, indices)


class SplitData:
    """One split's features and (optionally) encoded references, batched by length."""

    def __init__(self, cache: FeatureCache, references: Sequence[str] | None = None, tokenizer=None):
        self.cache = cache
        self.frames = cache.lengths()
        self.targets = [torch.tensor(tokenizer.encode(t), dtype=torch.int64) for t in references] if references is not None else None

    def __len__(self) -> int:
        return len(self.cache)

    def batch(self, indices: Sequence[int]) -> Batch:
        return collate([self.cache.get(i) for i in indices], None if self.targets is None else [self.targets[i] for i in indices], indices)

    def batches(self, max_frames: int, shuffle_seed: Sequence[int] | None = None, indices: Sequence[int] | None = None,
                bucketed: bool = True) -> list[list[int]]:
        """Index lists of similar-length utterances (see :func:`length_buckets`)."""
        return length_buckets(self.frames, max_frames, shuffle_seed, indices, bucketed)

    def iterate(self, batches: list[list[int]], start: int = 0) -> Iterator[Batch]:
        for indices in batches[start:]:
            yield self.batch(indices)


def resolve_audio_paths(frame: pd.DataFrame, manifest_path: str | Path, audio_dir: str | Path | None = None) -> pd.DataFrame:
    """Relative audio paths are taken under ``audio_dir`` when given, else the working directory, else the manifest's folder."""
    base = Path(manifest_path).resolve().parent

    def resolve(value: str) -> str:
        path = Path(value)
        if path.is_absolute():
            return str(path)
        if audio_dir is not None:
            return str(Path(audio_dir) / path)
        return str(path if path.exists() else base / path)

    frame = frame.copy()
    frame[schema.AUDIO_PATH] = frame[schema.AUDIO_PATH].astype(str).map(resolve)
    return frame


def load_splits(manifest_path: str | Path, splits: Sequence[str], cache_dir: str | Path, logmel: LogMel | None = None,
                max_utterances: dict[str, int | None] | None = None, progress: bool = True, audio_dir: str | Path | None = None) -> dict[str, tuple[pd.DataFrame, FeatureCache]]:
    """Each split's manifest rows (all metadata kept) and its log-mel cache, built on first use."""
    from fairspeech.data.manifest import read_manifest

    logmel = logmel or LogMel()
    manifest = read_manifest(manifest_path, require_hypothesis=False)
    frame = manifest.public_frame()
    if schema.SPLIT not in frame.columns or schema.AUDIO_PATH not in frame.columns:
        raise KeyError(f"{manifest_path} needs '{schema.SPLIT}' and '{schema.AUDIO_PATH}' columns to train or evaluate an ASR model")
    frame = resolve_audio_paths(frame, manifest_path, audio_dir)
    # Keyed by the front-end settings: features of other settings live beside, never mixed in.
    key = hashlib.sha1(json.dumps(logmel_settings(logmel), sort_keys=True).encode()).hexdigest()[:10]
    out = {}
    for split in splits:
        part = frame[frame[schema.SPLIT] == split].reset_index(drop=True)
        limit = (max_utterances or {}).get(split)
        if limit:
            part = part.iloc[:limit].reset_index(drop=True)
        if part.empty:
            raise ValueError(f"split {split!r} of {manifest_path} is empty")
        suffix = f"-first{limit}" if limit else ""
        out[split] = (part, build_feature_cache(part, Path(cache_dir) / f"{split}{suffix}-logmel{key}.safetensors", logmel, progress))
    return out
