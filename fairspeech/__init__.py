"""fairspeech: find the speakers a speech model serves worst, fix that, and prove nobody got worse.

The public API, importable from here (each name is imported on first use, so ``import fairspeech``
stays cheap and does not import torch):

    from fairspeech import read_manifest, run_audit
    result = run_audit(read_manifest("test.tsv"), by="gender,age", seed=0)
    frame = result.tables[0]                                  # a CohortFrame

* audit: :func:`read_manifest`, :func:`run_audit`, :class:`CohortFrame`; cohort finders
  :class:`GeoClusteringTree`, :class:`GeodemographicPartition`, :class:`EmbeddingKMeans`;
* errors and configs: :class:`InputError` (bad input; the CLI exits 2), :class:`ConfigError`, and
  :func:`load` (a TOML config into its dataclass, checked: :mod:`fairspeech.config`);
* training any model (yours included): :class:`Trainer`, :class:`TrainerConfig`, :class:`Callback`,
  :class:`Regularizer`, :class:`CTCObjective`, :class:`Seq2SeqObjective`, :class:`AdversarialReweighter`;
  transformers adapters :class:`Wav2Vec2CTC`, :class:`WhisperASR`, data :class:`UtteranceData`,
  :func:`load_model` (``hf:PATH`` / ``fairspeech:PATH``);
* mitigation: :class:`DiagonalFisher`, :class:`OnlineEWC`, :func:`ewc_finetune`, :func:`focal_distillation`;
* updates: :class:`DiffTrainer`; speaker verification: :func:`train_verifier`.
"""

from __future__ import annotations

__version__ = "0.1.0"

# name -> (module, attribute there)
_LAZY = {
    "read_manifest": ("fairspeech.data.manifest", "read_manifest"),
    "run_audit": ("fairspeech.audit", "run_audit"),
    "CohortFrame": ("fairspeech.metrics.cohort_frame", "CohortFrame"),
    "GeoClusteringTree": ("fairspeech.cohorts.geo_tree", "GeoClusteringTree"),
    "GeodemographicPartition": ("fairspeech.cohorts.geodemographic", "GeodemographicPartition"),
    "EmbeddingKMeans": ("fairspeech.cohorts.embedding", "EmbeddingKMeans"),
    "InputError": ("fairspeech.errors", "InputError"),
    "ConfigError": ("fairspeech.errors", "ConfigError"),
    "load": ("fairspeech.config", "load"),
    "DiagonalFisher": ("fairspeech.mitigation.ewc", "DiagonalFisher"),
    "OnlineEWC": ("fairspeech.mitigation.ewc", "OnlineEWC"),
    "focal_distillation": ("fairspeech.mitigation.distill", "focal_distillation"),
    "DiffTrainer": ("fairspeech.updates.train", "DiffTrainer"),
    "ewc_finetune": ("fairspeech.mitigation.adapt", "ewc_finetune"),
    "Trainer": ("fairspeech.training.trainer", "Trainer"),
    "TrainerConfig": ("fairspeech.training.trainer", "TrainerConfig"),
    "Callback": ("fairspeech.training.callbacks", "Callback"),
    "Regularizer": ("fairspeech.training.callbacks", "Regularizer"),
    "CTCObjective": ("fairspeech.training.protocol", "CTCObjective"),
    "Seq2SeqObjective": ("fairspeech.training.protocol", "Seq2SeqObjective"),
    "AdversarialReweighter": ("fairspeech.training.reweighting", "AdversarialReweighter"),
    "Wav2Vec2CTC": ("fairspeech.asr.hf", "Wav2Vec2CTC"),
    "WhisperASR": ("fairspeech.asr.hf", "WhisperASR"),
    "UtteranceData": ("fairspeech.asr.data", "UtteranceData"),
    "load_model": ("fairspeech.asr.user_model", "load_model"),
    "train_verifier": ("fairspeech.verification.train", "train"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'fairspeech' has no attribute {name!r}")
    import importlib

    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
