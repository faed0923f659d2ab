"""GeodemographicPartition: the zip-level attribute whose value best separates high- and low-WER speakers.

Speakers' zip codes are joined to a zip-level attribute table supplied by the user (e.g. census
tables by zip; one row per zip, column ``zip`` plus attributes). Every attribute becomes categories:
a categorical attribute by its values, a numeric one by quantile bins of the fitted speakers' values
(``n_bins=2`` thresholds at the median; edges are learned in ``fit`` and reused by ``predict``); a
missing value is its own category ``(missing)``. Each (attribute, category) gives a candidate binary
partition, "attribute == category" against the rest, kept when both sides have ``min_speakers``
speakers. The partition with the highest ``search.partition_gain`` wins (ties: the one whose named
side has the higher WER, so the category reported is the worse-served one where possible).

Its p-value is a max-statistic permutation test over *all* candidates: speakers' (errors, words)
are shuffled over speakers and the best gain of the whole search is recomputed, so trying many
attributes and values does not make a partition look significant by itself.

Speakers whose zip is missing, malformed, or not in the table are excluded and counted by reason.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fairspeech.cohorts.base import CannotDiscover, CohortDiscoverer, records
from fairspeech.cohorts.search import PermutationTest, membership_gains, permutation_test
from fairspeech.data import schema
from fairspeech.metrics import bootstrap as bs

MISSING_VALUE = "(missing)"
_TIE_TOLERANCE = 1e-9


def normalize_zip(values: pd.Series) -> pd.Series:
    """Five-digit zip strings: 2134, 2134.0, ' 02134', '02134-1234' -> '02134'; <NA> if missing or malformed."""
    text = pd.Series(values).astype("string").str.strip().str.replace(r"\.0+$", "", regex=True)
    digits = text.str.extract(r"^(\d{1,5})(?:-\d{4})?$", expand=False)
    return digits.str.zfill(5).astype("string")


def _format_number(x: float) -> str:
    return f"{x:.6g}"


class GeodemographicPartition(CohortDiscoverer):
    """Best binary partition of speakers by one zip-level attribute value; see the module docstring.

    Learned: ``labels_`` (0 = the named side "attribute == value", 1 = the rest), ``cohorts_``,
    ``partition_`` (attribute, value, gain, test), ``candidates_`` (every candidate partition with
    its WERs and gain), ``bin_edges_`` (numeric attributes), ``p_value_`` (max-statistic).
    """

    method = "geodemo"
    features = (schema.ZIP,)

    def __init__(
        self,
        zip_attributes: pd.DataFrame | None = None,
        attributes: list[str] | None = None,
        n_bins: int = 2,
        min_speakers: int = 20,
        n_permutations: int = 999,
        alpha: float = 0.05,
        seed: int = 0,
    ):
        self.zip_attributes = zip_attributes
        self.attributes = attributes
        self.n_bins = n_bins
        self.min_speakers = min_speakers
        self.n_permutations = n_permutations
        self.alpha = alpha
        self.seed = seed

    # -- the zip table ----------------------------------------------------------------------
    def _table(self) -> pd.DataFrame:
        """The attribute table indexed by normalized zip (built once per parameter set)."""
        if getattr(self, "_table_for", None) is not self.zip_attributes:
            self._table_cache = self._index_table(self.zip_attributes, self.attributes)
            self._table_for = self.zip_attributes
        return self._table_cache

    @staticmethod
    def _index_table(table: pd.DataFrame | None, attributes: list[str] | None) -> pd.DataFrame:
        if table is None:
            raise ValueError("GeodemographicPartition needs zip_attributes: a table with a 'zip' column and attributes")
        if schema.ZIP not in table.columns:
            raise KeyError(f"zip attribute table needs a {schema.ZIP!r} column; have {list(table.columns)}")
        columns = list(attributes) if attributes is not None else [c for c in table.columns if c != schema.ZIP]
        missing = [c for c in columns if c not in table.columns]
        if missing or not columns:
            raise KeyError(f"zip attribute table lacks attributes {missing or columns}; have {list(table.columns)}")
        zips = normalize_zip(table[schema.ZIP])
        if zips.isna().any():
            bad = table.loc[zips.isna().to_numpy(), schema.ZIP].head(3).tolist()
            raise ValueError(f"zip attribute table has malformed zip codes, e.g. {bad}")
        if zips.duplicated().any():
            raise ValueError(f"zip attribute table has duplicate zips, e.g. {zips[zips.duplicated()].head(3).tolist()}")
        return table[columns].set_axis(pd.Index(zips.to_numpy(), name=schema.ZIP))

    def _exclusion_reasons(self, speakers: pd.DataFrame) -> dict[str, np.ndarray]:
        raw = speakers[schema.ZIP]
        zips = normalize_zip(raw)
        missing = raw.isna().to_numpy() | raw.astype("string").str.strip().eq("").fillna(True).to_numpy(bool)
        malformed = ~missing & zips.isna().to_numpy()
        unknown = zips.notna().to_numpy() & ~zips.isin(self._table().index).fillna(False).to_numpy(bool)
        return {"missing_zip": missing, "invalid_zip": malformed, "zip_not_in_table": unknown}

    def _attribute_values(self, speakers: pd.DataFrame) -> pd.DataFrame:
        """Zip attributes of each (usable) speaker, as looked up in the table."""
        return self._table().reindex(normalize_zip(speakers[schema.ZIP]).to_numpy()).set_axis(speakers.index)

    # -- categories -------------------------------------------------------------------------
    def _learn_bins(self, values: pd.DataFrame) -> dict[str, np.ndarray]:
        edges = {}
        for column in values.columns:
            series = values[column]
            if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
                observed = series.dropna().to_numpy(np.float64)
                quantiles = np.arange(1, self.n_bins) / self.n_bins
                edges[column] = np.unique(np.quantile(observed, quantiles)) if len(observed) else np.array([])
        return edges

    def _categories(self, values: pd.DataFrame) -> pd.DataFrame:
        """Each attribute as category labels (strings), numeric ones binned with the learned edges."""
        out = {}
        for column in values.columns:
            if column in self.bin_edges_:
                out[column] = self._bin_labels(values[column], self.bin_edges_[column])
            else:
                out[column] = values[column].astype("string").fillna(MISSING_VALUE)
        return pd.DataFrame(out, index=values.index)

    @staticmethod
    def _bin_labels(series: pd.Series, edges: np.ndarray) -> pd.Series:
        names = [f"<= {_format_number(edges[0])}"] if len(edges) else ["all"]
        names += [f"({_format_number(lo)}, {_format_number(hi)}]" for lo, hi in zip(edges[:-1], edges[1:])]
        names += [f"> {_format_number(edges[-1])}"] if len(edges) else []
        x = series.to_numpy(np.float64)
        labels = np.array(names, dtype=object)[np.searchsorted(edges, np.nan_to_num(x), side="left")]
        labels[np.isnan(x)] = MISSING_VALUE
        return pd.Series(labels, index=series.index, dtype="string")

    # -- fitting ----------------------------------------------------------------------------
    def _fit(self, speakers: pd.DataFrame) -> tuple[np.ndarray, dict[int, str]]:
        values = self._attribute_values(speakers)
        self.bin_edges_ = self._learn_bins(values)
        categories = self._categories(values)
        errors = speakers[schema.ERRORS].to_numpy(np.float64)
        words = speakers[schema.REF_WORDS].to_numpy(np.float64)

        candidates, membership = self._candidates(categories)
        if not len(candidates):
            raise CannotDiscover(f"geodemo: no attribute value splits the speakers into two sides of >= {self.min_speakers}")
        candidates = self._score(candidates, membership, errors, words)
        best = self._choose(candidates)
        self.candidates_ = candidates.sort_values("gain", ascending=False, kind="stable").reset_index(drop=True)
        self.test_: PermutationTest = permutation_test(
            errors,
            words,
            lambda e, w: membership_gains(e, w, membership).max(axis=1),
            self.n_permutations,
            bs.stream(self.seed, "geodemo/max-statistic"),
            self.alpha,
        )
        attribute, value = candidates.at[best, "attribute"], candidates.at[best, "value"]
        self.partition_ = {"attribute": attribute, "value": value, "gain": float(candidates.at[best, "gain"])}
        codes = np.where(categories[attribute].to_numpy() == value, 0, 1)
        named = self._name(attribute, value)
        return codes, {0: named, 1: f"not ({named})"}

    def _candidates(self, categories: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        rows, columns = [], []
        n = len(categories)
        for attribute in categories.columns:
            labels = categories[attribute].to_numpy()
            for value in sorted(set(labels)):
                inside = labels == value
                if self.min_speakers <= inside.sum() <= n - self.min_speakers:
                    rows.append({"attribute": attribute, "value": value, "speakers": int(inside.sum())})
                    columns.append(inside)
        membership = np.column_stack(columns).astype(np.float64) if columns else np.zeros((n, 0))
        return pd.DataFrame(rows), membership

    @staticmethod
    def _score(candidates: pd.DataFrame, membership: np.ndarray, errors: np.ndarray, words: np.ndarray) -> pd.DataFrame:
        e_in, w_in = errors @ membership, words @ membership
        candidates = candidates.copy()
        candidates["wer_value"] = bs.ratio(e_in, w_in)
        candidates["wer_rest"] = bs.ratio(errors.sum() - e_in, words.sum() - w_in)
        candidates["gain"] = membership_gains(errors, words, membership)
        return candidates

    @staticmethod
    def _choose(candidates: pd.DataFrame) -> int:
        """Highest gain; among ties (complementary categories), the one whose named side is worse."""
        gain = candidates["gain"].to_numpy()
        tied = np.flatnonzero(gain >= gain.max() * (1 - _TIE_TOLERANCE))
        worse_named = candidates["wer_value"].to_numpy()[tied] > candidates["wer_rest"].to_numpy()[tied]
        return int(tied[np.argmax(worse_named)]) if worse_named.any() else int(tied[0])

    @staticmethod
    def _name(attribute: str, value: str) -> str:
        is_bin = value.startswith(("<=", ">", "("))
        return f"{attribute} {value}" if is_bin else f"{attribute} = {value}"

    def _predict(self, speakers: pd.DataFrame) -> np.ndarray:
        categories = self._categories(self._attribute_values(speakers)[[self.partition_["attribute"]]])
        return np.where(categories[self.partition_["attribute"]].to_numpy() == self.partition_["value"], 0, 1)

    def _p_value(self) -> float:
        return self.test_.p_value

    def details(self) -> dict:
        return {
            "partition": {**self.partition_, "named_side": self.describe(0), **self.test_.to_dict()},
            "candidates": records(self.candidates_),
            "bin_edges": {k: [float(x) for x in v] for k, v in self.bin_edges_.items()},
        }
