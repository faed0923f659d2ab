"""Recipe configuration: one TOML file per experiment, sections mapped onto dataclasses.

    [data]  [model]  [specaugment]  [train]  [eval]  [amortized] or [gating]

``load_config(path, overrides=["train.epochs=3", ...])`` applies ``--set`` style overrides (values
parsed as TOML). A file may start from another with ``base = "other.toml"`` (relative to itself):
the other file's tables are read first and this file's keys replace theirs, so a variant recipe
states only what differs from the baseline. Reading, overrides and checking (unknown keys, value
types) are :mod:`fairspeech.config`'s, so a bad recipe fails as it is loaded. ``build_model`` turns ``[model].kind`` into the model: ``ctc`` (baseline),
``amortized`` (branched encoder with an arbitrator) or ``gated`` (per-block gating).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from fairspeech.asr.ctc_model import SpecAugmentConfig
from fairspeech.asr.encoder import EncoderConfig
import fairspeech.config as loader
from fairspeech.config import from_dict, load
from fairspeech.errors import ConfigError


@dataclass
class DataConfig:
    manifest: str = "data_manifests/demo/manifest.parquet"
    audio_dir: str | None = None  # relative audio paths are under this folder (else the working dir or the manifest's)
    cache_dir: str = "exp/features"
    train_split: str = "train"
    dev_split: str = "dev"
    test_split: str = "test"
    max_train_utterances: int | None = None  # first N of the train split (tests, quick runs)
    tokenizer: str = "char"  # or "bpe": subwords learned from the training references
    bpe_merges: int = 200


@dataclass
class TrainConfig:
    seed: int = 0
    threads: int = 2
    epochs: int = 30
    max_minutes: float | None = None  # safety net: stop (with a checkpoint) once training has taken this long
    lr: float = 1e-3
    min_lr_ratio: float = 0.05  # cosine decay ends at lr * min_lr_ratio
    warmup_steps: int = 300
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    max_frames_per_batch: int = 12000  # padded 10 ms frames per batch
    checkpoint_every: int = 100  # optimizer steps
    log_every: int = 10  # steps between records in the training log
    keep_checkpoints: int = 2
    init_from: str | None = None  # a model.safetensors to start from (fine-tuning a variant from the baseline)
    teacher: str | None = None  # a model.safetensors whose per-frame posteriors the model is pulled towards (KL)
    teacher_weight: float = 1.0  # weight of that KL beside the CTC loss
    dev_every: int = 1  # epochs between dev WERs (and after the last epoch); 0: never
    progress: bool = True


@dataclass
class EvalConfig:
    splits: list[str] = field(default_factory=lambda: ["dev", "test"])
    decode: str = "greedy"
    beam: int = 8
    by: list[str] = field(default_factory=lambda: ["voice_family", "gender", "age", "accent"])
    n_boot: int = 1000
    min_speakers: int = 5
    max_frames_per_batch: int = 30000
    profile: str | None = None  # accelerator profile: also measure FLOPs per frame and latency per utterance on it


@dataclass
class RecipeConfig:
    name: str = "asr"
    kind: str = "ctc"
    data: DataConfig = field(default_factory=DataConfig)
    model: EncoderConfig = field(default_factory=EncoderConfig)
    specaugment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    variant: dict = field(default_factory=dict)  # [amortized] / [gating] settings, read by the variant's own config class

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_SECTIONS = {"data": DataConfig, "model": EncoderConfig, "specaugment": SpecAugmentConfig, "train": TrainConfig, "eval": EvalConfig}
VARIANT_SECTIONS = {"amortized": "amortized", "gated": "gating"}

# The loader is fairspeech.config's; these names stay for their callers.
read_tree = loader.read_toml
parse_override = loader.parse_override
_set = loader.set_dotted


def _variant_class(kind: str):
    if kind == "amortized":
        from fairspeech.asr.amortized import AmortizedConfig

        return AmortizedConfig
    from fairspeech.asr.block_gating import GatingConfig

    return GatingConfig


def config_from_dict(tree: dict, source: str = "config") -> RecipeConfig:
    """The recipe from a file's tables: ``[model] kind`` picks the model, whose variant table
    (``[amortized]`` or ``[gating]``) is checked against its config class and kept as a dict."""
    tree = dict(tree)
    unknown = sorted(set(tree) - {"name", *_SECTIONS, *VARIANT_SECTIONS.values()})
    if unknown:
        raise ConfigError(f"unknown config sections {unknown}; known: {sorted(['name', *_SECTIONS, *VARIANT_SECTIONS.values()])}", source, key=unknown[0])
    model = tree.get("model", {})
    kind = model.get("kind", "ctc") if isinstance(model, dict) else "ctc"
    if kind not in ("ctc", *VARIANT_SECTIONS):
        raise ConfigError(f"[model] kind: must be one of ctc, amortized, gated; got {kind!r}", source, "model", "kind")
    if isinstance(model, dict):
        tree["model"] = {k: v for k, v in model.items() if k != "kind"}
    variants = {section: tree.pop(section, {}) for section in VARIANT_SECTIONS.values()}  # another kind's table is ignored
    variant = variants[VARIANT_SECTIONS[kind]] if kind in VARIANT_SECTIONS else {}
    if kind in VARIANT_SECTIONS:
        from_dict(_variant_class(kind), variant, source, section=VARIANT_SECTIONS[kind])  # checked here, built by build_model
    return from_dict(RecipeConfig, {**tree, "kind": kind, "variant": variant}, source)


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RecipeConfig:
    return load(config_from_dict, path, overrides)


def dict_to_config(data: dict, source: str = "stored config") -> RecipeConfig:
    """Inverse of :meth:`RecipeConfig.to_dict` (the JSON stored beside a trained model)."""
    tree = {k: v for k, v in data.items() if k not in ("kind", "variant")}
    tree["model"] = dict(data["model"], kind=data["kind"])
    if data["kind"] in VARIANT_SECTIONS:
        tree[VARIANT_SECTIONS[data["kind"]]] = data["variant"]
    return config_from_dict(tree, source)


def build_model(config: RecipeConfig, vocab_size: int):
    if config.kind == "ctc":
        from fairspeech.asr.ctc_model import CTCModel

        return CTCModel(config.model, vocab_size, config.specaugment)
    if config.kind == "amortized":
        from fairspeech.asr.amortized import AmortizedConfig, AmortizedCTCModel

        return AmortizedCTCModel(config.model, vocab_size, AmortizedConfig(**config.variant), config.specaugment)
    from fairspeech.asr.block_gating import GatedCTCModel, GatingConfig

    return GatedCTCModel(config.model, vocab_size, GatingConfig(**config.variant), config.specaugment)
