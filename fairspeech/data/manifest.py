"""Read any supported manifest into one validated, canonical utterance table.

    manifest = read_manifest("data/test.tsv")                     # format from the suffix
    manifest = read_manifest("data/kaldi_dir", hypotheses="decode/hyp.txt")
    manifest = read_manifest("m.csv", columns={"reference": "transcript"}, skip_bad_rows=True)
    manifest.frame        # canonical columns + metadata, one row per utterance
    manifest.exclusions   # {"empty reference": 3, ...}: every excluded row, counted by reason

Bad input raises :class:`ManifestError` naming the file, line and field of the first bad row and
the count of bad rows by reason; with ``skip_bad_rows=True`` those rows are excluded and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from fairspeech.data import schema
from fairspeech.data.readers import FILE_COL, FORMATS, LINE_COL, READERS, ManifestError, _kaldi_map, detect_format, read_kaldi

__all__ = ["Manifest", "ManifestError", "read_manifest", "validate", "FORMATS"]


@dataclass
class Manifest:
    frame: pd.DataFrame
    path: str
    format: str
    exclusions: dict[str, int] = field(default_factory=dict)

    @property
    def excluded_rows(self) -> int:
        return int(sum(self.exclusions.values()))

    def public_frame(self) -> pd.DataFrame:
        """The table without the internal source-location columns."""
        return self.frame.drop(columns=[FILE_COL, LINE_COL], errors="ignore")


def read_manifest(
    path: str | Path,
    format: str | None = None,
    columns: Mapping[str, str] | None = None,
    hypotheses: str | Path | None = None,
    skip_bad_rows: bool = False,
    require_hypothesis: bool = True,
) -> Manifest:
    """Read, map columns (``{canonical: source}``), attach hypotheses, validate.

    ``hypotheses``: a file of ``utt-id words...`` lines (Kaldi style) giving each utterance's
    hypothesis, for formats that carry none (Common Voice, a Kaldi dir, a reference-only CSV).
    ``require_hypothesis=False`` accepts a manifest without hypotheses if it has audio paths, for
    an ASR to transcribe.
    """
    path = Path(path)
    if not path.exists():
        raise ManifestError("no such file or directory", path)
    format = format or detect_format(path)
    if format == "kaldi":
        frame = read_kaldi(path, Path(hypotheses) if hypotheses else None)
        hypotheses = None
    elif format in READERS:
        frame = READERS[format](path)
    else:
        raise ManifestError(f"unknown format {format!r}; choose one of {FORMATS}", path)
    frame = _map_columns(frame, columns or {}, path)
    if hypotheses is not None:
        frame = _attach_hypotheses(frame, Path(hypotheses))
    frame, exclusions = validate(frame, path, skip_bad_rows=skip_bad_rows, require_hypothesis=require_hypothesis)
    return Manifest(frame=frame, path=str(path), format=format, exclusions=exclusions)


def _map_columns(frame: pd.DataFrame, columns: Mapping[str, str], path: Path) -> pd.DataFrame:
    unknown = [c for c in columns if c not in schema.CANONICAL]
    if unknown:
        raise ManifestError(f"column mapping names {unknown}, which are not canonical fields {list(schema.CANONICAL)}", path)
    absent = {canonical: source for canonical, source in columns.items() if source not in frame.columns}
    if absent:
        canonical, source = next(iter(absent.items()))
        raise ManifestError(f"mapped column {source!r} (for {canonical!r}) is not in the file; it has {_visible(frame)}", path, None, source)
    return frame.rename(columns={source: canonical for canonical, source in columns.items()})


def _attach_hypotheses(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    table = _kaldi_map(path, schema.HYPOTHESIS, rest_of_line=True)
    known = set(frame[schema.UTT_ID].astype(str)) if schema.UTT_ID in frame.columns else set()
    unknown = table[~table["key"].isin(known)]
    if len(unknown):
        raise ManifestError(f"hypothesis for unknown utterance {unknown['key'].iloc[0]!r}", path, int(unknown["line"].iloc[0]), schema.UTT_ID)
    frame = frame.copy()
    frame[schema.HYPOTHESIS] = frame[schema.UTT_ID].astype(str).map(dict(zip(table["key"], table[schema.HYPOTHESIS])))
    return frame


def _visible(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in (FILE_COL, LINE_COL)]


def _is_text(series: pd.Series) -> np.ndarray:
    if pd.api.types.infer_dtype(series, skipna=False) == "string":  # the common case, checked in C
        return np.ones(len(series), dtype=bool)
    return series.map(lambda v: isinstance(v, str)).to_numpy(bool)


def _arrow_strings(series: pd.Series):
    """The Arrow array behind a string column with no missing values (pandas' default string storage), else None."""
    import pyarrow as pa

    array = getattr(series.array, "_pa_array", None)
    if array is None or array.null_count or not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return None
    return array


def _blank(series: pd.Series) -> np.ndarray:
    arrow = _arrow_strings(series)
    if arrow is not None:  # the same test as strip() == "" (Arrow's whitespace, as pandas' strip uses), without copies
        import pyarrow.compute as pc

        return pc.or_(pc.utf8_is_space(arrow), pc.equal(pc.utf8_length(arrow), 0)).to_numpy(zero_copy_only=False)
    text = series.where(_is_text(series), "x").astype(str)
    return text.str.strip().eq("").to_numpy(bool)


def validate(
    frame: pd.DataFrame, path: str | Path, skip_bad_rows: bool = False, require_hypothesis: bool = True
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Check a canonical frame; return it cleaned (types fixed) and the exclusions by reason."""
    frame = frame.copy(deep=False)  # columns are replaced, never changed in place: the caller's frame stays as it was
    if FILE_COL not in frame.columns:
        frame[FILE_COL] = str(path)
        frame[LINE_COL] = np.arange(1, len(frame) + 1)
    needed = list(schema.REQUIRED)
    if require_hypothesis or schema.AUDIO_PATH not in frame.columns:
        needed.append(schema.HYPOTHESIS)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        hint = " (map a column with --map FIELD=COLUMN, or give --hyp FILE / --asr)" if schema.HYPOTHESIS in missing else " (map a column with --map FIELD=COLUMN)"
        raise ManifestError(f"missing required column(s) {missing}; the file has {_visible(frame)}{hint}", path, None, missing[0])

    problems: dict[str, tuple[np.ndarray, str]] = {}  # reason -> (bad mask, field)
    for column in (schema.UTT_ID, schema.SPEAKER_ID):
        values = frame[column]
        bad = values.isna().to_numpy() | values.astype(str).str.strip().eq("").to_numpy()
        problems[f"missing {column}"] = (bad, column)
        frame[column] = values.astype(str).str.strip()
    problems["non-text reference"] = (~_is_text(frame[schema.REFERENCE]), schema.REFERENCE)
    problems["empty reference"] = (_blank(frame[schema.REFERENCE]), schema.REFERENCE)
    if schema.HYPOTHESIS in frame.columns:
        hyp = frame[schema.HYPOTHESIS]
        no_hyp = hyp.isna().to_numpy()
        if require_hypothesis:
            problems["missing hypothesis"] = (no_hyp, schema.HYPOTHESIS)
        problems["non-text hypothesis"] = (~no_hyp & ~_is_text(hyp), schema.HYPOTHESIS)
    for column, limit in ((schema.LAT, 90.0), (schema.LON, 180.0)):
        if column in frame.columns:
            values = pd.to_numeric(frame[column].replace("", np.nan), errors="coerce")
            problems[f"missing or non-numeric {column}"] = (values.isna().to_numpy(), column)
            problems[f"out-of-range {column}"] = ((values.abs() > limit).to_numpy(), column)
            frame[column] = values.astype(float)
    if schema.ZIP in frame.columns:
        zips = frame[schema.ZIP].map(_zip5)
        problems["invalid zip"] = (zips.isna().to_numpy(), schema.ZIP)
        frame[schema.ZIP] = zips
    if schema.DURATION in frame.columns:
        durations = pd.to_numeric(frame[schema.DURATION].replace("", np.nan), errors="coerce")
        problems["invalid duration"] = ((durations.isna() | (durations < 0)).to_numpy(), schema.DURATION)
        frame[schema.DURATION] = durations
    duplicated = frame[schema.UTT_ID].duplicated(keep=False).to_numpy()
    problems["duplicate utt_id"] = (duplicated, schema.UTT_ID)
    _blank_attributes_to_missing(frame)

    bad_any = np.zeros(len(frame), dtype=bool)
    exclusions: dict[str, int] = {}
    for reason, (mask, _) in problems.items():
        # A row is counted once, under the first reason it fails.
        new = mask & ~bad_any
        if new.any():
            exclusions[reason] = int(new.sum())
        bad_any |= mask
    if bad_any.any() and not skip_bad_rows:
        reason, (mask, column) = next((r, p) for r, p in problems.items() if p[0].any())
        row = frame[mask].iloc[0]
        value = row[column] if column in row else None
        extra = ""
        if reason == "duplicate utt_id":
            lines = frame.loc[frame[schema.UTT_ID] == row[schema.UTT_ID], LINE_COL].tolist()[:5]
            extra = f" (also on lines {lines})"
        summary = ", ".join(f"{n} {r}" for r, n in exclusions.items())
        raise ManifestError(
            f"{reason}: {value!r}{extra}. Bad rows in all: {summary}. Fix them, or pass --skip-bad-rows to exclude and count them.",
            row[FILE_COL],
            int(row[LINE_COL]),
            column,
        )
    frame = frame[~bad_any].reset_index(drop=True) if bad_any.any() else frame.reset_index(drop=True)
    if schema.HYPOTHESIS in frame.columns and frame[schema.HYPOTHESIS].hasnans:
        frame[schema.HYPOTHESIS] = frame[schema.HYPOTHESIS].where(frame[schema.HYPOTHESIS].notna(), None)
    if len(frame) == 0:
        raise ManifestError(f"no usable rows (excluded: {exclusions})", path)
    return frame, exclusions


# Columns validated and typed above, or not attributes at all; every other column is an attribute.
_NOT_ATTRIBUTES = {schema.UTT_ID, schema.SPEAKER_ID, schema.REFERENCE, schema.HYPOTHESIS, schema.AUDIO_PATH, schema.LAT,
                   schema.LON, schema.ZIP, schema.DURATION, FILE_COL, LINE_COL}


def _blank_attributes_to_missing(frame: pd.DataFrame) -> None:
    """A blank cell ('' or spaces, as CSV writes a missing value) and a null (JSON null, Parquet null)
    are one thing, a missing attribute, so cohort tables give both the one label "(missing)"."""
    for column in frame.columns:
        if column in _NOT_ATTRIBUTES or not (pd.api.types.is_object_dtype(frame[column]) or pd.api.types.is_string_dtype(frame[column])):
            continue
        arrow = _arrow_strings(frame[column])
        if arrow is not None:
            blank = _blank(frame[column])
        else:
            blank = frame[column].astype("string").str.strip().eq("").fillna(False).to_numpy(bool)
        if blank.any():
            frame[column] = frame[column].mask(blank, None)


def _zip5(value) -> str | None:
    """'02139', 2139, '2139', '02139-4307' -> '02139'; anything else -> None."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer()):
        value = str(int(value))
    text = str(value).strip().split("-")[0]
    if not text.isdigit() or len(text) > 5:
        return None
    return text.zfill(5)
