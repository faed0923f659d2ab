"""A trained fairspeech model as a recognizer of wav files, with the interface of the pocketsphinx
backend (``transcribe(path)``, ``transcribe_many(paths, workers, progress)``), so an audit can run it
on a manifest's audio.

    recognizer = TrainedRecognizer("runs/asr_baseline/model.safetensors")
    recognizer.transcribe("data/demo_audio/demo-s0001/demo-s0001-u00.wav")
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from fairspeech.asr.data import read_wav
from fairspeech.asr.decode import decode
from fairspeech.asr.evaluate import load_trained
from fairspeech.asr.features import LogMel


class TrainedRecognizer:
    def __init__(self, model_path: str | Path, method: str = "greedy", beam: int = 8, threads: int = 1):
        self.model, self.tokenizer, _ = load_trained(model_path)
        self.logmel = LogMel()  # the front end every model of the stack is trained on
        self.method, self.beam, self.threads = method, beam, threads

    @torch.inference_mode()
    def transcribe(self, path: str | Path) -> str:
        torch.set_num_threads(self.threads)
        features = self.logmel(read_wav(path, self.logmel.sample_rate)).unsqueeze(0)
        out = self.model(features, torch.tensor([features.shape[1]]))
        return self.tokenizer.decode(decode(out.log_probs, out.lengths, self.method, self.beam)[0])

    def transcribe_many(self, paths: Sequence[str | Path], workers: int = 1, progress: bool = True) -> list[str]:
        """One utterance at a time in this process (``workers`` is accepted for interface parity)."""
        return [self.transcribe(p) for p in tqdm(paths, desc="transcribing", unit="utt", disable=not progress)]
