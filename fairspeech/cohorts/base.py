"""What every discovery method shares: the speaker frame it takes, exclusions, the cohort table, roles.

A method is a scikit-learn style estimator (parameters in ``__init__``, no work there) over a
speaker-level frame: index speaker_id, columns errors, ref_words, utterances, plus the method's own
features (lat/lon, zip, embedding columns). A subclass supplies

- ``_exclusion_reasons(speakers)``: ordered {reason: bool mask} of speakers it cannot use;
- ``_fit(speakers)``: learn from the usable speakers, return their cohort codes (ints) and a
  description per cohort;
- ``_predict(speakers)``: cohort codes of usable speakers from what was learned;
- ``_p_value()``: after fitting, the method's search-aware permutation p-value for its bottom
  cohort (NaN when untested);

and the base class turns those into ``labels_`` (nullable Int64 per speaker, <NA> when excluded),
``cohorts_`` (one row per cohort, ranked by WER), ``bottom_cohort_``/``top_cohort_``, ``excluded_``
(speaker counts by reason), ``significant_`` (p_value_ <= alpha; None when untested) and the roles
used by the gap report.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from fairspeech.data import schema
from fairspeech.metrics import bootstrap as bs

UTTERANCES = "utterances"
SPEAKER_COLUMNS = (schema.ERRORS, schema.REF_WORDS, UTTERANCES)

BOTTOM, TOP, MIDDLE = "bottom", "top", "middle"
NO_WORDS = "no_reference_words"


def plain(value):
    """JSON-ready copy: numpy scalars to Python, NaN/NA to None, containers recursively."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    return value


def records(frame: pd.DataFrame, index: str | None = None) -> list[dict]:
    """Rows of a frame as JSON-ready dicts (the index as column ``index`` when named)."""
    if index is not None:
        frame = frame.rename_axis(index).reset_index()
    return [plain(row) for row in frame.to_dict(orient="records")]


class CannotDiscover(ValueError):
    """The data cannot support the method (e.g. fewer usable speakers than two cohorts of min_speakers)."""


def check_speakers(speakers: pd.DataFrame, features: tuple[str, ...] = ()) -> None:
    missing = [c for c in SPEAKER_COLUMNS + tuple(features) if c not in speakers.columns]
    if missing:
        raise KeyError(f"speaker frame needs columns {missing}; have {list(speakers.columns)}")
    if not speakers.index.is_unique:
        raise ValueError("speaker frame index (speaker_id) has duplicates")


def cohort_counts(speakers: pd.DataFrame, codes: np.ndarray, descriptions: dict[int, str]) -> pd.DataFrame:
    """Speakers, utterances, errors, words and WER per cohort code, with WER rank (1 = worst)."""
    codes = np.asarray(codes, dtype=np.int64)
    ids = np.array(sorted(descriptions), dtype=np.int64)
    k = int(ids.max()) + 1 if len(ids) else 0

    def total(column: str) -> np.ndarray:
        return np.bincount(codes, weights=speakers[column].to_numpy(np.float64), minlength=k)[ids]

    table = pd.DataFrame(
        {
            "description": [descriptions[i] for i in ids],
            "speakers": np.bincount(codes, minlength=k)[ids],
            UTTERANCES: total(UTTERANCES).astype(np.int64),
            schema.ERRORS: total(schema.ERRORS).astype(np.int64),
            schema.REF_WORDS: total(schema.REF_WORDS).astype(np.int64),
        },
        index=pd.Index(ids, name="cohort"),
    )
    table["wer"] = bs.ratio(table[schema.ERRORS], table[schema.REF_WORDS])
    # Stable ranking: ties in WER keep cohort order, so the same data always ranks the same way.
    table["rank"] = table["wer"].rank(ascending=False, method="first").astype(np.int64)
    return table


def assign_roles(cohorts: pd.DataFrame, min_speakers: int) -> tuple[int | None, int | None]:
    """Bottom (highest WER) and top (lowest WER) cohort among those with >= min_speakers speakers."""
    eligible = cohorts[(cohorts["speakers"] >= min_speakers) & cohorts["wer"].notna()]
    if len(eligible) < 2:
        return None, None
    ranked = eligible.sort_values(["wer"], ascending=False, kind="stable")
    return int(ranked.index[0]), int(ranked.index[-1])


class CohortDiscoverer(BaseEstimator):
    """Base class of the discovery methods; see the module docstring."""

    #: short name used in reports and assignment columns
    method = "base"
    #: feature columns the speaker frame must have
    features: tuple[str, ...] = ()

    # -- to implement ------------------------------------------------------------------------
    def _exclusion_reasons(self, speakers: pd.DataFrame) -> dict[str, np.ndarray]:
        return {}

    def _fit(self, speakers: pd.DataFrame) -> tuple[np.ndarray, dict[int, str]]:
        raise NotImplementedError

    def _predict(self, speakers: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def _p_value(self) -> float:
        raise NotImplementedError

    def details(self) -> dict:
        """Method-specific results, JSON-ready (splits, chosen partition, chosen k...)."""
        return {}

    # -- shared ------------------------------------------------------------------------------
    def exclusions(self, speakers: pd.DataFrame) -> pd.Series:
        """Per speaker, the first reason the method cannot use it, or <NA>."""
        check_speakers(speakers, self.features)
        reason = np.full(len(speakers), None, dtype=object)
        unassigned = np.ones(len(speakers), dtype=bool)
        checks = {NO_WORDS: speakers[schema.REF_WORDS].to_numpy(np.float64) <= 0}
        checks.update(self._exclusion_reasons(speakers))
        for name, mask in checks.items():
            hit = unassigned & np.asarray(mask, dtype=bool)
            reason[hit] = name
            unassigned &= ~hit
        return pd.Series(reason, index=speakers.index, dtype="string")

    def usable(self, speakers: pd.DataFrame) -> np.ndarray:
        return self.exclusions(speakers).isna().to_numpy()

    def fit(self, speakers: pd.DataFrame, y=None):
        reasons = self.exclusions(speakers)
        usable = reasons.isna().to_numpy()
        self.excluded_ = {str(k): int(v) for k, v in reasons.value_counts(sort=False).sort_index().items()}
        self.n_speakers_ = int(usable.sum())
        if self.n_speakers_ < 2 * self.min_speakers:
            raise CannotDiscover(
                f"{self.method}: {self.n_speakers_} usable speakers, fewer than 2 x min_speakers "
                f"({self.min_speakers}); excluded: {self.excluded_}"
            )
        fitted = speakers[usable]
        codes, descriptions = self._fit(fitted)
        self.labels_ = self._labels(speakers.index, usable, codes)
        self.cohorts_ = cohort_counts(fitted, codes, descriptions)
        self.bottom_cohort_, self.top_cohort_ = assign_roles(self.cohorts_, self.min_speakers)
        self.cohorts_["role"] = self.roles(pd.Series(self.cohorts_.index, index=self.cohorts_.index))
        self.p_value_ = float(self._p_value())
        self.significant_ = None if np.isnan(self.p_value_) else bool(self.p_value_ <= self.alpha)
        return self

    def predict(self, speakers: pd.DataFrame) -> pd.Series:
        """Cohort of each speaker under the fitted model (nullable Int64, <NA> when excluded)."""
        if not hasattr(self, "cohorts_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit first")
        usable = self.usable(speakers)
        return self._labels(speakers.index, usable, self._predict(speakers[usable]))

    def fit_predict(self, speakers: pd.DataFrame, y=None) -> pd.Series:
        return self.fit(speakers).labels_

    def roles(self, labels: pd.Series) -> pd.Series:
        """'bottom', 'top' or 'middle' for each cohort label under this fit; <NA> stays <NA>."""
        out = pd.Series(MIDDLE, index=labels.index, dtype="string")
        out[labels.isna().to_numpy()] = pd.NA
        if self.bottom_cohort_ is not None:
            out[(labels == self.bottom_cohort_).fillna(False).to_numpy(bool)] = BOTTOM
            out[(labels == self.top_cohort_).fillna(False).to_numpy(bool)] = TOP
        return out

    def describe(self, cohort: int | None) -> str | None:
        return None if cohort is None else str(self.cohorts_.at[cohort, "description"])

    @staticmethod
    def _labels(index: pd.Index, usable: np.ndarray, codes: np.ndarray) -> pd.Series:
        labels = pd.Series(pd.NA, index=index, dtype="Int64", name="cohort")
        labels[usable] = np.asarray(codes, dtype=np.int64)
        return labels
