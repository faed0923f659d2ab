"""Entry point of cohort discovery for the audit: ``run_discovery(utterances, methods, ...)``.

    result = run_discovery(utterances, "geo,geodemo,embedding", zip_attributes=table, embeddings=emb, seed=0)
    result.comparison      # the methods side by side (gap %, honest gap %, bottom shares %, p-value)
    result.agreement       # pairwise adjusted Rand index of the speaker assignments
    result.assignments     # speaker_id, <method>, <method>_is_bottom: written as cohorts.parquet
    result.regions         # GeoDataFrame of the geographic regions (or None)
    result.figures         # name -> matplotlib Figure
    result.to_dict()       # JSON-ready: per method cohorts, gaps, shares, params, exclusions, definitions

Per-method parameters go in keyword dicts named after the method, e.g. ``geo={"max_regions": 6}``,
``embedding={"k": 8}``, ``geodemo={"n_bins": 4}``; they override the shared ``seed``,
``min_speakers``, ``alpha`` and ``n_permutations``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import geopandas as gpd
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fairspeech.cohorts.base import CohortDiscoverer, plain, records
from fairspeech.cohorts.embedding import EMBEDDING_LIST_COLUMN, EMBEDDING_PREFIX, EmbeddingKMeans, expand_embedding_lists
from fairspeech.cohorts.figures import cohort_bars, region_map
from fairspeech.cohorts.geo_tree import GeoClusteringTree
from fairspeech.cohorts.geodemographic import GeodemographicPartition
from fairspeech.cohorts.report import DEFINITIONS, MethodReport, agreement, assignments, comparison_table, method_report
from fairspeech.data import schema
from fairspeech.data.speakers import speaker_table

METHODS: dict[str, type[CohortDiscoverer]] = {
    GeoClusteringTree.method: GeoClusteringTree,
    GeodemographicPartition.method: GeodemographicPartition,
    EmbeddingKMeans.method: EmbeddingKMeans,
}
DEFAULT_MIN_SPEAKERS = 20


def parse_methods(methods: str | Iterable[str]) -> list[str]:
    """'geo,embedding' or ['geo', 'embedding'] -> validated, de-duplicated names in the given order."""
    names = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods) if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise ValueError(f"unknown discovery methods {unknown or names}; choose from {list(METHODS)}")
    return list(dict.fromkeys(names))


def speaker_frame(utterances: pd.DataFrame, methods: list[str], embeddings: pd.DataFrame | None = None) -> pd.DataFrame:
    """Speaker-level frame with the features the methods need (lat/lon, zip, ``emb_*`` columns)."""
    needed = {"geo": [schema.LAT, schema.LON], "geodemo": [schema.ZIP]}
    attributes = [c for m in methods for c in needed.get(m, [])]
    absent = [c for c in attributes if c not in utterances.columns]
    if absent:
        raise ValueError(f"discovery methods {methods} need manifest columns {absent}; have {list(utterances.columns)}")
    speakers = speaker_table(utterances, attributes)
    if "embedding" in methods:
        speakers = speakers.join(_speaker_embeddings(utterances, embeddings))
    return speakers


def _speaker_embeddings(utterances: pd.DataFrame, embeddings: pd.DataFrame | None) -> pd.DataFrame:
    """``emb_*`` columns per speaker, from the given table or from the manifest's embedding column.

    Per-utterance vectors in the manifest are averaged per speaker (the usual speaker d-vector); for a
    speaker-level column this is the vector itself. Speakers without a vector get NaN (excluded later).
    """
    if embeddings is not None:
        return _embedding_table(embeddings)
    if EMBEDDING_LIST_COLUMN not in utterances.columns:
        raise ValueError("the embedding method needs `embeddings` (speaker_id -> vector) or an 'embedding' manifest column")
    vectors = expand_embedding_lists(utterances[EMBEDDING_LIST_COLUMN].reset_index(drop=True))
    return vectors.groupby(utterances[schema.SPEAKER_ID].to_numpy()).mean()


def _embedding_table(embeddings: pd.DataFrame) -> pd.DataFrame:
    """A user's speaker embeddings as ``emb_*`` columns indexed by speaker_id.

    Accepts one column per dimension or a single column of vectors (as the demo's
    speaker_embeddings.parquet stores them), with speaker_id as the index or as a column.
    """
    table = embeddings.set_index(schema.SPEAKER_ID) if schema.SPEAKER_ID in embeddings.columns else embeddings
    if not table.index.is_unique:
        raise ValueError("embeddings must have one row per speaker_id; speaker ids repeat")
    if table.shape[1] == 1 and table.iloc[:, 0].dtype == object:
        table = expand_embedding_lists(table.iloc[:, 0])
    else:
        table = table.set_axis([f"{EMBEDDING_PREFIX}{i:03d}" for i in range(table.shape[1])], axis=1)
    return table.rename_axis(schema.SPEAKER_ID)


def build_model(name: str, *, seed: int, min_speakers: int, alpha: float, n_permutations: int | None, zip_attributes, params: dict) -> CohortDiscoverer:
    shared = {"seed": seed, "min_speakers": min_speakers, "alpha": alpha}
    if n_permutations is not None:
        shared["n_permutations"] = n_permutations
    if name == GeodemographicPartition.method:
        if zip_attributes is None:
            raise ValueError("the geodemo method needs zip_attributes: a table with a 'zip' column and zip-level attributes")
        shared["zip_attributes"] = zip_attributes
    return METHODS[name](**{**shared, **params})


@dataclass
class DiscoveryResult:
    """What ``run_discovery`` found; see the module docstring."""

    reports: dict[str, MethodReport]
    comparison: pd.DataFrame
    agreement: pd.DataFrame
    bottom_overlap: pd.DataFrame
    assignments: pd.DataFrame
    regions: gpd.GeoDataFrame | None
    figures: dict[str, Figure]
    settings: dict

    def to_dict(self) -> dict:
        regions = None if self.regions is None else records(pd.DataFrame(self.regions.drop(columns="geometry")), index="cohort")
        return {
            "settings": plain(self.settings),
            "definitions": DEFINITIONS,
            "methods": {name: report.to_dict() for name, report in self.reports.items()},
            "comparison": records(self.comparison),
            "agreement": {
                "adjusted_rand_index": plain(self.agreement.to_dict()),
                "bottom_cohort_jaccard": plain(self.bottom_overlap.to_dict()),
            },
            "regions": regions,
        }

    def markdown(self) -> str:
        """The side-by-side table as Markdown (for the README and the report)."""
        lines = [
            "| method | bottom cohort | WER gap % [95% CI] | honest gap % [95% CI] | gap vs rest %: in-sample / honest "
            "| bottom share of speakers % | of utterances % | p-value |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for _, row in self.comparison.iterrows():
            lines.append(
                f"| {row['method']} | {row['bottom_cohort'] if isinstance(row['bottom_cohort'], str) else '(none)'} "
                f"| {_num(row['wer_gap_pct'])} [{_num(row['wer_gap_low_pct'])}, {_num(row['wer_gap_high_pct'])}] "
                f"| {_num(row['honest_gap_pct'])} [{_num(row['honest_gap_low_pct'])}, {_num(row['honest_gap_high_pct'])}] "
                f"| {_num(row['gap_vs_rest_pct'])} / {_num(row['honest_gap_vs_rest_pct'])} "
                f"| {_num(row['bottom_share_speakers_pct'])} | {_num(row['bottom_share_utterances_pct'])} "
                f"| {_num(row['p_value'], '.3f')} |"
            )
        return "\n".join(lines)

    def save(self, directory: str | Path) -> dict[str, Path]:
        """Write cohorts.parquet, discovery.json, regions.geojson (if any) and one PNG per figure."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = {"assignments": directory / "cohorts.parquet", "json": directory / "discovery.json"}
        self.assignments.to_parquet(paths["assignments"], index=False)
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False))
        if self.regions is not None:
            paths["regions"] = directory / "regions.geojson"
            self.regions.to_file(paths["regions"], driver="GeoJSON")
        for name, figure in self.figures.items():
            paths[name] = directory / f"{name}.png"
            figure.savefig(paths[name], dpi=120)
        return paths


def _num(value, spec: str = ".1f") -> str:
    return "n/a" if value is None or not np.isfinite(value) else format(value, spec)


def run_discovery(
    utterances: pd.DataFrame,
    methods: str | Iterable[str] = ("geo", "geodemo", "embedding"),
    *,
    zip_attributes: pd.DataFrame | None = None,
    embeddings: pd.DataFrame | None = None,
    seed: int = 0,
    n_boot: int = 1000,
    min_speakers: int = DEFAULT_MIN_SPEAKERS,
    alpha: float = 0.05,
    n_permutations: int | None = None,
    make_figures: bool = True,
    **method_params: dict,
) -> DiscoveryResult:
    """Discover under-served cohorts with each method and report them side by side.

    ``utterances``: canonical per-utterance frame with ``errors``/``ref_words`` (from
    ``metrics.wer.alignment_counts``) and the columns the methods need: lat/lon (geo), zip (geodemo).
    ``embeddings``: speaker_id-indexed table, one column per dimension (None: the manifest's
    ``embedding`` column). ``n_permutations``: None keeps each method's default.
    """
    names = parse_methods(methods)
    unknown = set(method_params) - set(METHODS)
    if unknown:
        raise TypeError(f"unexpected keyword arguments {sorted(unknown)}; per-method parameters go in dicts named {list(METHODS)}")
    speakers = speaker_frame(utterances, names, embeddings)
    reports = {}
    for name in names:
        model = build_model(name, seed=seed, min_speakers=min_speakers, alpha=alpha, n_permutations=n_permutations,
                            zip_attributes=zip_attributes, params=method_params.get(name, {}))
        reports[name] = method_report(model, speakers, n_boot=n_boot, seed=seed, alpha=alpha)
    assignment_frame = assignments(reports, speakers.index)
    ari, overlap = agreement(assignment_frame, names)
    settings = {
        "methods": names, "seed": seed, "n_boot": n_boot, "min_speakers": min_speakers, "alpha": alpha,
        "n_permutations": n_permutations, "speakers": len(speakers), "utterances": int(speakers["utterances"].sum()),
    }
    return DiscoveryResult(
        reports=reports,
        comparison=comparison_table(reports),
        agreement=ari,
        bottom_overlap=overlap,
        assignments=assignment_frame,
        regions=_regions(reports.get(GeoClusteringTree.method)),
        figures=_figures(reports, seed) if make_figures else {},
        settings=settings,
    )


def _regions(report: MethodReport | None) -> gpd.GeoDataFrame | None:
    """The tree's region polygons with the reported WER intervals joined on."""
    if report is None or report.model is None:
        return None
    regions = report.model.regions_
    return regions.join(report.cohorts[["wer_low", "wer_high"]])


def _figures(reports: dict[str, MethodReport], seed: int) -> dict[str, Figure]:
    figures = {}
    for name, report in reports.items():
        model = report.model
        if model is None:
            continue
        p = "n/a" if np.isnan(model.p_value_) else f"{model.p_value_:.3f}"
        if name == GeoClusteringTree.method:
            figures["geo_regions"] = region_map(
                _regions(report), model.fitted_points_, title=f"WER by region: {len(model.cohorts_)} regions, p = {p}", seed=seed
            )
        elif name == EmbeddingKMeans.method:
            figures["embedding_clusters"] = cohort_bars(report.cohorts, title=f"WER by speaker-embedding cluster (k = {model.k_}, p = {p})")
        elif name == GeodemographicPartition.method:
            figures["geodemo_partition"] = cohort_bars(report.cohorts, title=f"Geodemographic partition (p = {p})")
    return figures
