"""Speaker-level view of an utterance table: summed counts plus the speaker's own attributes."""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from fairspeech.data import schema


def speaker_table(utterances: pd.DataFrame, attributes: Sequence[str] = (), speaker: str = schema.SPEAKER_ID) -> pd.DataFrame:
    """One row per speaker (index ``speaker``): errors, ref_words, utterances and ``attributes``.

    Attributes must be speaker-level (home location, gender, ...): a speaker whose rows disagree on
    one raises an error naming the speaker and field, since picking one value would hide a data bug.
    """
    grouped = utterances.groupby(speaker, sort=True)
    table = grouped[[schema.ERRORS, schema.REF_WORDS]].sum()
    if schema.N_UTTERANCES in utterances.columns:  # rows pre-aggregated by the out-of-core engine
        table["utterances"] = grouped[schema.N_UTTERANCES].sum()
    else:
        table["utterances"] = grouped.size()
    for column in attributes:
        if column not in utterances.columns:
            raise KeyError(f"speaker attribute {column!r} is not a manifest column; have {list(utterances.columns)}")
        distinct = grouped[column].nunique(dropna=True)
        conflicting = distinct[distinct > 1]
        if len(conflicting):
            who = conflicting.index[0]
            values = utterances.loc[utterances[speaker] == who, column].dropna().unique()[:5].tolist()
            raise ValueError(
                f"field {column!r} must be constant per speaker, but speaker {who!r} has {values} "
                f"({len(conflicting)} speakers disagree)"
            )
        table[column] = grouped[column].first()
    return table
