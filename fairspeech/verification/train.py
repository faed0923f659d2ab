"""Training a speaker verifier, plain or with adversarial reweighting (ARW), and evaluating it on held-out speakers.

    fairspeech train-verifier --config recipes/arw_verifier/config.toml --out runs/x [--arw] [--set section.key=value]
    summary = train(load_config("recipes/arw_verifier/config.toml", ["arw.enabled=true"]), "runs/x")

Each step draws ``speakers_per_batch`` training speakers x ``utterances_per_speaker`` utterances and a
random fixed-length crop of each one's cached log-mels (tiled when shorter), all from a generator
seeded with ``(seed, step)``; the loss is AAM-softmax per sample plus a pairwise logistic loss over
every pair in the batch. With ``[arw] enabled`` the first ``pretrain_steps`` are exactly the baseline's;
after them, k-means clusters are fitted on a bank of the learner's latest (unit) embedding of each
training utterance, refitted every ``recluster_every`` steps, and an adversary turns (embedding,
cluster) into ARL weights (:class:`fairspeech.training.AdversarialReweighter`, the same callback an
ASR run can use). Training runs on :class:`fairspeech.training.Trainer`: one optimizer holds the
learner's and the adversary's parameters; the adversary's gradients are negated before the step, so
it ascends the same weighted loss the learner descends (simultaneous updates, as ARL).

Matched learning rates: the weighted losses are divided by the batch's total weight, which ARL's
normalization makes a constant (2n for samples, 4 per pair for summed pair weights, 2 per pair for the
pair adversary), so at the same ``lr`` the learner's steps have the baseline's scale.

Checkpoints (safetensors, :mod:`fairspeech.training.checkpoint`) hold the learner, the adversaries, the
embedding bank and cluster centers, the optimizer and torch's RNG: a rerun resumes exactly. Every run
also keeps the checkpoint at ``pretrain_steps`` in ``pretrain/``; an ARW run started with
``init_pretrained`` pointing at a baseline run of the same seed and settings starts from it, which
gives the weights the ARW run would have reached itself, without repeating the shared steps. Under
``torchrun`` each rank takes its share of each batch's speakers, DDP averages the learner's gradients,
the adversary's are all-reduced, and rank 0 fits the clusters and shares the centers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from fairspeech.asr.ctc_model import SpecAugmentConfig
from fairspeech.asr.data import FeatureCache, load_splits
from fairspeech.asr.train import count_parameters
from fairspeech.config import from_dict, load
from fairspeech.data import schema
from fairspeech.errors import ConfigError
from fairspeech.training import checkpoint as ckpt
from fairspeech.training.callbacks import Snapshot
from fairspeech.training.protocol import StepLoss
from fairspeech.training.reweighting import PAIR_WEIGHTS, AdversarialReweighter
from fairspeech.training.trainer import Trainer, TrainerConfig
from fairspeech.utils import distributed, io
from fairspeech.verification.extractor import ExtractorConfig, XVector
from fairspeech.verification.losses import AAMSoftmax, PairwiseLogistic


@dataclass
class DataConfig:
    manifest: str = "data_manifests/demo/manifest.parquet"
    audio_dir: str | None = "data/demo_audio"
    cache_dir: str = "runs/asr_features"  # shared with the ASR recipes: same log-mels
    train_split: str = "train"
    eval_splits: list[str] = field(default_factory=lambda: ["dev", "test"])


@dataclass
class LossConfig:
    aam_margin: float = 0.2
    aam_scale: float = 30.0
    pair_loss_weight: float = 1.0


@dataclass
class ARWConfig:
    enabled: bool = False
    pair_weight: str = "sum"  # "sum": sample adversary, pair weight = sum of sample weights; "pair": pair adversary
    pretrain_steps: int = 300
    adversary_lr: float = 1e-3
    hidden: int = 64
    n_clusters: int = 8
    recluster_every: int = 50


@dataclass
class CompatConfig:
    """Backward-compatible training (BCT, Shen et al. 2020): the new embedding also goes through the old
    model's frozen classifier, so new queries can be scored against the old model's enrolled gallery."""

    old_model: str | None = None  # an earlier run's model.safetensors (its classifier.safetensors beside it)
    weight: float = 1.0  # of the influence loss, per sample (ARW's weights apply to it too)


@dataclass
class TrainConfig:
    seed: int = 0
    threads: int = 1
    steps: int = 600
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 50
    weight_decay: float = 1e-4
    grad_clip: float = 5.0
    speakers_per_batch: int = 32
    utterances_per_speaker: int = 2
    crop_frames: int = 200  # 2 s of 10 ms frames
    specaugment: bool = True
    checkpoint_every: int = 100
    log_every: int = 10
    keep_checkpoints: int = 2
    max_minutes: float | None = None
    init_pretrained: str | None = None  # a baseline run's directory (same seed and settings): start ARW from its pretrain/ checkpoint
    progress: bool = True


@dataclass
class EvalConfig:
    groups: list[str] = field(default_factory=lambda: ["gender", "voice_family"])
    n_boot: int = 500
    alpha: float = 0.05
    p_target: float = 0.01
    max_nontarget: int | None = None  # None: every non-target pair
    trial_seed: int = 0
    score_norm: str = "none"  # or "asnorm": cohort = training speakers' mean embeddings
    asnorm_top_k: int = 50


@dataclass
class VerifierConfig:
    name: str = "verifier"
    data: DataConfig = field(default_factory=DataConfig)
    model: ExtractorConfig = field(default_factory=ExtractorConfig)
    specaugment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    arw: ARWConfig = field(default_factory=ARWConfig)
    compat: CompatConfig = field(default_factory=CompatConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def config_from_dict(tree: dict, source: str = "config") -> VerifierConfig:
    config = from_dict(VerifierConfig, tree, source)
    if config.arw.pair_weight not in PAIR_WEIGHTS:
        raise ConfigError(f"[arw] pair_weight: must be one of {PAIR_WEIGHTS}, got {config.arw.pair_weight!r}", source, "arw", "pair_weight")
    if config.eval.score_norm not in ("none", "asnorm"):
        raise ConfigError(f"[eval] score_norm: must be 'none' or 'asnorm', got {config.eval.score_norm!r}", source, "eval", "score_norm")
    if config.train.utterances_per_speaker < 2:
        raise ConfigError(f"[train] utterances_per_speaker: must be at least 2 (target pairs), got {config.train.utterances_per_speaker}",
                          source, "train", "utterances_per_speaker")
    return config


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> VerifierConfig:
    return load(config_from_dict, path, overrides)


class SpeakerLearner(nn.Module):
    """Extractor plus loss heads (the part DDP wraps): features -> embeddings, per-sample and per-pair losses."""

    def __init__(self, extractor: XVector, n_speakers: int, loss: LossConfig):
        super().__init__()
        self.extractor = extractor
        self.aam = AAMSoftmax(extractor.config.embedding_dim, n_speakers, loss.aam_margin, loss.aam_scale)
        self.pairwise = PairwiseLogistic()

    def forward(self, features: torch.Tensor, labels: torch.Tensor):
        embeddings = self.extractor(features)
        i, j, pair_loss = self.pairwise(embeddings, labels)
        return embeddings, self.aam(embeddings, labels), i, j, pair_loss


@dataclass
class SpeakerBatch:
    features: torch.Tensor  # (batch, crop_frames, n_mels)
    labels: torch.Tensor  # (batch,) speaker index
    indices: torch.Tensor  # (batch,) training-utterance rows (the reweighter's bank)


class VerifierObjective:
    """AAM-softmax per sample plus the pairwise logistic loss over every pair in the batch."""

    def __init__(self, pair_loss_weight: float = 1.0):
        self.pair_loss_weight = pair_loss_weight

    def __call__(self, learner, batch: SpeakerBatch) -> StepLoss:
        embeddings, sample_loss, i, j, pair_loss = learner(batch.features, batch.labels)
        return StepLoss(sample_loss, embeddings, embeddings, pairs=(i, j, pair_loss), pair_weight=self.pair_loss_weight, name="aam")


class CompatibleObjective(VerifierObjective):
    """:class:`VerifierObjective` plus BCT's influence loss: AAM-softmax of the new embedding through the
    old model's frozen classifier, for samples whose speaker the old model was trained on (the others get
    none: the old classifier has no class for them)."""

    def __init__(self, pair_loss_weight: float, old_head: "AAMSoftmax", old_labels: torch.Tensor, weight: float):
        super().__init__(pair_loss_weight)
        self.old_head = old_head.requires_grad_(False)
        self.old_labels = old_labels  # new speaker index -> old class, -1 where the old model has none
        self.weight = weight

    def __call__(self, learner, batch: SpeakerBatch) -> StepLoss:
        loss = super().__call__(learner, batch)
        device = loss.embeddings.device
        self.old_head.to(device)
        old = self.old_labels.to(device)[batch.labels]
        known = old >= 0
        influence = torch.zeros_like(loss.per_sample)
        if known.any():
            influence[known] = self.old_head(loss.embeddings[known], old[known])
        loss.per_sample = loss.per_sample + self.weight * influence
        loss.stats["influence"] = float(influence[known].detach().mean()) if known.any() else 0.0
        return loss


CLASSIFIER_FILE = "classifier.safetensors"


def load_classifier(model_path: str | Path) -> tuple[AAMSoftmax, list[str]]:
    """The AAM-softmax head saved beside a trained extractor, and its classes' speaker ids."""
    path = Path(model_path).parent / CLASSIFIER_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no classifier beside {model_path} (compat.old_model needs a run of fairspeech train-verifier)")
    weights, meta = ckpt.load_weights(path)
    head = AAMSoftmax(weights["weight"].shape[1], weights["weight"].shape[0], meta["margin"], meta["scale"])
    head.load_state_dict(weights)
    return head.eval(), list(meta["speakers"])


def compatible_objective(config: VerifierConfig, speaker_names: Sequence[str]) -> CompatibleObjective:
    """The influence objective toward ``config.compat.old_model``; its embedding size must be ours."""
    head, old_speakers = load_classifier(config.compat.old_model)
    if head.weight.shape[1] != config.model.embedding_dim:
        raise ConfigError(f"compat.old_model {config.compat.old_model} embeds in {head.weight.shape[1]} dimensions, "
                          f"model.embedding_dim is {config.model.embedding_dim}", "config", "compat", "old_model")
    index = {name: k for k, name in enumerate(old_speakers)}
    old_labels = torch.tensor([index.get(str(name), -1) for name in speaker_names], dtype=torch.int64)
    if not (old_labels >= 0).any():
        raise ValueError(f"compat.old_model {config.compat.old_model}: none of its {len(old_speakers)} training speakers is among ours")
    return CompatibleObjective(config.loss.pair_loss_weight, head, old_labels, config.compat.weight)


def _fingerprint(config: VerifierConfig) -> dict:
    """Settings that fix the trajectory up to ``pretrain_steps`` (what ARW and baseline must share)."""
    tree = config.to_dict()
    tree.pop("name")
    tree["arw"] = {k: v for k, v in tree["arw"].items() if k in ("pretrain_steps", "hidden", "n_clusters")}
    tree["train"] = {k: v for k, v in tree["train"].items() if k not in ("checkpoint_every", "log_every", "keep_checkpoints", "max_minutes", "init_pretrained", "progress")}
    tree["eval"] = {}
    return tree


def sample_batch(seed: int, step: int, speaker_rows: list[np.ndarray], lengths: np.ndarray, tc: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, speaker labels, crop starts) of step ``step``'s batch: a function of (seed, step) only."""
    rng = np.random.default_rng([seed, step])
    speakers = rng.choice(len(speaker_rows), size=tc.speakers_per_batch, replace=False)
    rows = np.concatenate([rng.choice(speaker_rows[s], size=tc.utterances_per_speaker, replace=False) for s in speakers])
    labels = np.repeat(speakers, tc.utterances_per_speaker)
    starts = (rng.random(len(rows)) * np.maximum(lengths[rows] - tc.crop_frames + 1, 1)).astype(np.int64)
    return rows, labels, starts


def crop(cache: FeatureCache, row: int, start: int, frames: int) -> torch.Tensor:
    """``frames`` log-mel frames from ``start``; a shorter utterance is tiled to length."""
    feats = cache.get(int(row))
    if len(feats) < frames:
        feats = feats.repeat(frames // len(feats) + 1, 1)
    return feats[start : start + frames]


def build_learner(config: VerifierConfig, n_speakers: int, train_cache: FeatureCache) -> SpeakerLearner:
    torch.manual_seed(config.train.seed)
    extractor = XVector(config.model, config.specaugment if config.train.specaugment else None)
    extractor.cmvn.set_stats(*train_cache.mean_std())
    return SpeakerLearner(extractor, n_speakers, config.loss)


def reweighter_for(config: VerifierConfig, n_train: int) -> AdversarialReweighter:
    """ARW as a training-layer callback; a baseline run carries it disabled, so both share one
    initialization, RNG stream and checkpoint layout (an ARW run can start from a baseline's pretraining)."""
    arw = config.arw
    return AdversarialReweighter(config.model.embedding_dim, n_train, arw.n_clusters, arw.hidden, arw.adversary_lr, arw.pretrain_steps,
                                 arw.recluster_every, arw.pair_weight, config.train.seed, enabled=arw.enabled)


def train(config: VerifierConfig, exp_dir: str | Path, stop_after_steps: int | None = None) -> dict:
    """Train (or resume) in ``exp_dir``; writes ``model.safetensors`` (+ .json) and returns the training summary.

    ``stop_after_steps`` ends the call after that many steps without a final checkpoint, as a kill would.
    """
    exp_dir = Path(exp_dir)
    tc, arw = config.train, config.arw
    distributed.init_from_env()
    main_rank = distributed.is_main()
    torch.set_num_threads(tc.threads)
    frame, cache = load_splits(config.data.manifest, [config.data.train_split], config.data.cache_dir, progress=tc.progress and main_rank,
                               audio_dir=config.data.audio_dir)[config.data.train_split]
    speaker_codes, speaker_names = pd.factorize(frame[schema.SPEAKER_ID].astype(str), sort=True)
    speaker_rows = [np.flatnonzero(speaker_codes == s) for s in range(len(speaker_names))]
    too_few = [speaker_names[s] for s, r in enumerate(speaker_rows) if len(r) < tc.utterances_per_speaker]
    if too_few:
        raise ValueError(f"{config.data.manifest}: train speakers {too_few[:5]} have fewer than {tc.utterances_per_speaker} utterances (train.utterances_per_speaker)")
    if len(speaker_rows) < tc.speakers_per_batch:
        raise ValueError(f"{config.data.manifest}: {len(speaker_rows)} train speakers, fewer than train.speakers_per_batch = {tc.speakers_per_batch}")
    lengths = cache.lengths()

    learner = build_learner(config, len(speaker_rows), cache)
    mine = np.asarray(distributed.shard(np.arange(tc.speakers_per_batch)))  # this rank's speakers of every batch
    mine = (mine[:, None] * tc.utterances_per_speaker + np.arange(tc.utterances_per_speaker)).ravel()

    def make_batch(step: int) -> SpeakerBatch:
        rows, labels, starts = sample_batch(tc.seed, step, speaker_rows, lengths, tc)
        features = torch.stack([crop(cache, rows[k], starts[k], tc.crop_frames) for k in mine])
        return SpeakerBatch(features, torch.from_numpy(labels[mine]), torch.from_numpy(rows[mine]))

    fingerprint = _fingerprint(config)
    start_from = None
    if tc.init_pretrained and arw.enabled:
        source = Path(tc.init_pretrained) / "pretrain"
        if arw.pretrain_steps not in ckpt.list_checkpoints(source):
            raise FileNotFoundError(f"{source}: no checkpoint at step {arw.pretrain_steps} (train.init_pretrained needs a finished baseline run)")
        start_from = (source, arw.pretrain_steps)

    def check_start(progress: dict) -> None:
        if progress["fingerprint"] != fingerprint:
            differ = sorted(k for k in fingerprint if fingerprint[k] != progress["fingerprint"].get(k))
            raise ValueError(f"{start_from[0]}: train.init_pretrained run has other settings in {differ}; its pretraining is not this run's")
        progress["pretrained_from"] = str(start_from[0])

    callbacks = [reweighter_for(config, len(frame)), Snapshot(arw.pretrain_steps, exp_dir / "pretrain")]
    objective = (compatible_objective(config, list(speaker_names)) if config.compat.old_model
                 else VerifierObjective(config.loss.pair_loss_weight))
    trainer = Trainer(learner, objective, TrainerConfig.from_settings(tc), callbacks, exp_dir,
                      name=f"train {config.name}")
    result = trainer.fit(lambda epoch: range(tc.steps), 1, make_batch=make_batch, total_steps=tc.steps, stop_after_steps=stop_after_steps,
                         start_from=start_from, progress_defaults={"fingerprint": fingerprint}, check_start=check_start)
    if result["stopped"] == "stop_after_steps":
        return {"stopped": "stop_after_steps", "step": result["steps"]}
    summary = {"name": config.name, "stopped": result["stopped"], "steps": result["steps"], "train_minutes": result["train_minutes"],
               "parameters": count_parameters(learner.extractor), "world_size": distributed.world_size(), "threads": tc.threads,
               "pretrained_from": trainer.progress.get("pretrained_from"), "log": result["log"]}
    if main_rank:
        ckpt.save_model(exp_dir / "model.safetensors", learner.extractor, {"config": config.to_dict(), "step": result["steps"]})
        # The classifier, so a later model can be trained compatible with this one (compat.old_model).
        ckpt.save_model(exp_dir / CLASSIFIER_FILE, learner.aam, {"speakers": [str(n) for n in speaker_names], "margin": config.loss.aam_margin,
                                                                "scale": config.loss.aam_scale})
        io.write_json(exp_dir / "train_summary.json", summary)
    return summary


def load_extractor(path: str | Path) -> tuple[XVector, VerifierConfig]:
    """A trained extractor (eval mode) and its config from ``model.safetensors`` + sidecar."""
    weights, meta = ckpt.load_weights(path)
    config = config_from_dict(meta["config"], str(path))
    extractor = XVector(config.model, None)
    extractor.load_state_dict(weights)
    return extractor.eval(), config


@torch.inference_mode()
def embed(extractor: XVector, cache: FeatureCache) -> np.ndarray:
    """Whole-utterance embeddings, one utterance at a time (no padding), ``(len(cache), dim)`` float32."""
    extractor.eval()
    return np.stack([extractor(cache.get(i)[None]).squeeze(0).numpy() for i in range(len(cache))]).astype(np.float32)

