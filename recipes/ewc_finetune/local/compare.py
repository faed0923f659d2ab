"""The EWC fine-tuning comparison (recipes/ewc_finetune): fine-tune a base recognizer for its worst cohorts
without hurting the rest.

    python recipes/ewc_finetune/local/compare.py --config recipes/ewc_finetune/config.toml [--set key=value ...] \
        [--seed N] [--variants none,finetune,...] [--no-progress]

The reusable parts (cached decodes, adaptation pool, replay, per-cohort figures) are
:mod:`fairspeech.mitigation.finetune`.

1. Decode the train/dev/test splits with the base model (cached).
2. Cohorts from the audit: speaker-embedding clusters (:class:`EmbeddingKMeans`) or regions of the
   geographic tree (:class:`GeoClusteringTree`), fitted on the train speakers with the base model's
   errors and ranked by WER; the ``targets`` worst become the targets. Held-out speakers (dev, test)
   get their cohort from ``predict``.
3. The diagonal Fisher of the base model on a seeded sample of the *whole* train population.
4. Variants, all from the base weights with the same seed and schedule through
   :func:`fairspeech.asr.train.train` (only their callbacks and data differ): ``none`` (no adaptation), ``finetune``
   (target cohorts' train utterances), ``replay`` (plus a share of other cohorts' utterances),
   ``ewc_<lambda>`` for each lambda, ``ewc_distill`` (EWC plus focal distillation towards the base
   model on what it got right).
5. Each variant decodes the held-out splits; WER per cohort, mean/max/variance across cohorts,
   overall WER and negative flips against the base model per cohort and for targets vs the rest,
   all with speaker-bootstrap intervals (:func:`fairspeech.metrics.flips.flip_table`).

Every stage is cached under ``out_dir`` and each training resumes from its checkpoints, so rerunning
the same command after an interruption continues where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from fairspeech.asr.config import dict_to_config
from fairspeech.asr.data import SplitData, load_splits
from fairspeech.asr.evaluate import load_trained
from fairspeech.asr.train import file_sha256, reuse_or_reset, train, training_record
from fairspeech.cohorts.base import plain
from fairspeech.data import schema
from fairspeech.metrics import bootstrap as bs
from fairspeech.mitigation.distill import focal_distillation, old_model_right
from fairspeech.mitigation.ewc import DiagonalFisher, OnlineEWC
from fairspeech.mitigation.finetune import COHORT, GROUP, REST, TARGET, adaptation_pool, cached_hypotheses, replay_mask, scored_speakers, split_figures
from fairspeech.training.callbacks import Regularizer
from fairspeech.utils import distributed, io


@dataclass
class CohortSettings:
    method: str = "embedding"  # "embedding" or "geo": fitted on the train speakers; "assigned": read from an audit
    embeddings: str = "data_manifests/demo/speaker_embeddings.parquet"
    assignments: str | None = None  # method "assigned": an audit's cohorts.parquet (fairspeech audit --discover ...)
    column: str = "embedding"  # method "assigned": which of its method columns
    k: int | None = None  # embedding clusters (None: by silhouette)
    targets: int = 1  # how many of the worst cohorts to fine-tune for
    min_speakers: int = 20


@dataclass
class FisherSettings:
    kind: str = "empirical"
    utterances: int = 400  # seeded sample of the whole train population
    normalize: bool = True


@dataclass
class BaseTrainingSettings:
    """Train the deployed model here, before the adaptation data existed: on the train speakers outside a
    seeded ``adaptation_share`` of them (the *adaptation pool*). The audit then runs on the pool (new data,
    errors the base model never trained on) and the fine-tunings learn from the pool's target-cohort speakers.
    Disabled, the given ``base_model`` is used and the whole train split is the pool."""

    enabled: bool = False
    config: str | None = None  # an ASR recipe config, e.g. recipes/asr_baseline/config.toml (None: defaults + overrides)
    overrides: list[str] = field(default_factory=list)  # --set style, e.g. ["train.max_minutes=30"]
    adaptation_share: float = 0.5


@dataclass
class FinetuneSettings:
    name: str = "ewc_finetune"
    base_model: str = "runs/asr_baseline/model.safetensors"
    out_dir: str = "runs/ewc_finetune"
    result: str = "benchmarks/results/ewc_finetune.json"
    plot: str = "benchmarks/results/ewc_finetune_lambda_sweep.png"
    seed: int = 0
    cohorts: CohortSettings = field(default_factory=CohortSettings)
    fisher: FisherSettings = field(default_factory=FisherSettings)
    base_training: BaseTrainingSettings = field(default_factory=BaseTrainingSettings)
    replay_ratio: float = 0.5  # other cohorts' utterances per target utterance, for the replay variant
    lambdas: list[float] = field(default_factory=lambda: [1.0, 10.0, 100.0])
    distill_lambda: float = 10.0  # EWC lambda of the ewc_distill variant
    distill_weight: float = 1.0
    distill_alpha: float = 0.1  # weight on every utterance
    distill_beta: float = 1.0  # extra weight where the base model was right
    distill_focus: str = "words"  # see fairspeech.mitigation.distill
    variants: list[str] | None = None  # None: all
    train: dict = field(default_factory=dict)  # overrides of the base model's [train] for every fine-tuning
    eval_splits: list[str] = field(default_factory=lambda: ["dev", "test"])
    select_split: str = "dev"  # lambda picked here, targets checked on the other
    n_boot: int = 1000
    progress: bool = True


def settings_from_dict(tree: dict, source: str = "<dict>") -> FinetuneSettings:
    """The settings from their tables, checked; ``train`` (overrides of the base model's ``[train]``) is
    checked against the ASR recipe's ``[train]`` here, before anything is trained."""
    from fairspeech.asr.config import TrainConfig
    from fairspeech.config import from_dict

    settings = from_dict(FinetuneSettings, tree, source)
    from_dict(TrainConfig, settings.train, source, section="train")
    return settings


def load_settings(path: str | Path | None, overrides: Sequence[str] = (), seed: int | None = None) -> FinetuneSettings:
    """Settings from a TOML file (or defaults), ``--set key=value`` overrides (dotted for tables), and ``seed``
    (None: the file's). With ``[base_training] enabled`` its ASR recipe and overrides are loaded (checked) too."""
    from fairspeech.asr.config import load_config
    from fairspeech.config import load
    from fairspeech.errors import ConfigError

    settings = load(settings_from_dict, path, overrides, seed=seed)
    if settings.base_training.enabled:
        try:
            load_config(settings.base_training.config, settings.base_training.overrides)
        except ConfigError as error:
            raise ConfigError(f"[base_training] {error}", str(path or "defaults"), "base_training") from None
    return settings


def variant_specs(settings: FinetuneSettings) -> list[dict]:
    specs = [{"name": "none"}, {"name": "finetune"}, {"name": "replay", "replay": True}]
    specs += [{"name": f"ewc_{lam:g}", "ewc": lam} for lam in settings.lambdas]
    specs.append({"name": "ewc_distill", "ewc": settings.distill_lambda, "distill": True})
    if settings.variants is not None:
        unknown = sorted(set(settings.variants) - {s["name"] for s in specs})
        if unknown:
            raise ValueError(f"unknown variants {unknown}; known: {[s['name'] for s in specs]}")
        specs = [s for s in specs if s["name"] in settings.variants]
    return specs


# -- stages ---------------------------------------------------------------------------------------
def train_base(settings: FinetuneSettings, out: Path, pool: set[str]) -> Path:
    """The deployed model, trained on the train speakers outside the adaptation pool (resumes if interrupted)."""
    from fairspeech.asr.config import load_config

    exp = out / "base"
    config = load_config(settings.base_training.config, settings.base_training.overrides)
    config.train.seed = settings.seed
    config.train.progress = settings.progress
    fingerprint = {"config": config.to_dict(), "pool": sorted(pool)}
    if not reuse_or_reset(exp, fingerprint, ["model.safetensors", "train_summary.json"]):
        train(config, exp, select_train=lambda rows: ~rows[schema.SPEAKER_ID].astype(str).isin(pool).to_numpy())
    return exp / "model.safetensors"


def discover_cohorts(settings: CohortSettings, seed: int, train_speakers: pd.DataFrame, held_out: dict[str, pd.DataFrame]):
    """Fit the audit's discovery method on train speakers (or rank an audit's given cohorts by their WER);
    return (estimator, {split: cohort label per speaker})."""
    from fairspeech.cohorts.assigned import AssignedCohorts
    from fairspeech.cohorts.embedding import EmbeddingKMeans
    from fairspeech.cohorts.geo_tree import GeoClusteringTree

    def with_features(speakers: pd.DataFrame) -> pd.DataFrame:
        if settings.method != "embedding":
            return speakers
        embeddings = pd.read_parquet(settings.embeddings)
        if schema.SPEAKER_ID not in embeddings.columns:
            raise KeyError(f"{settings.embeddings}: needs a {schema.SPEAKER_ID!r} column")
        return speakers.join(embeddings.set_index(schema.SPEAKER_ID), how="left")

    if settings.method == "embedding":
        estimator = EmbeddingKMeans(k=settings.k, min_speakers=settings.min_speakers, seed=seed)
    elif settings.method == "geo":
        estimator = GeoClusteringTree(min_speakers=settings.min_speakers, seed=seed)
    elif settings.method == "assigned":
        if not settings.assignments:
            raise ValueError("cohorts.method 'assigned' needs cohorts.assignments: the cohorts.parquet of an audit")
        estimator = AssignedCohorts(settings.assignments, settings.column, min_speakers=settings.min_speakers)
    else:
        raise ValueError(f"cohorts.method must be 'embedding', 'geo' or 'assigned', got {settings.method!r}")
    estimator.fit(with_features(train_speakers))
    labels = {"train": estimator.labels_}
    labels.update({split: estimator.predict(with_features(speakers)) for split, speakers in held_out.items()})
    return estimator, labels


def variant_fingerprint(spec: dict, settings: FinetuneSettings, base_digest: str, mask: np.ndarray, fisher_meta: dict | None) -> dict:
    """What a variant's training depends on; a rerun whose fingerprint differs retrains it from scratch."""
    return {
        "spec": spec, "train": settings.train, "seed": settings.seed, "base_model_sha256": base_digest,
        "train_rows_sha256": hashlib.sha256(np.packbits(mask.astype(bool)).tobytes()).hexdigest(),
        "distill": {k: getattr(settings, f"distill_{k}") for k in ("weight", "alpha", "beta", "focus")} if spec.get("distill") else None,
        "fisher": {k: fisher_meta.get(k) for k in ("kind", "utterances", "normalize", "seed", "n_samples")} if fisher_meta else None,
    }


# -- the comparison -------------------------------------------------------------------------------
def run_comparison(settings: FinetuneSettings) -> dict:
    started = time.perf_counter()
    out = Path(settings.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    io.write_json(out / "settings.json", dataclasses.asdict(settings))
    timings = {}

    # 0. the deployed model: given, or trained here without the adaptation pool
    pool = None
    base_model = Path(settings.base_model)
    if settings.base_training.enabled:
        from fairspeech.asr.config import load_config

        data_config = load_config(settings.base_training.config, settings.base_training.overrides).data
        train_frame = load_splits(data_config.manifest, ["train"], data_config.cache_dir, progress=settings.progress, audio_dir=data_config.audio_dir)["train"][0]
        pool = adaptation_pool(train_frame, settings.base_training.adaptation_share, settings.seed)
        base_model = train_base(settings, out, pool)
    base, tokenizer, base_config = load_trained(base_model)
    base_digest = file_sha256(base_model)
    torch.set_num_threads(int(settings.train.get("threads", base_config.train.threads)))  # decoding and Fisher as the fine-tunings
    dc = base_config.data
    splits = ["train", *settings.eval_splits]
    loaded = load_splits(dc.manifest, splits, dc.cache_dir, progress=settings.progress, audio_dir=dc.audio_dir)
    frames = {s: loaded[s][0] for s in splits}
    data = {s: SplitData(loaded[s][1], frames[s][schema.REFERENCE].tolist(), tokenizer) for s in splits}
    max_frames = base_config.eval.max_frames_per_batch
    in_pool = frames["train"][schema.SPEAKER_ID].astype(str).isin(pool).to_numpy() if pool is not None else np.ones(len(frames["train"]), dtype=bool)

    # 1. base hypotheses
    t = time.perf_counter()
    base_hyps = {s: cached_hypotheses(out / f"base_hyps_{s}.parquet", base_model, data[s], frames[s], max_frames) for s in splits}
    timings["decode_base_s"] = time.perf_counter() - t

    # 2. cohorts from the audit of the adaptation pool's speakers (all train speakers without a pool)
    attributes = ["lat", "lon"] if settings.cohorts.method == "geo" else []
    speakers = {s: scored_speakers(frames[s], base_hyps[s], attributes) for s in splits}
    pool_speakers = speakers["train"][speakers["train"].index.astype(str).isin(pool)] if pool is not None else speakers["train"]
    held = {s: speakers[s] for s in settings.eval_splits} | ({"train": speakers["train"]} if pool is not None else {})
    estimator, labels = discover_cohorts(settings.cohorts, settings.seed, pool_speakers, held)
    ranked = estimator.cohorts_.sort_values("wer", ascending=False, kind="stable")
    eligible = ranked[ranked["speakers"] >= settings.cohorts.min_speakers]
    targets = [int(c) for c in eligible.index[: settings.cohorts.targets]]
    if len(targets) < settings.cohorts.targets or len(targets) >= len(ranked):
        raise ValueError(f"cohorts: need {settings.cohorts.targets} target cohorts with >= {settings.cohorts.min_speakers} train speakers "
                         f"and at least one other; found {len(eligible)} eligible of {len(ranked)}")
    for s in splits:
        codes = frames[s][schema.SPEAKER_ID].map(labels[s])
        frames[s][COHORT] = codes.map(lambda c: pd.NA if pd.isna(c) else f"cohort {int(c)}").astype("string")
        frames[s][GROUP] = np.where(codes.isin(targets).fillna(False).to_numpy(bool), TARGET, REST)
    target_mask = (frames["train"][GROUP] == TARGET).to_numpy() & in_pool  # what the fine-tunings learn from
    cohort_report = {
        "method": settings.cohorts.method,
        "chosen_on": ("the adaptation pool's speakers (held out of the base model's training), their WER under the base model"
                      if pool is not None else "train speakers' WER under the base model") + " (the audit's discovery fit); other speakers assigned with predict",
        "adaptation_pool": None if pool is None else {"speakers": len(pool), "utterances": int(in_pool.sum()), "share": settings.base_training.adaptation_share},
        "targets": [f"cohort {c}" for c in targets],
        "train_table": {f"cohort {int(c)}": {"description": str(r["description"]), "speakers": int(r["speakers"]), "utterances": int(r["utterances"]),
                                              "wer": float(r["wer"])} for c, r in ranked.iterrows()},
        "p_value": plain(estimator.p_value_),  # None for given cohorts (no search to test)
        "excluded_train_speakers": estimator.excluded_,
        "k": int(getattr(estimator, "k_", len(ranked))),
        "target_train_utterances": int(target_mask.sum()),
        "held_out_speakers": {s: {str(k): int(v) for k, v in labels[s].astype("string").fillna("(none)").value_counts().sort_index().items()}
                              for s in settings.eval_splits},
    }

    # 3. Fisher of the base model on the whole population
    t = time.perf_counter()
    fisher_path = out / "fisher.safetensors"
    fisher_meta = {"kind": settings.fisher.kind, "utterances": settings.fisher.utterances, "normalize": settings.fisher.normalize, "seed": settings.seed,
                   "base_model_sha256": base_digest}
    ewc = None
    if fisher_path.exists():
        ewc = OnlineEWC.load(fisher_path)
        if {k: ewc.meta_.get(k) for k in fisher_meta} != fisher_meta:
            ewc = None  # settings changed: recompute
    if ewc is None:
        population = np.sort(bs.stream(settings.seed, "ewc_finetune/fisher").choice(len(data["train"]), size=min(settings.fisher.utterances, len(data["train"])), replace=False))
        estimate = DiagonalFisher(settings.fisher.kind, settings.fisher.normalize, tokenizer.blank_id, settings.seed, settings.progress).fit(base, data["train"], population.tolist())
        ewc = OnlineEWC().consolidate(base, estimate.fisher_)
        ewc.save(fisher_path, {**fisher_meta, "n_samples": estimate.n_samples_, "raw_mean": estimate.raw_mean_, "seconds": time.perf_counter() - t})
        ewc.meta_ = json.loads(fisher_path.with_suffix(".json").read_text())
    timings["fisher_s"] = ewc.meta_["seconds"]

    # 4. variants
    base_tree = base_config.to_dict()
    right = old_model_right(frames["train"][schema.REFERENCE].tolist(), base_hyps["train"], settings.distill_focus)
    replay = replay_mask(frames["train"], target_mask, settings.replay_ratio, settings.seed)
    results = {}
    for spec in variant_specs(settings):
        name = spec["name"]
        vdir = out / "variants" / name
        record = {"spec": spec}
        if name == "none":
            hyps = base_hyps
            record["train"] = None
        else:
            config = dict_to_config(base_tree)
            config.name = f"{settings.name}/{name}"
            for key, value in settings.train.items():
                if not hasattr(config.train, key):
                    raise KeyError(f"train.{key}: not a [train] setting of the base model's config")
                setattr(config.train, key, value)
            config.train.init_from = str(base_model)
            config.train.seed = settings.seed
            config.train.dev_every = 0
            config.train.progress = settings.progress
            mask = replay if spec.get("replay") else target_mask
            callbacks = []
            if "ewc" in spec:
                callbacks.append(ewc.callback(spec["ewc"]))
            if spec.get("distill"):
                old, _, _ = load_trained(base_model)
                callbacks.append(Regularizer(focal_distillation(old, right, settings.distill_weight, settings.distill_alpha, settings.distill_beta)))
            summary_path = vdir / "train_summary.json"
            fingerprint = variant_fingerprint(spec, settings, base_digest, mask, ewc.meta_ if "ewc" in spec else None)
            if not reuse_or_reset(vdir, fingerprint, ["model.safetensors", "train_summary.json"]):
                train(config, vdir, callbacks=callbacks, select_train=lambda frame, m=mask: m)
            summary = json.loads(summary_path.read_text())
            model, _, _ = load_trained(vdir / "model.safetensors")
            record["train"] = {k: summary[k] for k in ("steps", "epochs_completed", "train_minutes", "train_utterances")}
            with torch.no_grad():
                record["ewc_distance_from_base"] = float(ewc.distance(model))
            timing_path = vdir / "decode_time.json"  # the decoding's own time, kept for reruns that find the hypotheses cached
            t = time.perf_counter()
            hyps = {s: cached_hypotheses(vdir / f"hyps_{s}.parquet", vdir / "model.safetensors", data[s], frames[s], max_frames) for s in settings.eval_splits}
            if not timing_path.exists():
                io.write_json(timing_path, {"decode_s": time.perf_counter() - t})
            record["decode_s"] = json.loads(timing_path.read_text())["decode_s"]
        record["splits"] = {s: split_figures(frames[s], base_hyps[s], hyps[s], settings.n_boot, settings.seed) for s in settings.eval_splits}
        results[name] = record
        if settings.progress:
            test = record["splits"][settings.eval_splits[-1]]
            print(f"{name}: target WER {100 * test['groups'][TARGET]['wer']:.2f}%, rest {100 * test['groups'][REST]['wer']:.2f}%, "
                  f"overall {100 * test['overall']['wer']:.2f}%, rest word flips {100 * test['groups'][REST]['word_negative_flip_rate']:.2f}%", flush=True)

    report = {
        "name": settings.name, "base_model": str(base_model), "base_train": training_record(base_model.parent), "seed": settings.seed, "settings": dataclasses.asdict(settings),
        "cohorts": cohort_report, "fisher": ewc.meta_, "variants": results,
        "checks": targets_check(results, settings, targets), "timings": timings,
        "wall_minutes": (time.perf_counter() - started) / 60,
        "threads": torch.get_num_threads(),
    }
    if distributed.is_main():  # under torchrun every rank holds the same report; one writes it
        if settings.plot:
            plot_sweep(results, settings, targets, settings.plot)
        io.write_json(settings.result, report)
    return report


def targets_check(results: dict, settings: FinetuneSettings, targets: list[int]) -> dict:
    """The issue's targets for each EWC variant; the lambda is picked on ``select_split`` and checked on the others.

    Worst cohort (the base model's worst target cohort on the split) at least 20% relative better,
    overall WER no worse than the base, words negatively flipped in non-target cohorts at most half
    of plain fine-tuning's.
    """
    if "none" not in results:
        return {}
    out = {}
    for split in settings.eval_splits:
        base = results["none"]["splits"][split]
        worst = max((c for c in base["cohorts"] if c in {f"cohort {x}" for x in targets}),
                    key=lambda c: base["cohorts"][c]["wer"], default=None)
        plain = results.get("finetune", {}).get("splits", {}).get(split)
        rows = {}
        for name, record in results.items():
            fig = record["splits"][split]
            groups = fig["groups"]
            row = {
                "overall_wer": fig["overall"]["wer"],
                "overall_relative_change": _relative(fig["overall"]["wer"], base["overall"]["wer"]),
                "target_relative_change": _relative(groups.get(TARGET, {}).get("wer"), base["groups"].get(TARGET, {}).get("wer")),
                "rest_word_negative_flip_rate": groups.get(REST, {}).get("word_negative_flip_rate"),
                "rest_negative_flip_rate": groups.get(REST, {}).get("negative_flip_rate"),
                "worst_cohort": worst,
                "worst_cohort_relative_change": _relative(fig["cohorts"][worst]["wer"], base["cohorts"][worst]["wer"]) if worst else None,
                "rest_word_flips_over_finetune": None,
            }
            if plain is not None and REST in plain["groups"] and row["rest_word_negative_flip_rate"] is not None:
                ref = plain["groups"][REST]["word_negative_flip_rate"]
                row["rest_word_flips_over_finetune"] = row["rest_word_negative_flip_rate"] / ref if ref > 0 else None
            parts = (row["worst_cohort_relative_change"], row["overall_relative_change"], row["rest_word_flips_over_finetune"])
            row["meets_targets"] = None if None in parts else bool(parts[0] <= -0.20 and parts[1] <= 0 and parts[2] <= 0.5)
            rows[name] = row
        out[split] = rows
    select = settings.select_split
    sweep = [n for n in results if n.startswith("ewc_") and select in settings.eval_splits]
    if sweep:
        # on the selection split: the best target WER among lambdas that keep overall WER no worse, else the best overall
        ok = [n for n in sweep if out[select][n]["overall_relative_change"] <= 0 and out[select][n]["target_relative_change"] is not None]
        chosen = min(ok, key=lambda n: out[select][n]["target_relative_change"]) if ok else min(sweep, key=lambda n: out[select][n]["overall_relative_change"])
        out["selected"] = {"variant": chosen, "on": select, "rule": "lowest target-group WER among EWC variants whose overall WER is no worse than the base (else lowest overall WER)"}
    return out


def _relative(new, old):
    return None if new is None or old is None or old == 0 else new / old - 1


def plot_sweep(results: dict, settings: FinetuneSettings, targets: list[int], path: str | Path) -> None:
    """WER of the target cohorts against WER of the rest, per split: the lambda sweep as a line, other variants as points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(settings.eval_splits), figsize=(5.5 * len(settings.eval_splits), 4.5), squeeze=False)
    for ax, split in zip(axes[0], settings.eval_splits):
        def point(name):
            g = results[name]["splits"][split]["groups"]
            return 100 * g.get(REST, {}).get("wer", np.nan), 100 * g.get(TARGET, {}).get("wer", np.nan)
        sweep = sorted((n for n in results if n.startswith("ewc_") and n != "ewc_distill"), key=lambda n: results[n]["spec"]["ewc"])
        if sweep:
            xs, ys = zip(*(point(n) for n in sweep))
            ax.plot(xs, ys, "o-", color="tab:blue", label="EWC (lambda sweep)")
            for n, x, y in zip(sweep, xs, ys):
                ax.annotate(f"λ={results[n]['spec']['ewc']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        for name, style in (("none", "ks"), ("finetune", "r^"), ("replay", "gv"), ("ewc_distill", "mD")):
            if name in results:
                x, y = point(name)
                ax.plot([x], [y], style, label=name)
        ax.set_xlabel("WER of the other cohorts (%)")
        ax.set_ylabel(f"WER of the target cohorts {', '.join(map(str, targets))} (%)")
        ax.set_title(f"{split} speakers")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    from fairspeech.errors import cli_status

    parser = argparse.ArgumentParser(prog="recipes/ewc_finetune/local/compare.py", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=None, help="settings TOML, e.g. recipes/ewc_finetune/config.toml (default: built-in defaults)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting, e.g. lambdas=[1,10] or train.epochs=2 (repeatable)")
    parser.add_argument("--seed", type=int, default=None, help="seed for cohorts, Fisher sample, replay and training (default: the config's seed)")
    parser.add_argument("--variants", default=None, help="comma-separated subset of none,finetune,replay,ewc_<lambda>,ewc_distill")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return cli_status(run, parser.parse_args(argv))


def run(args) -> int:
    overrides = list(args.set)
    if args.variants:
        overrides.append("variants=[" + ",".join(f'"{v.strip()}"' for v in args.variants.split(",")) + "]")
    if args.no_progress:
        overrides.append("progress=false")
    settings = load_settings(args.config, overrides, seed=args.seed)
    report = run_comparison(settings)
    print(f"wrote {settings.result} ({report['wall_minutes']:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
