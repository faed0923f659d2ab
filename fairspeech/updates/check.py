"""The pre-ship check: per-cohort WER change and negative flips of an update against the model it replaces.

    table = regression_table(rows, refs, old_hyps, new_hyps, by=["voice_family", "gender"], seed=0)
    table = RegressionGate().check(table)      # adds 'flagged' and 'reasons' per cohort
    if table.flagged.any(): do not ship

Negative flips and both WERs come from :func:`fairspeech.metrics.flips.flip_table` (speaker-bootstrap
intervals); beside them this adds the paired WER change (new minus old errors over the same words,
resampling the same speakers), whose interval says whether a cohort got worse beyond noise. A cohort
is flagged when a lower interval bound exceeds its threshold: confidently worse than allowed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from fairspeech.data import schema
from fairspeech.metrics import bootstrap as bs
from fairspeech.metrics.flips import NEW_ERRORS, OLD_ERRORS, OVERALL, flip_counts, flip_table

KEEP = ("speakers", "utterances", "old_wer", "new_wer", "wer_change", "wer_change_low", "wer_change_high",
        "negative_flip_rate", "negative_flip_rate_low", "negative_flip_rate_high",
        "word_negative_flip_rate", "word_negative_flip_rate_low", "word_negative_flip_rate_high",
        "positive_flip_rate", "negative_flip", "word_negative_flips")


def _wer_change(frame: pd.DataFrame, by: str | None, speaker: str, n_boot: int, alpha: float, seed: int) -> pd.DataFrame:
    """Paired WER change per cohort (and overall) with its speaker-bootstrap interval, strata as flip_table draws them."""
    frame = frame.assign(_change=frame[NEW_ERRORS] - frame[OLD_ERRORS])
    frame["_cohort"] = OVERALL if by is None else frame[by].astype("string").fillna("(missing)")
    if by is not None:
        frame = pd.concat([frame.assign(_cohort=OVERALL), frame], ignore_index=True)
    units = frame.groupby(["_cohort", speaker], sort=True, observed=True)[["_change", schema.REF_WORDS]].sum().reset_index()
    labels = list(units["_cohort"].drop_duplicates())
    codes = pd.Categorical(units["_cohort"], categories=labels).codes
    rep_change, rep_words = bs.stratified_bootstrap(units["_change"].to_numpy(), units[schema.REF_WORDS].to_numpy(), codes, labels, n_boot, seed)
    low, high = bs.percentile_interval(bs.ratio(rep_change, rep_words), alpha)
    sums = units.groupby("_cohort", sort=False)[["_change", schema.REF_WORDS]].sum()
    point = bs.ratio(sums.loc[labels, "_change"].to_numpy(), sums.loc[labels, schema.REF_WORDS].to_numpy())
    return pd.DataFrame({"cohort": labels, "wer_change": point, "wer_change_low": low, "wer_change_high": high})


def _counted(utterances: pd.DataFrame, references: Sequence[str], old: Sequence[str], new: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """``columns`` of the utterance rows beside each utterance's old/new error and flip counts."""
    if not len(utterances) == len(references):
        raise ValueError(f"{len(utterances)} utterance rows for {len(references)} references")
    missing = [c for c in columns if c not in utterances.columns]
    if missing:
        raise KeyError(f"regression_table needs columns {missing}; have {list(utterances.columns)}")
    return pd.concat([utterances[list(columns)].reset_index(drop=True), flip_counts(references, old, new)], axis=1)


def paired_wer_change(utterances: pd.DataFrame, references: Sequence[str], old: Sequence[str], new: Sequence[str], *,
                      speaker: str = schema.SPEAKER_ID, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """Overall WER change from ``old`` to ``new`` hypotheses of the same utterances and its paired speaker-bootstrap interval."""
    row = _wer_change(_counted(utterances, references, old, new, [speaker]), None, speaker, n_boot, alpha, seed).iloc[0]
    return float(row["wer_change"]), float(row["wer_change_low"]), float(row["wer_change_high"])


def regression_table(utterances: pd.DataFrame, references: Sequence[str], old: Sequence[str], new: Sequence[str], by: Sequence[str] = (),
                     *, speaker: str = schema.SPEAKER_ID, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """One row overall and one per cohort of each attribute in ``by``: WERs, paired WER change, flip rates, intervals."""
    frame = _counted(utterances, references, old, new, [speaker, *by])
    parts = []
    for attribute in [None, *by]:
        flips = flip_table(frame, by=attribute, speaker=speaker, n_boot=n_boot, alpha=alpha, seed=seed)
        table = flips.merge(_wer_change(frame, attribute, speaker, n_boot, alpha, seed), on="cohort")
        if attribute is not None:
            table = table[table["cohort"] != OVERALL]
        parts.append(table.assign(attribute=attribute or "overall"))
    table = pd.concat(parts, ignore_index=True)
    return table[["attribute", "cohort", *KEEP]]


@dataclass
class RegressionGate:
    """Thresholds an update must not exceed in any cohort (confidently: the interval's lower bound).

    max_wer_increase: absolute WER change (0.0: any significant increase flags).
    max_negative_flip_rate: share of utterances that were right and now are not (for a verifier's
      update table, :func:`fairspeech.metrics.verification.update_report`: the balanced share of trials).
    max_word_negative_flip_rate: share of reference words that were recognized and now are not.
    max_eer_increase: absolute EER change of a verifier update.
    min_speakers: smaller cohorts are reported but not judged (their intervals say little).
    A rule whose column the table lacks (WER rules on a verifier's table, EER on an ASR one) is not applied.
    """

    max_wer_increase: float = 0.0
    max_negative_flip_rate: float = 0.05
    max_word_negative_flip_rate: float = 0.10
    max_eer_increase: float = 0.0
    min_speakers: int = 5

    def check(self, table: pd.DataFrame) -> pd.DataFrame:
        rules = [(column, limit, label) for column, limit, label in (
            ("wer_change_low", self.max_wer_increase, "WER increase"),
            ("negative_flip_rate_low", self.max_negative_flip_rate, "negative flips"),
            ("word_negative_flip_rate_low", self.max_word_negative_flip_rate, "word negative flips"),
            ("eer_change_low", self.max_eer_increase, "EER increase")) if column in table.columns]
        reasons = []
        for _, row in table.iterrows():
            judged = row["speakers"] >= self.min_speakers
            found = [f"{label} {row[column]:.4f} > {limit}" for column, limit, label in rules
                     if judged and row[column] is not None and np.isfinite(row[column]) and row[column] > limit]
            reasons.append("; ".join(found))
        return table.assign(flagged=[bool(r) for r in reasons], reasons=reasons)

    def to_dict(self) -> dict:
        return asdict(self)


def decode_splits(model_path: str | Path, splits: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """A trained model's rows of ``splits`` (manifest and feature cache from its own config), concatenated, and its greedy hypotheses."""
    from fairspeech.asr.data import SplitData, load_splits
    from fairspeech.asr.evaluate import load_trained, transcribe

    model, tokenizer, config = load_trained(model_path)
    loaded = load_splits(config.data.manifest, list(splits), config.data.cache_dir, progress=False, audio_dir=config.data.audio_dir)
    frames, hyps = [], []
    for split in splits:
        frame, cache = loaded[split]
        frames.append(frame)
        hyps += transcribe(model, SplitData(cache), tokenizer, max_frames=config.eval.max_frames_per_batch)[0]
    return pd.concat(frames, ignore_index=True), hyps


def table_records(table: pd.DataFrame) -> list[dict]:
    """JSON-ready rows (NaN as None)."""
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()} for row in table.to_dict("records")]
