"""The audit job: manifest -> alignment counts -> cohort tables (and discovered cohorts) -> report.

    result = run_audit(read_manifest("test.csv"), by=["gender", "age", "gender*age"], seed=0)
    result.write("out/")   # audit.json, cohorts.csv, report.html, PNG figures, alignments.parquet
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fairspeech import __version__
from fairspeech.data import schema
from fairspeech.data.manifest import Manifest
from fairspeech.data.readers import FILE_COL, LINE_COL, ManifestError
from fairspeech.errors import InputError
from fairspeech.metrics.cohort_frame import CohortFrame
from fairspeech.metrics.normalize import TextNormalizer
from fairspeech.metrics.wer import alignment_counts
from fairspeech.utils import io


def parse_by(specs: str | Sequence[str] | None) -> list[list[str]]:
    """'gender,age,gender*age' -> [['gender'], ['age'], ['gender', 'age']] ('*' marks an intersection)."""
    if specs is None:
        return []
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    parsed = [[part.strip() for part in spec.split("*")] for spec in specs]
    for spec, parts in zip(specs, parsed):
        if not all(parts):
            raise InputError(f"--by {spec.strip()!r}: an empty attribute name around '*'")
        if len(set(parts)) < len(parts):
            raise InputError(f"--by {spec.strip()!r} intersects an attribute with itself; write it once")
    return parsed


@dataclass
class AuditSettings:
    """Every knob of an audit; ``run_audit`` and the Dask engine take these as keyword options."""

    by: list[list[str]] = field(default_factory=list)
    n_boot: int = 1000
    n_permutations: int = 1000
    alpha: float = 0.05
    min_speakers: int = 5
    seed: int = 0
    normalizer: TextNormalizer = field(default_factory=TextNormalizer)
    discover: list[str] = field(default_factory=list)
    # Discovered cohorts need more speakers than reported declared ones: a search over many small
    # cohorts finds noise (k-means picked k=10 with 5-speaker floors on the demo's 160-speaker folds).
    discover_min_speakers: int = 20
    workers: int | None = None

    def __post_init__(self):
        # A bad number here would not fail later, only give silently wrong intervals or p-values.
        if not 0 < self.alpha < 1:
            raise InputError(f"--alpha must be strictly between 0 and 1 (0.05 gives 95% intervals), got {self.alpha}")
        for name in ("n_boot", "n_permutations", "min_speakers", "discover_min_speakers"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")

    @classmethod
    def create(cls, by=None, *, normalizer: TextNormalizer | None = None, discover: Sequence[str] = (), **options) -> "AuditSettings":
        """Settings from user-facing values: ``by`` as 'gender,age,gender*age', no normalizer = the default."""
        return cls(by=parse_by(by), normalizer=normalizer or TextNormalizer(), discover=list(discover), **options)

    def describe(self) -> dict:
        return {
            "by": [" x ".join(spec) for spec in self.by],
            "n_boot": self.n_boot,
            "n_permutations": self.n_permutations,
            "alpha": self.alpha,
            "min_speakers": self.min_speakers,
            "seed": self.seed,
            "normalization": self.normalizer.describe(),
            "discover": self.discover,
            "discover_min_speakers": self.discover_min_speakers,
        }


@dataclass
class AuditResult:
    source: dict  # path, format, engine, exclusions by reason
    settings: AuditSettings
    utterances: pd.DataFrame | None  # the manifest plus alignment counts (None out of core)
    overall: CohortFrame
    tables: list[CohortFrame]
    discovery: object | None = None  # fairspeech.cohorts.discovery.DiscoveryResult
    timings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        exclusions = self.source.get("exclusions", {})
        return {
            "fairspeech_version": __version__,
            "settings": self.settings.describe(),
            "input": {
                **{k: v for k, v in self.source.items() if k != "exclusions"},
                "utterances": int(self.overall.overall["utterances"]),
                "speakers": int(self.overall.overall["speakers"]),
                "excluded_rows": int(sum(exclusions.values())),
                "exclusions": exclusions,
            },
            "overall": self.overall.to_dict()["overall"],
            "cohort_tables": [table.to_dict() for table in self.tables],
            "discovery": self.discovery.to_dict() if self.discovery is not None else None,
            "timings_s": self.timings,
        }

    def cohort_rows(self) -> pd.DataFrame:
        """Every reported cohort of every table, one row each (cohorts.csv)."""
        rows = []
        for table in self.tables:
            for record in table.to_dict()["cohorts"]:
                rows.append({"attribute": table.name, **{k: v for k, v in record.items() if k not in table.by}})
        return pd.DataFrame(rows)

    def write(self, out_dir: str | Path) -> Path:
        from fairspeech.report.html import render_report
        from fairspeech.report.plots import cohort_bars, png_bytes

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        figures = {f"wer_by_{'_x_'.join(t.by)}.png": png_bytes(cohort_bars(t)) for t in self.tables if len(t.by_group)}
        if self.discovery is not None:
            figures.update({f"discovery_{name}.png": png_bytes(fig) for name, fig in self.discovery.figures.items()})
            with io.atomic_path(out / "cohorts.parquet") as tmp:
                self.discovery.assignments.to_parquet(tmp, index=False)
            if getattr(self.discovery, "regions", None) is not None:
                io.write_text(out / "regions.geojson", self.discovery.regions.to_json())
        for name, data in figures.items():
            io.write_bytes(out / name, data)
        data = self.to_dict()
        io.write_json(out / "audit.json", data)
        with io.atomic_path(out / "cohorts.csv") as tmp:
            self.cohort_rows().to_csv(tmp, index=False)
        if self.utterances is not None:
            counts = [schema.UTT_ID, schema.SPEAKER_ID, *schema.COUNT_COLUMNS]
            with io.atomic_path(out / "alignments.parquet") as tmp:
                self.utterances[counts].to_parquet(tmp, index=False)
        io.write_text(out / "report.html", render_report(self, data, figures))
        return out


def score_utterances(
    frame: pd.DataFrame,
    normalizer: TextNormalizer,
    exclusions: dict[str, int],
    *,
    workers: int | None = None,
    skip_bad_rows: bool = False,
    progress: bool = False,
) -> pd.DataFrame:
    """The manifest frame with alignment counts added, one row per utterance.

    A reference that is empty after normalization (only punctuation, say) is an error naming its
    file and line, or, with ``skip_bad_rows``, an excluded row counted in ``exclusions``.
    """
    counts = alignment_counts(
        frame[schema.REFERENCE], frame[schema.HYPOTHESIS].fillna(""), normalizer,
        workers=workers, progress=progress,
    )
    empty = counts[schema.REF_WORDS].to_numpy() == 0
    if empty.any() and not skip_bad_rows:
        row = frame[empty].iloc[0]
        raise ManifestError(
            f"reference is empty after normalization: {row[schema.REFERENCE]!r} ({int(empty.sum())} such rows; "
            "pass --skip-bad-rows to exclude and count them)",
            row.get(FILE_COL), row.get(LINE_COL), schema.REFERENCE,
        )
    utterances = pd.concat([frame.reset_index(drop=True), counts], axis=1)
    if empty.any():
        utterances = utterances[~empty].reset_index(drop=True)
        exclusions["reference empty after normalization"] = exclusions.get("reference empty after normalization", 0) + int(empty.sum())
    return utterances


def speaker_units(scored: pd.DataFrame, attributes: Sequence[str]) -> pd.DataFrame:
    """Counts summed per speaker and combination of ``attributes`` (with n_utterances): one pass over the
    utterances, after which every cohort table works on speakers, not utterances.

    The cohort tables resample exactly these units (a speaker, or a speaker's utterances inside one
    cohort where an attribute varies within a speaker), so their numbers do not change; the Dask
    engine's partitions reduce to the same rows.
    """
    summed = [c for c in (*schema.COUNT_COLUMNS, schema.N_UTTERANCES) if c in scored.columns]
    keys = [schema.SPEAKER_ID, *[a for a in attributes if a != schema.SPEAKER_ID]]
    # Hash each key column once (Arrow's dictionary encoding for string columns), combine the codes into
    # one integer per row, and sum with bincount: ~6x less work than a groupby on the string columns.
    combined, size, uniques = np.zeros(len(scored), dtype=np.int64), 1, []
    for key in keys:
        codes, levels = pd.factorize(scored[key], use_na_sentinel=False)
        if size * max(len(levels), 1) >= 2**62:  # too many combinations for one integer: pandas' groupby
            return _grouped_units(scored, keys, summed)
        combined = combined * max(len(levels), 1) + codes
        size *= max(len(levels), 1)
        uniques.append((codes, levels))
    group, _ = pd.factorize(combined)
    n_groups = int(group.max()) + 1 if len(group) else 0
    first = np.empty(n_groups, dtype=np.int64)
    first[group[::-1]] = np.arange(len(group) - 1, -1, -1)  # each unit's first row (the last write wins)
    units = pd.DataFrame({key: levels.take(codes[first]) for key, (codes, levels) in zip(keys, uniques)})
    for column in summed:
        units[column] = np.bincount(group, weights=scored[column].to_numpy(np.float64), minlength=n_groups).astype(np.int64)
    if schema.N_UTTERANCES not in summed:
        units[schema.N_UTTERANCES] = np.bincount(group, minlength=n_groups).astype(np.int64)
    return units


def _grouped_units(scored: pd.DataFrame, keys: list[str], summed: list[str]) -> pd.DataFrame:
    frame = scored[keys + summed]
    if schema.N_UTTERANCES not in frame.columns:
        frame = frame.assign(**{schema.N_UTTERANCES: np.ones(len(frame), dtype=np.int64)})
        summed = [*summed, schema.N_UTTERANCES]
    return frame.groupby(keys, dropna=False, sort=False, observed=True)[summed].sum().reset_index()


def summarize(
    scored: pd.DataFrame,
    settings: AuditSettings,
    *,
    zip_attributes: pd.DataFrame | None = None,
    embeddings: pd.DataFrame | None = None,
    progress: bool = False,
) -> tuple[CohortFrame, list[CohortFrame], object | None, dict]:
    """Cohort tables and discovery from scored rows (utterances, or pre-summed units with n_utterances)."""
    timings = {}
    start = time.perf_counter()
    common = dict(
        n_boot=settings.n_boot, n_permutations=settings.n_permutations, alpha=settings.alpha,
        min_speakers=settings.min_speakers, seed=settings.seed,
    )
    units = speaker_units(scored, sorted({c for spec in settings.by for c in spec}))
    timings["speaker_sums"] = time.perf_counter() - start
    start = time.perf_counter()
    overall = CohortFrame(units, None, **common)
    tables = [CohortFrame(units, spec, **common) for spec in tqdm(settings.by, desc="cohort tables", disable=not progress)]
    timings["cohort_tables"] = time.perf_counter() - start
    discovery = None
    if settings.discover:
        from fairspeech.cohorts.discovery import run_discovery

        start = time.perf_counter()
        discovery = run_discovery(
            scored, settings.discover, zip_attributes=zip_attributes, embeddings=embeddings, seed=settings.seed,
            n_boot=settings.n_boot, min_speakers=settings.discover_min_speakers, alpha=settings.alpha,
        )
        timings["discovery"] = time.perf_counter() - start
    return overall, tables, discovery, timings


# Columns that identify or measure utterances; a cohort of them is no cohort (speaker_id: every cohort
# would be one speaker, which the speaker bootstrap cannot resample).
NOT_ATTRIBUTES = (schema.SPEAKER_ID, schema.UTT_ID, schema.REFERENCE, schema.HYPOTHESIS, *schema.COUNT_COLUMNS, schema.N_UTTERANCES)
# A numeric --by column with more distinct values than this is an error: bin it first.
MAX_NUMERIC_LEVELS = 20


def check_by_columns(settings: AuditSettings, columns, source: str) -> None:
    named = sorted({c for spec in settings.by for c in spec})
    reserved = [c for c in named if c in NOT_ATTRIBUTES or c.startswith("_")]
    if reserved:
        raise ManifestError(f"--by {reserved[0]!r} is not an attribute: cohorts are groups of speakers, and the intervals and "
                            "p-values resample speakers (per-speaker counts are in alignments.parquet)", source, None, reserved[0])
    unknown = [c for c in named if c not in columns]
    if unknown:
        raise ManifestError(f"--by names {unknown}, not columns of the manifest; it has {[c for c in columns if not c.startswith('_')]}", source, None, unknown[0])


def check_by_values(settings: AuditSettings, frame: pd.DataFrame, source: str) -> None:
    """A numeric attribute with many distinct values (age in years, a duration) would make one tiny cohort
    per value, nearly all suppressed: an error asking to bin it, rather than a table of noise."""
    for column in sorted({c for spec in settings.by for c in spec}):
        levels = pd.Series(frame[column].dropna().unique())  # the distinct values only: fast on millions of rows
        if len(levels) > MAX_NUMERIC_LEVELS and pd.to_numeric(levels, errors="coerce").notna().all():
            raise ManifestError(
                f"--by {column!r} is numeric with {len(levels)} distinct values (at most {MAX_NUMERIC_LEVELS} are audited as "
                f"labels); bin it into a column of ranges (e.g. {column}_band = 18-29, 30-44, ...) and audit that",
                source, None, column,
            )


def run_audit(
    manifest: Manifest,
    by: str | Sequence[str] | None = None,
    *,
    zip_attributes: pd.DataFrame | None = None,
    embeddings: pd.DataFrame | None = None,
    skip_bad_rows: bool = False,
    progress: bool = True,
    **options,
) -> AuditResult:
    """Score every utterance once, then build each cohort table (and discovery) from the counts.

    ``by``: attributes and intersections, e.g. ``"gender,age,gender*age"``; ``options``: the other
    fields of :class:`AuditSettings` (n_boot, n_permutations, alpha, min_speakers, seed, normalizer,
    discover, workers).
    """
    settings = AuditSettings.create(by, **options)
    workers = settings.workers
    check_by_columns(settings, manifest.frame.columns, manifest.path)
    check_by_values(settings, manifest.frame, manifest.path)
    start = time.perf_counter()
    utterances = score_utterances(
        manifest.frame, settings.normalizer, manifest.exclusions, workers=workers, skip_bad_rows=skip_bad_rows, progress=progress
    )
    alignment_s = time.perf_counter() - start
    overall, tables, discovery, timings = summarize(
        utterances, settings, zip_attributes=zip_attributes, embeddings=embeddings, progress=progress
    )
    source = {"path": manifest.path, "format": manifest.format, "engine": "memory", "exclusions": manifest.exclusions}
    return AuditResult(source, settings, utterances, overall, tables, discovery, {"alignment": alignment_s, **timings})
