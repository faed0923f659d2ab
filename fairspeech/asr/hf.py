"""Hugging Face transformers recognizers under fairspeech's model protocol (the optional ``hf`` extra).

    model = Wav2Vec2CTC.from_pretrained("path/or/hub-name")        # any *ForCTC: wav2vec 2.0, HuBERT, WavLM
    model = WhisperASR.from_pretrained("openai/whisper-small")    # encoder-decoder: Seq2SeqObjective

With the adapter, the training layer's objectives, :class:`fairspeech.mitigation.ewc.DiagonalFisher`,
EWC, focal distillation (CTC), diff updates and the adversarial reweighter apply to the user's model
unchanged. ``from_pretrained`` reads local files only unless ``local_files_only=False`` is passed:
nothing is downloaded behind the user's back.

* :class:`Wav2Vec2CTC`: ``forward(waveforms (batch, samples), lengths (samples))`` -> :class:`ASROutput`
  with log-probabilities, output frame counts and mean-pooled encoder states; the blank is the
  model's ``pad_token_id`` (transformers' CTC convention). Waveforms are zero-mean unit-variance
  normalized per utterance over their valid samples when the model's feature extractor does so.
* :class:`WhisperASR`: ``forward(log_mels (batch, frames, n_mels), lengths, targets, target_lengths)``
  -> :class:`Seq2SeqOutput` (teacher-forced token NLL per utterance); ``log_mels`` are what
  ``WhisperFeatureExtractor`` makes, time first (see :meth:`WhisperASR.features`), padded to the
  encoder's fixed input length here.

``fairspeech audit --asr hf:PATH`` decodes with these through :mod:`fairspeech.asr.user_model`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from fairspeech.asr.ctc_model import pooled
from fairspeech.training.protocol import ASROutput, Seq2SeqOutput


def _transformers():
    try:
        import transformers
    except ImportError as error:  # the optional extra
        raise ImportError("Hugging Face models need transformers: pip install 'fairspeech[hf]'") from error
    return transformers


def _pretrained(model_class: str, processor_class: str, name_or_path: str, local_files_only: bool, kwargs: dict):
    """(model, processor or None) from a transformers folder or hub name; a checkpoint without tokenizer
    files gets no processor (token ids only)."""
    tf = _transformers()
    model = getattr(tf, model_class).from_pretrained(name_or_path, local_files_only=local_files_only, **kwargs)
    try:
        processor = getattr(tf, processor_class).from_pretrained(name_or_path, local_files_only=local_files_only)
    except (OSError, ValueError):
        processor = None
    return model, processor


def _valid_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


class Wav2Vec2CTC(nn.Module):
    """A transformers ``*ForCTC`` model as a CTC model of the protocol; see the module docstring.

    ``processor``: the model's ``Wav2Vec2Processor`` (tokenizer and feature extractor), used by
    :meth:`encode` / :meth:`decode`; ``normalize``: per-utterance waveform normalization (default:
    the processor's ``do_normalize``, else True).
    """

    def __init__(self, model: nn.Module, processor=None, normalize: bool | None = None):
        super().__init__()
        self.model = model
        self.processor = processor
        extractor = getattr(processor, "feature_extractor", None)
        self.normalize = normalize if normalize is not None else bool(getattr(extractor, "do_normalize", True))

    @classmethod
    def from_pretrained(cls, name_or_path: str, local_files_only: bool = True, **kwargs) -> "Wav2Vec2CTC":
        return cls(*_pretrained("AutoModelForCTC", "AutoProcessor", name_or_path, local_files_only, kwargs))

    @property
    def blank_id(self) -> int:
        return int(self.model.config.pad_token_id)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> ASROutput:
        mask = _valid_mask(lengths, features.shape[1])
        if self.normalize:
            valid = mask.to(features.dtype)
            count = valid.sum(1, keepdim=True).clamp(min=1)
            mean = (features * valid).sum(1, keepdim=True) / count
            var = (((features - mean) * valid) ** 2).sum(1, keepdim=True) / count
            features = (features - mean) / torch.sqrt(var + 1e-7) * valid
        base = getattr(self.model, self.model.base_model_prefix)
        hidden = base(features, attention_mask=mask.long())[0]
        logits = self.model.lm_head(self.model.dropout(hidden))
        frames = self.model._get_feat_extract_output_lengths(lengths).long().clamp(max=hidden.shape[1])
        return ASROutput(torch.log_softmax(logits.float(), dim=-1), frames, embeddings=pooled(hidden, frames))

    def encode(self, text: str) -> list[int]:
        return list(self.processor.tokenizer(text).input_ids)


class WhisperASR(nn.Module):
    """``WhisperForConditionalGeneration`` under the encoder-decoder protocol; see the module docstring.

    Targets are the reference's token ids as the Whisper tokenizer writes them (its task prefix
    included); a leading ``decoder_start_token_id`` is dropped, as transformers' own collators do,
    since teacher forcing prepends it. The end-of-text token is appended to every reference.
    """

    def __init__(self, model: nn.Module, processor=None):
        super().__init__()
        self.model = model
        self.processor = processor

    @classmethod
    def from_pretrained(cls, name_or_path: str, local_files_only: bool = True, **kwargs) -> "WhisperASR":
        return cls(*_pretrained("WhisperForConditionalGeneration", "WhisperProcessor", name_or_path, local_files_only, kwargs))

    @property
    def input_frames(self) -> int:
        return 2 * int(self.model.config.max_source_positions)  # the encoder's two stride-2 convolutions

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """Log-mels of one 16 kHz waveform, (frames, n_mels), by the processor's feature extractor."""
        values = self.processor.feature_extractor(waveform.numpy(), sampling_rate=16000, return_tensors="pt").input_features[0]
        return values.T.contiguous()

    def encode(self, text: str) -> list[int]:
        return list(self.processor.tokenizer(text).input_ids)

    def _teacher_forcing(self, targets: torch.Tensor, target_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        config = self.model.config
        start, end, pad = config.decoder_start_token_id, config.eos_token_id, config.pad_token_id
        rows = list(torch.split(targets, target_lengths.tolist()))
        rows = [r[1:] if len(r) and int(r[0]) == start else r for r in rows]
        width = max(len(r) for r in rows) + 1
        device = targets.device
        decoder_in = torch.full((len(rows), width), pad, dtype=torch.long, device=device)
        labels = torch.full((len(rows), width), -100, dtype=torch.long, device=device)
        for k, r in enumerate(rows):
            decoder_in[k, 0] = start
            decoder_in[k, 1 : len(r) + 1] = r
            labels[k, : len(r)] = r
            labels[k, len(r)] = end
        return decoder_in, labels

    def encoder_input(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, frames, n_mels) log-mels -> (batch, n_mels, input_frames), cut or padded to the encoder's
        fixed window (the feature extractor pads with its floor, the smallest value)."""
        frames = self.input_frames
        x = features[:, :frames]
        if x.shape[1] < frames:
            x = F.pad(x, (0, 0, 0, frames - x.shape[1]), value=float(x.min()) if x.numel() else 0.0)
        return x.transpose(1, 2)

    @torch.inference_mode()
    def generate(self, features: torch.Tensor) -> list[str]:
        """Transcripts of a batch of (batch, frames, n_mels) log-mels by transformers' own ``generate``."""
        ids = self.model.generate(input_features=self.encoder_input(features))
        return [text.strip() for text in self.processor.batch_decode(ids, skip_special_tokens=True)]

    def forward(self, features: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor | None = None,
                target_lengths: torch.Tensor | None = None) -> Seq2SeqOutput:
        frames = self.input_frames
        encoded = self.model.model.encoder(self.encoder_input(features)).last_hidden_state
        embeddings = pooled(encoded, ((lengths.clamp(max=frames) + 1) // 2).clamp(min=1))
        if targets is None:
            return Seq2SeqOutput(torch.zeros(len(features), device=features.device), torch.zeros_like(lengths), embeddings=embeddings)
        decoder_in, labels = self._teacher_forcing(targets, target_lengths)
        logits = self.model(encoder_outputs=(encoded,), decoder_input_ids=decoder_in, decoder_attention_mask=(labels != -100).long()).logits
        nll = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none").sum(1)
        return Seq2SeqOutput(nll, (labels != -100).sum(1), logits, embeddings)

