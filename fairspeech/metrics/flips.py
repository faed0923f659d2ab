"""Negative flips: what an update breaks that used to work (Yan et al., "Positive-congruent training").

A lower WER can hide regressions: an update may fix many utterances and break others. For two ASR
models decoding the same utterances:

* utterance negative flip: the old hypothesis was exactly right (no errors), the new one is not;
* word negative flip: a reference word the old model recognized (a hit in its alignment) that the
  new one substitutes or deletes; the word rate is over reference words;
* negative flip impact: negative flips over the new model's errors (how much of what is now wrong
  used to be right), at utterance level (over utterances with errors) and word level (over word errors).

    counts = flip_counts(refs, old_hyps, new_hyps)                 # one row per utterance
    table = flip_table(manifest.join(counts), by="cohort", seed=0)  # per cohort + overall, speaker-bootstrap CIs
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from fairspeech.data import schema
from fairspeech.metrics import bootstrap as bs
from fairspeech.metrics.normalize import TextNormalizer
from fairspeech.metrics.wer import alignment_counts, reference_hits

NEGATIVE_FLIP = "negative_flip"
POSITIVE_FLIP = "positive_flip"
WORD_NEGATIVE_FLIPS = "word_negative_flips"
WORD_POSITIVE_FLIPS = "word_positive_flips"
OLD_ERRORS = "old_errors"
NEW_ERRORS = "new_errors"
NEW_WRONG = "new_wrong"  # the new hypothesis has at least one error

# rate name -> (numerator column, denominator column): every rate is a ratio of speaker-level sums
RATES = {
    "negative_flip_rate": (NEGATIVE_FLIP, "utterances"),
    "positive_flip_rate": (POSITIVE_FLIP, "utterances"),
    "word_negative_flip_rate": (WORD_NEGATIVE_FLIPS, schema.REF_WORDS),
    "negative_flip_impact": (NEGATIVE_FLIP, NEW_WRONG),
    "word_negative_flip_impact": (WORD_NEGATIVE_FLIPS, NEW_ERRORS),
    "old_wer": (OLD_ERRORS, schema.REF_WORDS),
    "new_wer": (NEW_ERRORS, schema.REF_WORDS),
}
RATES_COLUMNS = sorted({c for pair in RATES.values() for c in pair} - {"utterances"})
OVERALL = "(overall)"


def flip_counts(references: Sequence[str], old: Sequence[str], new: Sequence[str], normalizer: TextNormalizer | None = None) -> pd.DataFrame:
    """Per utterance: reference words, both models' errors, utterance and word flips in each direction."""
    if not len(references) == len(old) == len(new):
        raise ValueError(f"{len(references)} references, {len(old)} old and {len(new)} new hypotheses")
    normalizer = TextNormalizer() if normalizer is None else normalizer
    old_counts = alignment_counts(references, old, normalizer)
    new_counts = alignment_counts(references, new, normalizer)
    old_hits = reference_hits(references, old, normalizer)
    new_hits = reference_hits(references, new, normalizer)
    word_negative = np.array([int((a & ~b).sum()) for a, b in zip(old_hits, new_hits)], dtype=np.int64)
    word_positive = np.array([int((~a & b).sum()) for a, b in zip(old_hits, new_hits)], dtype=np.int64)
    old_right = old_counts[schema.ERRORS].to_numpy() == 0
    new_right = new_counts[schema.ERRORS].to_numpy() == 0
    return pd.DataFrame({
        schema.REF_WORDS: old_counts[schema.REF_WORDS].to_numpy(),
        OLD_ERRORS: old_counts[schema.ERRORS].to_numpy(),
        NEW_ERRORS: new_counts[schema.ERRORS].to_numpy(),
        NEW_WRONG: (~new_right).astype(np.int64),
        NEGATIVE_FLIP: (old_right & ~new_right).astype(np.int64),
        POSITIVE_FLIP: (~old_right & new_right).astype(np.int64),
        WORD_NEGATIVE_FLIPS: word_negative,
        WORD_POSITIVE_FLIPS: word_positive,
    })


def flip_table(utterances: pd.DataFrame, by: str | None = None, *, speaker: str = schema.SPEAKER_ID, n_boot: int = 1000,
               alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Flip rates and both WERs overall and per cohort of ``by``, each with a speaker-bootstrap interval.

    ``utterances`` holds :func:`flip_counts`' columns beside the speaker id (and ``by``). Speakers are
    resampled within each cohort, with the same draws for every rate, as the audit does for WER.
    """
    missing = [c for c in [speaker, *RATES_COLUMNS] + ([by] if by else []) if c not in utterances.columns]
    if missing:
        raise KeyError(f"flip_table needs columns {missing}; join flip_counts(...) to the manifest first")
    frame = utterances.assign(utterances=1)
    frame["_cohort"] = OVERALL if by is None else frame[by].astype("string").fillna("(missing)")
    parts = [frame.assign(_cohort=OVERALL)] if by is not None else []
    frame = pd.concat(parts + [frame], ignore_index=True)
    units = frame.groupby(["_cohort", speaker], sort=True, observed=True)[sorted(set(RATES_COLUMNS) | {"utterances"})].sum().reset_index()
    labels = list(units["_cohort"].drop_duplicates())
    codes = pd.Categorical(units["_cohort"], categories=labels).codes
    rows = {label: {"cohort": label, "speakers": int((codes == k).sum())} for k, label in enumerate(labels)}
    for name, (num, den) in RATES.items():
        rep_num, rep_den = bs.stratified_bootstrap(units[num].to_numpy(), units[den].to_numpy(), codes, labels, n_boot, seed)
        low, high = bs.percentile_interval(bs.ratio(rep_num, rep_den), alpha)
        sums = units.groupby("_cohort", sort=False)[[num, den]].sum()
        for k, label in enumerate(labels):
            rows[label].update({
                name: float(bs.ratio(sums.loc[label, num], sums.loc[label, den])),
                f"{name}_low": float(low[k]), f"{name}_high": float(high[k]),
            })
    for label, total in units.groupby("_cohort", sort=False)[["utterances", NEGATIVE_FLIP, WORD_NEGATIVE_FLIPS]].sum().iterrows():
        rows[label].update({k: int(v) for k, v in total.items()})
    return pd.DataFrame(list(rows.values()))

