"""Fill a manifest's hypotheses by running an ASR on its audio ("audio plus an ASR to run").

Every audio file is checked with the recognizer's own reader before decoding starts, so a missing or
unreadable file is reported (or, with ``skip_bad_rows``, excluded and counted) naming the manifest
file, line and field, instead of failing halfway through a long decode.
"""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from fairspeech.data import schema
from fairspeech.data.manifest import Manifest
from fairspeech.data.readers import FILE_COL, LINE_COL, ManifestError
from fairspeech.errors import InputError

RECOGNIZERS = ("pocketsphinx", "hf:PATH", "fairspeech:MODEL.safetensors")


def make_recognizer(name: str):
    """``pocketsphinx``; ``hf:PATH`` (a transformers *ForCTC or Whisper folder, local files only);
    ``fairspeech:PATH`` (a model.safetensors trained by :mod:`fairspeech.asr.train`)."""
    if name == "pocketsphinx":
        from fairspeech.asr.pocketsphinx_backend import PocketSphinxRecognizer

        return PocketSphinxRecognizer()
    kind, _, path = name.partition(":")
    if kind == "hf" and path:
        import torch

        from fairspeech.asr.user_model import load_model

        return load_model(name, "cuda" if torch.cuda.is_available() else None)  # its transcribe_many decodes wav files
    if kind == "fairspeech" and path:
        from fairspeech.asr.recognizer import TrainedRecognizer

        return TrainedRecognizer(path)
    raise InputError(f"--asr {name!r}: expected one of {', '.join(RECOGNIZERS)}")


def resolve_audio(manifest: Manifest, audio_root: str | Path | None = None) -> list[Path]:
    """Absolute audio paths: relative ones are taken from ``audio_root``, else the manifest's folder."""
    base = Path(audio_root) if audio_root else Path(manifest.path).parent
    return [p if p.is_absolute() else base / p for p in map(Path, manifest.frame[schema.AUDIO_PATH].astype(str))]


def transcribe_manifest(
    manifest: Manifest,
    asr: str = "pocketsphinx",
    *,
    audio_root: str | Path | None = None,
    workers: int = 1,
    skip_bad_rows: bool = False,
    progress: bool = True,
) -> Manifest:
    """The manifest with a ``hypothesis`` per utterance from ``asr``; excluded rows are counted."""
    from fairspeech.asr.pocketsphinx_backend import AudioReadError, read_pcm16_mono

    frame = manifest.frame
    if schema.AUDIO_PATH not in frame.columns:
        raise ManifestError(f"--asr needs an {schema.AUDIO_PATH!r} column", manifest.path, None, schema.AUDIO_PATH)
    recognizer = make_recognizer(asr)
    paths = resolve_audio(manifest, audio_root)
    readable = []
    for i, path in enumerate(tqdm(paths, desc="checking audio", unit="file", disable=not progress)):
        try:
            read_pcm16_mono(path)
            readable.append(True)
        except AudioReadError as error:
            if not skip_bad_rows:
                row = frame.iloc[i]
                raise ManifestError(f"unreadable audio: {error}", row[FILE_COL], int(row[LINE_COL]), schema.AUDIO_PATH) from None
            readable.append(False)
    exclusions = dict(manifest.exclusions)
    if not all(readable):
        exclusions["unreadable audio"] = readable.count(False)
    keep = frame[readable].reset_index(drop=True)
    kept_paths = [p for p, ok in zip(paths, readable) if ok]
    keep[schema.HYPOTHESIS] = recognizer.transcribe_many(kept_paths, workers=workers, progress=progress)
    return Manifest(frame=keep, path=manifest.path, format=manifest.format, exclusions=exclusions)
