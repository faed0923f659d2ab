"""Cohorts given by an earlier audit: the speaker -> cohort column of its ``cohorts.parquet``.

The audit writes one column per discovery method (``geo``, ``geodemo``, ``embedding``) holding each
speaker's cohort. :class:`AssignedCohorts` reads such a column and behaves like the discovery methods
(same base class), so a mitigation recipe can fine-tune for the cohorts a user already audited:
``fit`` ranks the given cohorts by WER on the speakers it is fitted on, ``predict`` looks speakers up.
Speakers the file does not name are excluded and counted (``excluded_["not_in_assignments"]``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fairspeech.cohorts.base import CohortDiscoverer
from fairspeech.data import schema

NOT_ASSIGNED = "not_in_assignments"


def read_assignments(path: str | Path, column: str) -> pd.Series:
    """speaker_id -> cohort label (str) from an audit's cohorts.parquet; speakers without a cohort are left out."""
    frame = pd.read_parquet(path)
    missing = [c for c in (schema.SPEAKER_ID, column) if c not in frame.columns]
    if missing:
        raise KeyError(f"{path}: no column(s) {missing}; have {list(frame.columns)}")
    duplicated = frame[schema.SPEAKER_ID][frame[schema.SPEAKER_ID].duplicated()]
    if len(duplicated):
        raise ValueError(f"{path}: speaker {duplicated.iloc[0]!r} appears more than once (row {int(duplicated.index[0])})")
    frame = frame[frame[column].notna()]
    return pd.Series(frame[column].astype(str).to_numpy(), index=frame[schema.SPEAKER_ID].astype(str), name=column)


class AssignedCohorts(CohortDiscoverer):
    """Cohorts read from an audit's assignments; see the module docstring.

    Parameters: ``path`` (a cohorts.parquet), ``column`` (its method column), ``min_speakers``,
    ``alpha`` (unused: given cohorts have no search to test, ``p_value_`` is NaN).
    Learned (besides the base class's): ``names_`` (cohort code -> the file's label).
    """

    method = "assigned"

    def __init__(self, path: str | Path = "cohorts.parquet", column: str = "embedding", min_speakers: int = 20, alpha: float = 0.05):
        self.path = path
        self.column = column
        self.min_speakers = min_speakers
        self.alpha = alpha

    def _given(self) -> pd.Series:
        if not hasattr(self, "_given_cache"):
            self._given_cache = read_assignments(self.path, self.column)
        return self._given_cache

    def _exclusion_reasons(self, speakers: pd.DataFrame) -> dict[str, np.ndarray]:
        return {NOT_ASSIGNED: ~speakers.index.astype(str).isin(self._given().index)}

    def _fit(self, speakers: pd.DataFrame) -> tuple[np.ndarray, dict[int, str]]:
        labels = self._given().reindex(speakers.index.astype(str)).to_numpy()
        self.names_ = dict(enumerate(sorted(set(labels))))
        return self._codes(labels), {code: f"{self.column} = {name}" for code, name in self.names_.items()}

    def _predict(self, speakers: pd.DataFrame) -> np.ndarray:
        labels = self._given().reindex(speakers.index.astype(str)).to_numpy()
        unknown = sorted(set(labels) - set(self.names_.values()))
        if unknown:
            raise ValueError(f"{self.path}: cohort(s) {unknown} have no speaker among those the model was fitted on")
        return self._codes(labels)

    def _codes(self, labels: np.ndarray) -> np.ndarray:
        code_of = {name: code for code, name in self.names_.items()}
        return np.array([code_of[label] for label in labels], dtype=np.int64)

    def _p_value(self) -> float:
        return float("nan")
