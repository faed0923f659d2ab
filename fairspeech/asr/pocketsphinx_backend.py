"""PocketSphinx as "an ASR to run": audio file in, lowercase words out.

Uses the en-us acoustic model, dictionary and language model inside the ``pocketsphinx`` wheel, so it
runs offline. Each utterance gets a fresh ``Decoder``: a decoder adapts its cepstral mean from one
utterance to the next, so reusing one would make a hypothesis depend on what was decoded before it
(measured: the same audio scored 75.2% vs 75.9% WER in a different order).

Loading the model costs about 0.5 s of CPU, a third of a short utterance's decoding. Where the OS can
fork, the recognizer loads one decoder and never uses it; each utterance is decoded in a forked copy
of it, which is exactly a fresh decoder (same memory, no history) without the load.
"""

from __future__ import annotations

import multiprocessing
import os
import wave
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

SAMPLE_RATE = 16000
# A faster search than pocketsphinx's defaults (CMU's tuning advice: fewer active HMMs per frame,
# phone lookahead, fewer Gaussians, no second flat-lexicon pass). Measured on 16 flite/festival
# utterances: 1.8x faster, WER 45.0% vs 40.5% (clean and noisy mixed). The demo corpus uses it.
FAST_SEARCH = {"maxhmmpf": 3000, "pl_window": 10, "topn": 2, "fwdflat": False}


class AudioReadError(ValueError):
    """An audio file could not be read or converted; the message names the file."""


class PocketSphinxRecognizer:
    """``PocketSphinxRecognizer().transcribe("utt.wav") -> "set a timer for ten minutes"``.

    ``decoder_options`` are passed to ``pocketsphinx.Decoder`` (e.g. ``hmm=``, ``lm=``, ``dict=`` for
    another model, or ``**FAST_SEARCH``); the default is the bundled en-us model with its default
    search settings. ``fork_fresh_decoders`` (default: where ``os.fork`` exists) decodes each file in a
    forked copy of one loaded, never-used decoder instead of loading a new one; results are identical.
    """

    def __init__(self, fork_fresh_decoders: bool | None = None, **decoder_options):
        try:
            import pocketsphinx  # noqa: F401
        except ImportError as exc:
            raise RuntimeError(
                "the pocketsphinx recognizer needs the 'pocketsphinx' package: pip install 'fairspeech[speech]'"
            ) from exc
        self.decoder_options = {"loglevel": "FATAL", **decoder_options}
        if fork_fresh_decoders is None:
            fork_fresh_decoders = hasattr(os, "fork")
        self._pristine = self._new_decoder() if fork_fresh_decoders else None

    def _new_decoder(self):
        from pocketsphinx import Decoder

        return Decoder(**self.decoder_options)

    def transcribe(self, path: str | Path) -> str:
        """Lowercase words recognized in one audio file ('' when nothing was recognized)."""
        pcm = read_pcm16_mono(path)
        if self._pristine is None:
            return _decode(self._new_decoder(), pcm)
        return _decode_in_forked_copy(self._pristine, pcm, path)

    def transcribe_many(self, paths: Sequence[str | Path], workers: int = 1, progress: bool = False) -> list[str]:
        """Hypotheses for ``paths`` in order, decoded over ``workers`` processes."""
        paths = [str(p) for p in paths]
        if workers <= 1:
            return [self.transcribe(p) for p in _progress(paths, progress, len(paths))]
        with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker,
                                                       initargs=(self.decoder_options,)) as pool:
            results = pool.imap(_transcribe_in_worker, paths, chunksize=4)
            return list(_progress(results, progress, len(paths)))


def _decode(decoder, pcm: np.ndarray) -> str:
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    hypothesis = decoder.hyp()
    return hypothesis.hypstr.strip().lower() if hypothesis is not None else ""


def _decode_in_forked_copy(pristine, pcm: np.ndarray, path) -> str:
    """Decode in a forked child, so the parent's loaded decoder stays unused (fresh) for the next one."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: decode, send the text, exit without running any parent cleanup
        status = 1
        try:
            os.close(read_end)
            payload = _decode(pristine, pcm).encode("utf-8")
            while payload:
                payload = payload[os.write(write_end, payload):]
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        text = pipe.read().decode("utf-8")
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RuntimeError(f"pocketsphinx failed decoding {path} (forked decoder exit status {status})")
    return text


def read_pcm16_mono(path: str | Path) -> np.ndarray:
    """16 kHz mono int16 samples; other rates, channel counts or formats are converted with librosa."""
    path = Path(path)
    if not path.exists():
        raise AudioReadError(f"audio file not found: {path}")
    try:
        with wave.open(str(path), "rb") as w:
            if (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (SAMPLE_RATE, 1, 2):
                return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    except (wave.Error, EOFError):
        pass  # not a PCM wav: let librosa try
    return _convert_with_librosa(path)


def _convert_with_librosa(path: Path) -> np.ndarray:
    try:
        import librosa
    except ImportError as exc:
        raise AudioReadError(
            f"cannot read {path}: only 16 kHz mono 16-bit wav is read without librosa "
            "(pip install 'fairspeech[speech]')"
        ) from exc
    try:
        audio, _ = librosa.load(str(path), sr=SAMPLE_RATE, mono=True)
    except Exception as exc:  # librosa raises many types for unreadable files
        raise AudioReadError(f"cannot read audio file {path}: {exc}") from exc
    return np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)


_worker_recognizer: PocketSphinxRecognizer | None = None


def _init_worker(decoder_options: dict) -> None:
    global _worker_recognizer
    _worker_recognizer = PocketSphinxRecognizer(**decoder_options)


def _transcribe_in_worker(path: str) -> str:
    return _worker_recognizer.transcribe(path)


def _progress(items: Iterable, enabled: bool, total: int) -> Iterable:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc="pocketsphinx", unit="utt")
