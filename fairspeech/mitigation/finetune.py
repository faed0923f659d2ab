"""Reusable pieces of a cohort fine-tuning experiment: cached decodes, the adaptation pool, replay, speakers
scored with a model's errors, and per-cohort before/after figures with negative flips.

The EWC comparison built on them is a recipe, ``recipes/ewc_finetune/local/compare.py``;
``fairspeech finetune --model`` (:mod:`fairspeech.mitigation.user_finetune`) reports its cohorts with
:func:`flip_tables` too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from fairspeech.asr.evaluate import load_trained, transcribe
from fairspeech.asr.train import file_sha256
from fairspeech.data import schema
from fairspeech.data.speakers import speaker_table
from fairspeech.metrics import bootstrap as bs
from fairspeech.metrics.flips import OVERALL, flip_counts, flip_table
from fairspeech.metrics.wer import alignment_counts
from fairspeech.utils import io

COHORT = "cohort"
GROUP = "group"  # "target" or "rest"
TARGET, REST = "target", "rest"
MODEL_SHA = "model_sha256"


def cached_hypotheses(path: Path, model_path: Path, data, frame: pd.DataFrame, max_frames: int) -> list[str]:
    """Greedy hypotheses of the model in ``model_path`` on a split (:class:`fairspeech.asr.data.SplitData`),
    cached as parquet keyed by utt_id and by the model file's SHA-256 (a retrained model is decoded again)."""
    digest = file_sha256(model_path)
    if path.exists():
        cached = pd.read_parquet(path)
        if cached[schema.UTT_ID].tolist() == frame[schema.UTT_ID].tolist() and MODEL_SHA in cached and (cached[MODEL_SHA] == digest).all():
            return cached[schema.HYPOTHESIS].fillna("").tolist()
    model, tokenizer, _ = load_trained(model_path)
    hyps, _ = transcribe(model, data, tokenizer, max_frames=max_frames)
    with io.atomic_path(path) as tmp:
        pd.DataFrame({schema.UTT_ID: frame[schema.UTT_ID].to_numpy(), schema.HYPOTHESIS: hyps, MODEL_SHA: digest}).to_parquet(tmp, index=False)
    return hyps


def adaptation_pool(train: pd.DataFrame, share: float, seed: int) -> set[str]:
    """A seeded ``share`` of the train speakers: the data collected after the deployed model was trained."""
    if not 0 < share < 1:
        raise ValueError(f"base_training.adaptation_share must be in (0, 1), got {share}")
    speakers = np.sort(train[schema.SPEAKER_ID].astype(str).unique())
    picked = bs.stream(seed, "ewc_finetune/adaptation_pool").choice(len(speakers), size=max(1, int(round(share * len(speakers)))), replace=False)
    return set(speakers[picked])


def scored_speakers(frame: pd.DataFrame, hyps: Sequence[str], attributes: Sequence[str] = ()) -> pd.DataFrame:
    """The speaker table (errors, reference words, ``attributes``) of a split under the given hypotheses."""
    counts = alignment_counts(frame[schema.REFERENCE].tolist(), list(hyps))
    table = frame.reset_index(drop=True).assign(**{schema.ERRORS: counts[schema.ERRORS].to_numpy(), schema.REF_WORDS: counts[schema.REF_WORDS].to_numpy()})
    return speaker_table(table, attributes)


def replay_mask(frame: pd.DataFrame, targets: np.ndarray, ratio: float, seed: int) -> np.ndarray:
    """Targets plus a seeded sample of ``ratio`` x as many other utterances (replay of the rest of the population)."""
    others = np.flatnonzero(~targets)
    n = min(len(others), int(round(ratio * targets.sum())))
    picked = bs.stream(seed, "ewc_finetune/replay").choice(others, size=n, replace=False)
    mask = targets.copy()
    mask[picked] = True
    return mask


def flip_tables(frame: pd.DataFrame, before: Sequence[str], after: Sequence[str], by: Sequence[str | None], n_boot: int, seed: int) -> dict:
    """For each attribute of ``by`` (None: overall only), :func:`~fairspeech.metrics.flips.flip_table` of ``after``
    against ``before`` on the rows of ``frame`` (reference, speaker id and the attributes), indexed by cohort."""
    counts = flip_counts(frame[schema.REFERENCE].tolist(), list(before), list(after))
    table = pd.concat([frame.reset_index(drop=True), counts], axis=1)
    return {attribute: flip_table(table, attribute, n_boot=n_boot, seed=seed).set_index("cohort") for attribute in by}


SPLIT_FIGURES = ["speakers", "utterances", "new_wer", "new_wer_low", "new_wer_high", "old_wer", "negative_flip_rate", "negative_flip_rate_low",
                 "negative_flip_rate_high", "word_negative_flip_rate", "word_negative_flip_rate_low", "word_negative_flip_rate_high",
                 "negative_flip_impact", "negative_flip_impact_low", "negative_flip_impact_high", "word_negative_flip_impact",
                 "word_negative_flip_impact_low", "word_negative_flip_impact_high", "positive_flip_rate", "negative_flip", "word_negative_flips"]
_RENAME = {"new_wer": "wer", "new_wer_low": "wer_low", "new_wer_high": "wer_high", "old_wer": "base_wer"}


def split_figures(frame: pd.DataFrame, base_hyps: Sequence[str], hyps: Sequence[str], n_boot: int, seed: int) -> dict:
    """WER per cohort (``frame``'s ``cohort`` column) and per group (``group``: target or rest), across-cohort
    spread, overall, and negative flips against the base, with intervals."""
    tables = flip_tables(frame[[schema.SPEAKER_ID, schema.REFERENCE, COHORT, GROUP]], base_hyps, hyps, [COHORT, GROUP], n_boot, seed)

    def rows(t: pd.DataFrame) -> dict:
        return {str(c): {_RENAME.get(k, k): (v if not isinstance(v, (np.integer, np.floating)) else v.item()) for k, v in t.loc[c, SPLIT_FIGURES].items()}
                for c in t.index}

    cohorts = rows(tables[COHORT])
    overall = cohorts.pop(OVERALL)
    cohorts.pop("(missing)", None)
    groups = rows(tables[GROUP])
    groups.pop(OVERALL)
    wers = np.array([c["wer"] for c in cohorts.values()])
    return {
        "overall": overall, "groups": groups, "cohorts": cohorts,
        "across_cohorts": {"wer_mean": float(wers.mean()), "wer_max": float(wers.max()), "wer_variance": float(wers.var())},
    }
