"""A recognizer named on the command line, ready to train and decode: ``hf:PATH`` (a transformers
``*ForCTC`` or Whisper folder, local files only) or ``fairspeech:PATH`` (a ``model.safetensors`` of
:mod:`fairspeech.asr.train`).

    loaded = load_model("hf:models/my-wav2vec2")
    data = loaded.dataset(frame)                # UtteranceData: waveforms (or log-mels) and token ids
    hyps = loaded.transcribe(data)
    loaded.save("runs/ewc/model")               # save_pretrained, or model.safetensors + sidecar

This is what ``fairspeech finetune --model`` and ``fairspeech diff create --model`` run on; the
library underneath (:class:`fairspeech.training.Trainer`, the EWC and diff callbacks) takes any model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from fairspeech.asr.data import UtteranceData
from fairspeech.asr.decode import greedy_decode
from fairspeech.errors import InputError
from fairspeech.training.protocol import CTCObjective, Seq2SeqObjective, as_asr_output, model_device

KINDS = ("hf", "fairspeech")


@dataclass
class LoadedModel:
    spec: str
    module: torch.nn.Module  # follows the training protocol
    objective: object
    encode: Callable[[str], list[int]]
    decode: Callable[[list[int]], str]
    transform: Callable | None  # waveform -> model input (time first); None: the waveform itself
    meta: dict | None = None  # fairspeech models: the sidecar to save beside new weights

    def dataset(self, frame: pd.DataFrame, with_targets: bool = True) -> UtteranceData:
        return UtteranceData.from_manifest(frame, self.encode if with_targets else None, self.transform)

    @torch.inference_mode()
    def transcribe(self, data: UtteranceData, max_frames: int = 16000 * 120) -> list[str]:
        """Greedy hypotheses in ``data`` order (Whisper: its own ``generate``)."""
        from fairspeech.asr.hf import WhisperASR
        from fairspeech.training.protocol import move_to

        model = self.module
        was_training = model.training
        model.eval()
        device = model_device(model)
        hyps = [""] * len(data)
        for indices in data.batches(max_frames):
            batch = move_to(data.batch(indices), device)
            if isinstance(model, WhisperASR):
                texts = model.generate(batch.features)
            else:
                out = as_asr_output(model(batch.features, batch.lengths))
                texts = [self.decode(ids) for ids in greedy_decode(out.log_probs.cpu(), out.lengths.cpu(), blank=self.objective.blank_id)]
            for i, text in zip(indices, texts):
                hyps[i] = text.strip()
        model.train(was_training)
        return hyps

    def transcribe_many(self, paths, workers: int = 1, progress: bool = True) -> list[str]:
        """Hypotheses for wav files, one at a time (no padding): the recognizer interface of the pocketsphinx
        backend, which ``fairspeech audit --asr`` calls (``workers`` is accepted for parity)."""
        from tqdm.auto import tqdm

        from fairspeech.asr.data import read_wav

        hyps = []
        for path in tqdm(list(paths), desc="transcribing", unit="utt", disable=not progress):
            wav = read_wav(path)
            hyps += self.transcribe(UtteranceData([self.transform(wav) if self.transform is not None else wav]))
        return hyps

    def save(self, path: str | Path) -> Path:
        """Weights (and what decoding needs) to ``path``: a transformers folder, or ``path/model.safetensors``."""
        from fairspeech.asr.hf import Wav2Vec2CTC, WhisperASR

        path = Path(path)
        if isinstance(self.module, (Wav2Vec2CTC, WhisperASR)):
            self.module.model.save_pretrained(path)
            if self.module.processor is not None:
                self.module.processor.save_pretrained(path)
            return path
        from fairspeech.training import checkpoint as ckpt

        ckpt.save_model(path / "model.safetensors", self.module, self.meta)
        return path / "model.safetensors"


def load_model(spec: str, device: str | None = None) -> LoadedModel:
    kind, _, path = spec.partition(":")
    if kind not in KINDS or not path:
        raise InputError(f"--model {spec!r}: expected hf:PATH (a transformers folder) or fairspeech:PATH (a model.safetensors)")
    if not Path(path).exists():
        raise InputError(f"--model {spec!r}: {path} does not exist (nothing is downloaded)")
    if kind == "hf":
        from fairspeech.asr.hf import Wav2Vec2CTC, WhisperASR, _transformers

        config = _transformers().AutoConfig.from_pretrained(path, local_files_only=True)
        if config.model_type == "whisper":
            module = WhisperASR.from_pretrained(path)
            objective, transform = Seq2SeqObjective(), module.features
        else:
            module = Wav2Vec2CTC.from_pretrained(path)
            objective, transform = CTCObjective(module.blank_id), None
        if module.processor is None:
            raise InputError(f"--model {spec!r}: no tokenizer/processor files beside the model, so text cannot become ids")
        tokenizer = module.processor.tokenizer
        loaded = LoadedModel(spec, module, objective, module.encode, lambda ids: tokenizer.decode(ids), transform)
    else:
        from fairspeech.asr.evaluate import load_trained
        from fairspeech.asr.features import LogMel
        from fairspeech.training import checkpoint as ckpt

        module, tokenizer, _ = load_trained(path)
        logmel = LogMel()
        loaded = LoadedModel(spec, module, CTCObjective(tokenizer.blank_id), tokenizer.encode, tokenizer.decode,
                             lambda wav: logmel(wav), ckpt.load_weights(path)[1])
    if device is not None:
        loaded.module.to(device)
    return loaded
