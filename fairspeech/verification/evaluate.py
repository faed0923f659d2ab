"""Verification evaluation on held-out speakers: trials, scores, EER/minDCF overall and per group with intervals.

    report = evaluate_model("runs/x/model.safetensors")               # our extractor
    report = evaluate_reference(config)                              # resemblyzer's pretrained encoder, same trials

The held-out utterances are the config's ``eval_splits`` (dev + test on the demo corpus: speakers never
seen in training), in manifest order; trials come from :func:`~fairspeech.verification.trials.build_trials`
with the config's ``max_nontarget`` and ``trial_seed``, so every model is scored on the same trials.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fairspeech.asr.data import load_splits
from fairspeech.data import schema
from fairspeech.metrics.verification import verification_report
from fairspeech.verification.pretrained import speaker_means
from fairspeech.verification.trials import Trials, as_norm_scores, build_trials, cosine_scores


def heldout(config, progress: bool = False):
    """(held-out manifest rows, their log-mel caches per split) for ``config.data.eval_splits``."""
    loaded = load_splits(config.data.manifest, config.data.eval_splits, config.data.cache_dir, progress=progress, audio_dir=config.data.audio_dir)
    frame = pd.concat([loaded[s][0] for s in config.data.eval_splits], ignore_index=True)
    return frame, [loaded[s][1] for s in config.data.eval_splits]


def eval_trials(frame: pd.DataFrame, ec) -> Trials:
    """The held-out trials of ``frame``'s speakers, as the config draws them (the same for every model)."""
    missing = [g for g in ec.groups if g not in frame.columns]
    if missing:
        raise KeyError(f"eval.groups {missing} are not manifest columns")
    return build_trials(frame[schema.SPEAKER_ID], ec.max_nontarget, ec.trial_seed)


def score_report(scores: np.ndarray, trials: Trials, frame: pd.DataFrame, ec) -> dict:
    """EER/minDCF overall and per ``ec.groups`` with speaker-bootstrap intervals for scored trials."""
    report = verification_report(scores, trials.left, trials.right, trials.target, frame[schema.SPEAKER_ID].astype(str).to_numpy(),
                                 {g: frame[g].to_numpy() for g in ec.groups}, n_boot=ec.n_boot, seed=ec.trial_seed, alpha=ec.alpha, p_target=ec.p_target)
    report["trials"] = trials.summary() | {"max_nontarget": ec.max_nontarget, "trial_seed": ec.trial_seed, "score_norm": ec.score_norm}
    return report


def report_for_embeddings(embeddings: np.ndarray, frame: pd.DataFrame, ec, cohort: np.ndarray | None = None) -> dict:
    """Build trials on ``frame``'s speakers, score them (AS-norm against ``cohort`` if the config asks) and report."""
    if len(embeddings) != len(frame):
        raise ValueError(f"{len(embeddings)} embeddings for {len(frame)} held-out utterances")
    trials = eval_trials(frame, ec)
    if ec.score_norm == "asnorm":
        if cohort is None:
            raise ValueError("eval.score_norm = 'asnorm' needs cohort embeddings")
        scores = as_norm_scores(embeddings, cohort, trials, ec.asnorm_top_k)
    else:
        scores = cosine_scores(embeddings, trials)
    return score_report(scores, trials, frame, ec)


def evaluate_model(model_path: str | Path, progress: bool = False) -> dict:
    from fairspeech.verification.train import embed, load_extractor

    extractor, config = load_extractor(model_path)
    frame, caches = heldout(config, progress)
    embeddings = np.concatenate([embed(extractor, c) for c in caches])
    cohort = None
    if config.eval.score_norm == "asnorm":
        train_frame, train_cache = load_splits(config.data.manifest, [config.data.train_split], config.data.cache_dir, progress=progress,
                                               audio_dir=config.data.audio_dir)[config.data.train_split]
        cohort = speaker_means(embed(extractor, train_cache), train_frame[schema.SPEAKER_ID].astype(str).tolist())[1]
    return report_for_embeddings(embeddings, frame, config.eval, cohort)


def reference_embeddings(manifest: str | Path, utt_ids, path: str | Path | None = None) -> np.ndarray:
    """Rows of the corpus's stored resemblyzer embeddings (``utterance_embeddings.npy``, manifest row order) for ``utt_ids``."""
    from fairspeech.data.manifest import read_manifest

    path = Path(path) if path else Path(manifest).parent / "utterance_embeddings.npy"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no stored utterance embeddings (recipes/demo_corpus/run.sh writes them)")
    stored = np.load(path, allow_pickle=False)
    order = read_manifest(manifest, require_hypothesis=False).public_frame()[schema.UTT_ID].astype(str)
    if len(stored) != len(order):
        raise ValueError(f"{path}: {len(stored)} rows but {manifest} has {len(order)} utterances (row i must be manifest row i)")
    position = pd.Series(np.arange(len(order)), index=order.to_numpy())
    unknown = [u for u in utt_ids if u not in position.index]
    if unknown:
        raise KeyError(f"{path}: no embedding for utterances {unknown[:5]}")
    return stored[position.loc[list(utt_ids)].to_numpy()]


def evaluate_reference(config, progress: bool = False) -> dict:
    """resemblyzer's pretrained encoder on the same held-out trials (cosine scores; AS-norm as configured,
    with the training speakers' mean resemblyzer embeddings as cohort)."""
    frame, _ = heldout(config, progress)
    embeddings = reference_embeddings(config.data.manifest, frame[schema.UTT_ID].astype(str).tolist())
    cohort = None
    if config.eval.score_norm == "asnorm":
        train_frame = load_splits(config.data.manifest, [config.data.train_split], config.data.cache_dir, progress=progress,
                                  audio_dir=config.data.audio_dir)[config.data.train_split][0]
        train_emb = reference_embeddings(config.data.manifest, train_frame[schema.UTT_ID].astype(str).tolist())
        cohort = speaker_means(train_emb, train_frame[schema.SPEAKER_ID].astype(str).tolist())[1]
    return report_for_embeddings(embeddings, frame, config.eval, cohort)
