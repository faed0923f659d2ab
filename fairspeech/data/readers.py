"""Format readers: each turns one on-disk format into a raw frame with canonical column names.

Every reader adds ``_file`` and ``_line`` (1-based *physical* line in that file, where a row starts,
so a quoted newline inside a CSV field does not shift later rows; the row number for Parquet) so
validation errors can name where a bad value came from. Columns other than the canonical ones are
kept as metadata under their own names. Text files must be UTF-8 (a leading BOM is dropped); an
empty file, bytes that are not UTF-8, a ragged row and a malformed Parquet file are errors naming
the file, line and field.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path, PurePath

import numpy as np
import pandas as pd

from fairspeech.data import schema
from fairspeech.errors import InputError

FILE_COL = "_file"
LINE_COL = "_line"


class ManifestError(InputError):
    """Bad input, with the file, line and field it was found at."""

    def __init__(self, message: str, file: str | Path | None = None, line: int | None = None, field: str | None = None):
        where = ", ".join(
            part for part in (f"file {file}" if file else "", f"line {line}" if line else "", f"field {field!r}" if field else "") if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.message = message
        self.file, self.line, self.field = (str(file) if file else None), line, field

    def __reduce__(self):
        # Keep file/line/field when the error crosses a process boundary (Dask workers).
        return (type(self), (self.message, self.file, self.line, self.field))


def _tag(frame: pd.DataFrame, path: Path, lines) -> pd.DataFrame:
    # One category, not one string per row: 10 million rows of a path would take ~0.5 GB.
    frame[FILE_COL] = pd.Categorical.from_codes(np.zeros(len(frame), dtype=np.int8), categories=[str(path)])
    frame[LINE_COL] = lines
    return frame


def read_text(path: Path, sep: str | None = None) -> str:
    """A text file's contents: UTF-8 with any leading BOM dropped.

    An empty file, or bytes that are not UTF-8 (Latin-1, say), is a :class:`ManifestError` naming the
    physical line and, for a delimited file (``sep``; None for Kaldi's ``key value``), the field.
    """
    data = Path(path).read_bytes()
    if not data.strip():
        raise ManifestError("empty file", path, 1)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line_start = data.rfind(b"\n", 0, error.start) + 1
        line = data.count(b"\n", 0, error.start) + 1
        prefix = data[line_start:error.start]
        if sep is None:  # Kaldi: the id, then the value
            parts = prefix.split(maxsplit=1)
            field = "id" if len(parts) == 0 or (len(parts) == 1 and not prefix[-1:].isspace()) else "value"
        else:
            first_line = data.split(b"\n", 1)[0]
            header = first_line.decode("utf-8", "replace").lstrip("\ufeff").rstrip("\r").split(sep)
            index = prefix.count(sep.encode())
            field = "(header)" if line == 1 else header[index] if index < len(header) else f"#{index + 1}"
        raise ManifestError(
            f"not UTF-8: byte 0x{data[error.start]:02x} at byte {error.start - line_start + 1} of the line "
            "(Latin-1 or another legacy encoding?); convert the file, e.g. with iconv -f latin1 -t utf-8",
            path, line, field,
        ) from None
    return text.removeprefix("\ufeff")


def _string_table(path: Path, sep: str) -> pd.DataFrame:
    """A delimited file with a header; every field is text, so ids and zip codes keep leading zeros."""
    text = read_text(path, sep)
    kind = "TSV" if sep == "\t" else "CSV"
    # The csv module refuses fields over 128 KiB by default; a long-form transcript can be longer.
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    # TSV is read unquoted (a '"' is part of the text), CSV with standard quoting.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quoting=csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL, strict=True)
    header, header_line, rows, lines, last = None, 0, [], [], 0
    try:
        for record in reader:
            # The row starts on the physical line after the previous row ended.
            start, last = last + 1, reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):  # a blank line
                continue
            if header is None:
                header, header_line = record, start
            else:
                rows.append(record)
                lines.append(start)
    except csv.Error as error:
        raise ManifestError(f"malformed {kind} ({error})", path, reader.line_num) from None
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise ManifestError(f"duplicate column name(s) {duplicated} in the header", path, header_line, duplicated[0])
    if not rows:
        raise ManifestError("no data rows below the header", path, header_line)
    _check_widths(rows, lines, header, path, sep)
    return _tag(pd.DataFrame(rows, columns=header, dtype=str), path, lines)


def _check_widths(rows: list[list[str]], lines: list[int], header: list[str], path: Path, sep: str) -> None:
    """Every row must have as many fields as the header; otherwise values would land in the wrong columns."""
    width = len(header)
    widths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    ragged = np.flatnonzero(widths != width)
    if not ragged.size:
        return
    first = int(ragged[0])
    if ragged.size == len(rows) and (widths == width + 1).all() and all(row[-1] == "" for row in rows):
        raise ManifestError(
            f"every data row has {width + 1} fields, the last one empty, but the header names {width}: a trailing "
            f"{sep!r} on every row, which would shift every column by one. Remove it (or name the extra column in the header)",
            path, lines[0], f"#{width + 1} (no header)",
        )
    n = len(rows[first])
    where = f"first missing column {header[n]!r}" if n < width else f"an unquoted {sep!r} inside a value?"
    raise ManifestError(
        f"ragged row: {n} fields where the header has {width} ({where}); {ragged.size} such row(s) in all",
        path, lines[first], header[n] if n < width else f"#{width + 1} (no header)",
    )


def read_csv(path: Path) -> pd.DataFrame:
    return _string_table(path, ",")


def read_tsv(path: Path) -> pd.DataFrame:
    return _string_table(path, "\t")


def read_jsonl(path: Path) -> pd.DataFrame:
    records, lines = [], []
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ManifestError(f"not valid JSON ({error.msg})", path, number) from None
        if not isinstance(record, dict):
            raise ManifestError("each line must be a JSON object", path, number)
        records.append(record)
        lines.append(number)
    frame = pd.DataFrame.from_records(records)
    frame[FILE_COL] = str(path)
    frame[LINE_COL] = lines
    return frame


def parquet_files(path: Path) -> list[Path]:
    """A Parquet file, or every ``*.parquet`` under a directory (a partitioned data set), in a stable order."""
    path = Path(path)
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise ManifestError("no .parquet files found", path)
    return files


def read_parquet(path: Path) -> pd.DataFrame:
    """One Parquet file, or a directory of partitions; rows keep their own file and row number."""
    frames = []
    for file in parquet_files(path):
        frame = _parquet_frame(file)
        frames.append(_tag(frame, file, np.arange(1, len(frame) + 1)))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def parquet_file(file: Path):
    """``pyarrow.parquet.ParquetFile(file)``; a file that is not Parquet (a CSV under a .parquet name) is a ManifestError."""
    import pyarrow
    import pyarrow.parquet as pq

    if Path(file).stat().st_size == 0:
        raise ManifestError("empty file", file)
    try:
        return pq.ParquetFile(file)
    except pyarrow.ArrowException as error:
        raise ManifestError(f"not a readable Parquet file ({error}); is it CSV or another format under a .parquet name? "
                            "Pass --format, or rename it", file) from None


def _parquet_frame(file: Path) -> pd.DataFrame:
    parquet_file(file)  # its footer, checked: a clear error for a file that is not Parquet
    return pd.read_parquet(file)


def utt_ids_from_paths(paths: pd.Series) -> pd.Series:
    """Audio paths -> utterance ids: each path relative to the folder all of them share, without its suffix.

    Per-speaker folders keep their files apart (``a/x.wav`` -> ``a/x``, ``b/x.wav`` -> ``b/x``); files
    in one folder get their stem. A value that is not a path (missing) stays missing.
    """
    pure = {p: PurePath(p) for p in paths if isinstance(p, str)}
    try:
        root = os.path.commonpath([str(p.parent) for p in pure.values()]) if pure else ""
    except ValueError:  # absolute and relative paths mixed: nothing is shared
        root = ""
    ids = {p: (path.parent.relative_to(root) if root else path.parent).joinpath(path.stem).as_posix() for p, path in pure.items()}
    return paths.map(lambda p: ids.get(p) if isinstance(p, str) else None)


def read_nemo(path: Path) -> pd.DataFrame:
    """NeMo manifest: audio_filepath, text, pred_text, duration; extra keys become metadata.

    NeMo has no utterance id: ``utt_id`` if the manifest has one, else the audio path relative to the
    folder all audio paths share, without its suffix (:func:`utt_ids_from_paths`).
    """
    frame = read_jsonl(path).rename(
        columns={"audio_filepath": schema.AUDIO_PATH, "text": schema.REFERENCE, "pred_text": schema.HYPOTHESIS}
    )
    if schema.UTT_ID not in frame.columns and schema.AUDIO_PATH in frame.columns:
        frame[schema.UTT_ID] = utt_ids_from_paths(frame[schema.AUDIO_PATH])
    if schema.SPEAKER_ID not in frame.columns and "speaker" in frame.columns:
        frame = frame.rename(columns={"speaker": schema.SPEAKER_ID})
    return frame


def read_common_voice(path: Path) -> pd.DataFrame:
    """Common Voice TSV: client_id is the speaker, sentence the reference, path the clip (its stem the id)."""
    frame = read_tsv(path).rename(
        columns={"client_id": schema.SPEAKER_ID, "sentence": schema.REFERENCE, "path": schema.AUDIO_PATH}
    )
    if "accents" in frame.columns and schema.ACCENT not in frame.columns:
        frame = frame.rename(columns={"accents": schema.ACCENT})
    if schema.UTT_ID not in frame.columns and schema.AUDIO_PATH in frame.columns:
        frame[schema.UTT_ID] = utt_ids_from_paths(frame[schema.AUDIO_PATH])
    return frame


def _kaldi_map(path: Path, value_name: str, rest_of_line: bool = False) -> pd.DataFrame:
    """A Kaldi ``key value`` file (or ``key words...`` with ``rest_of_line``) with line numbers."""
    keys, values, lines = [], [], []
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        key, value = parts[0], (parts[1] if len(parts) > 1 else "")
        if not rest_of_line and (len(value.split()) != 1):
            raise ManifestError(f"expected 'key {value_name}', got {line!r}", path, number, value_name)
        keys.append(key)
        values.append(value.strip())
        lines.append(number)
    frame = pd.DataFrame({"key": keys, value_name: values, "line": lines})
    dup = frame["key"].duplicated(keep=False)
    if dup.any():
        first = frame[dup].iloc[:2]
        raise ManifestError(
            f"duplicate id {first['key'].iloc[0]!r} (lines {first['line'].tolist()})", path, int(first["line"].iloc[1]), "id"
        )
    return frame


def _kaldi_numbers(table: pd.DataFrame, column: str, path: Path, field: str, values: pd.Series | None = None) -> np.ndarray:
    """A Kaldi map's values as floats; a non-numeric or negative one is an error naming its line."""
    values = table[column] if values is None else values
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(float)
    bad = np.flatnonzero(~np.isfinite(numbers) | (numbers < 0))
    if bad.size:
        row = int(bad[0])
        raise ManifestError(f"{field} must be a number of seconds >= 0, got {values.iloc[row]!r}", path, int(table["line"].iloc[row]), field)
    return numbers


def read_kaldi(directory: Path, hypothesis_file: Path | None = None) -> pd.DataFrame:
    """Kaldi data dir: ``text`` + ``utt2spk`` (required), ``spk2gender``, ``wav.scp``, ``segments``, ``utt2dur`` (optional).

    Hypotheses come from ``hypothesis_file`` (same ``utt-id words...`` format), or from a ``hyp``
    or ``text.hyp`` file in the directory. Every id in a map must be known: a speaker missing from
    spk2gender or an utterance missing from utt2spk is an error naming the file and line.

    With ``segments`` (``utt-id recording-id start end``, seconds) utterances are stretches of
    recordings: ``wav.scp`` is keyed by recording, each utterance gets ``recording_id``,
    ``audio_start`` and ``audio_end`` beside the recording's ``audio_path``, and its duration is
    end - start (``utt2dur``, if present too, must agree within 10 ms).
    """
    for required in ("text", "utt2spk"):
        if not (directory / required).is_file():
            raise ManifestError(f"no '{required}' file: a directory is read as a Kaldi data dir (text, utt2spk, ...) "
                               "unless it holds .parquet partitions", directory)
    text = _kaldi_map(directory / "text", schema.REFERENCE, rest_of_line=True)
    frame = pd.DataFrame({schema.UTT_ID: text["key"], schema.REFERENCE: text[schema.REFERENCE]})
    frame[FILE_COL] = str(directory / "text")
    frame[LINE_COL] = text["line"].to_numpy()
    utts = set(frame[schema.UTT_ID])

    def attach(path: Path, column: str, key_column: str, rest_of_line: bool = False, table: pd.DataFrame | None = None) -> None:
        table = _kaldi_map(path, column, rest_of_line) if table is None else table
        unknown = table[~table["key"].isin(utts if key_column == schema.UTT_ID else set(frame[key_column]))]
        if len(unknown):
            raise ManifestError(f"unknown id {unknown['key'].iloc[0]!r}", path, int(unknown["line"].iloc[0]), key_column)
        mapping = dict(zip(table["key"], table[column]))
        missing = frame[~frame[key_column].isin(mapping)]
        if len(missing):
            row = missing.iloc[0]
            raise ManifestError(
                f"{key_column} {row[key_column]!r} (from {row[FILE_COL]} line {row[LINE_COL]}) has no entry", path, None, column
            )
        frame[column] = frame[key_column].map(mapping)

    attach(directory / "utt2spk", schema.SPEAKER_ID, schema.UTT_ID)
    if (directory / "spk2gender").exists():
        attach(directory / "spk2gender", schema.GENDER, schema.SPEAKER_ID)
    segmented = (directory / "segments").exists()
    if segmented:
        _attach_segments(directory / "segments", frame, attach)
    if (directory / "wav.scp").exists():
        attach(directory / "wav.scp", schema.AUDIO_PATH, RECORDING_ID if segmented else schema.UTT_ID, rest_of_line=True)
    if (directory / "utt2dur").exists():
        path = directory / "utt2dur"
        table = _kaldi_map(path, schema.DURATION)
        table[schema.DURATION] = _kaldi_numbers(table, schema.DURATION, path, schema.DURATION)
        if not segmented:
            attach(path, schema.DURATION, schema.UTT_ID, table=table)
        else:  # durations come from segments; utt2dur must know the same utterances and agree
            attach(path, "utt2dur", schema.UTT_ID, table=table.rename(columns={schema.DURATION: "utt2dur"}))
            off = np.flatnonzero(np.abs(frame.pop("utt2dur").to_numpy(float) - frame[schema.DURATION].to_numpy(float)) > 0.01)
            if off.size:
                row = table.set_index("key").loc[frame[schema.UTT_ID].iloc[int(off[0])]]
                raise ManifestError(f"duration {row[schema.DURATION]} disagrees with segments (end - start = "
                                    f"{frame[schema.DURATION].iloc[int(off[0])]:.3f} s)", path, int(row["line"]), schema.DURATION)
    if hypothesis_file is None:
        hypothesis_file = next((directory / n for n in ("hyp", "text.hyp") if (directory / n).exists()), None)
    if hypothesis_file is not None:
        attach(Path(hypothesis_file), schema.HYPOTHESIS, schema.UTT_ID, rest_of_line=True)
    return frame


RECORDING_ID = "recording_id"
AUDIO_START = "audio_start"
AUDIO_END = "audio_end"


def _attach_segments(path: Path, frame: pd.DataFrame, attach) -> None:
    """``utt-id recording-id start end`` lines -> recording_id, audio_start, audio_end and duration columns."""
    table = _kaldi_map(path, "segment", rest_of_line=True)
    parts = table["segment"].str.split()
    short = np.flatnonzero(parts.map(len).to_numpy() != 3)
    if short.size:
        row = table.iloc[int(short[0])]
        raise ManifestError(f"expected 'utt-id recording-id start end', got {row['key']} {row['segment']!r}", path, int(row["line"]), "segment")
    table[RECORDING_ID] = parts.str[0]
    table[AUDIO_START] = _kaldi_numbers(table, "segment", path, "start", parts.str[1])
    table[AUDIO_END] = _kaldi_numbers(table, "segment", path, "end", parts.str[2])
    backwards = np.flatnonzero(table[AUDIO_END].to_numpy() <= table[AUDIO_START].to_numpy())
    if backwards.size:
        row = table.iloc[int(backwards[0])]
        raise ManifestError(f"end {row[AUDIO_END]} is not after start {row[AUDIO_START]}", path, int(row["line"]), "end")
    table[schema.DURATION] = table[AUDIO_END] - table[AUDIO_START]
    for column in (RECORDING_ID, AUDIO_START, AUDIO_END, schema.DURATION):
        attach(path, column, schema.UTT_ID, table=table)


READERS = {
    "csv": read_csv,
    "tsv": read_tsv,
    "jsonl": read_jsonl,
    "parquet": read_parquet,
    "nemo": read_nemo,
    "commonvoice": read_common_voice,
}
FORMATS = tuple(READERS) + ("kaldi",)


def detect_format(path: Path) -> str:
    """Guess the format from the path (and, for ambiguous suffixes, the first record's fields)."""
    if path.is_dir():  # a Kaldi data dir, or a directory of Parquet partitions
        if (path / "text").is_file() or not any(path.rglob("*.parquet")):
            return "kaldi"
        return "parquet"
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".jsonl", ".json", ".ndjson"):
        # Sniffing only: the reader reports undecodable bytes with their line.
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            first = next((line for line in handle if line.strip()), "{}")
        try:
            keys = json.loads(first).keys()
        except (json.JSONDecodeError, AttributeError):
            return "jsonl"
        return "nemo" if "audio_filepath" in keys else "jsonl"
    if suffix == ".tsv":
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            header = handle.readline().rstrip("\r\n").split("\t")
        return "commonvoice" if {"client_id", "sentence"} <= set(header) else "tsv"
    if suffix == ".csv":
        return "csv"
    raise ManifestError(f"cannot tell the format from suffix {suffix!r}; pass format= one of {FORMATS}", path)
