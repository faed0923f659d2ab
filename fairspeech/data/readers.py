"""Format readers: each turns one on-disk format into a raw frame with canonical column names.

Every reader adds ``_file`` and ``_line`` (1-based line in that file, or row number for Parquet) so
validation errors can name where a bad value came from. Columns other than the canonical ones are
kept as metadata under their own names.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from fairspeech.data import schema

FILE_COL = "_file"
LINE_COL = "_line"


class ManifestError(ValueError):
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


def _tag(frame: pd.DataFrame, path: Path, first_line: int) -> pd.DataFrame:
    frame[FILE_COL] = str(path)
    frame[LINE_COL] = range(first_line, first_line + len(frame))
    return frame


def _string_table(path: Path, sep: str) -> pd.DataFrame:
    # Every field is read as text: ids and zip codes keep leading zeros; empty cells stay "".
    frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_filter=False, quoting=3 if sep == "\t" else 0)
    return _tag(frame, path, first_line=2)


def read_csv(path: Path) -> pd.DataFrame:
    return _string_table(path, ",")


def read_tsv(path: Path) -> pd.DataFrame:
    return _string_table(path, "\t")


def read_jsonl(path: Path) -> pd.DataFrame:
    records, lines = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
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
    frames = [_tag(pd.read_parquet(file), file, first_line=1) for file in parquet_files(path)]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def read_nemo(path: Path) -> pd.DataFrame:
    """NeMo manifest: audio_filepath, text, pred_text, duration; extra keys become metadata.

    NeMo has no utterance id: the audio file's stem is used, or ``utt_id`` if the manifest has one.
    """
    frame = read_jsonl(path).rename(
        columns={"audio_filepath": schema.AUDIO_PATH, "text": schema.REFERENCE, "pred_text": schema.HYPOTHESIS}
    )
    if schema.UTT_ID not in frame.columns and schema.AUDIO_PATH in frame.columns:
        frame[schema.UTT_ID] = frame[schema.AUDIO_PATH].map(lambda p: Path(str(p)).stem)
    if schema.SPEAKER_ID not in frame.columns and "speaker" in frame.columns:
        frame = frame.rename(columns={"speaker": schema.SPEAKER_ID})
    return frame


def read_common_voice(path: Path) -> pd.DataFrame:
    """Common Voice TSV: client_id is the speaker, sentence the reference, path the clip (and id)."""
    frame = read_tsv(path).rename(
        columns={"client_id": schema.SPEAKER_ID, "sentence": schema.REFERENCE, "path": schema.AUDIO_PATH}
    )
    if "accents" in frame.columns and schema.ACCENT not in frame.columns:
        frame = frame.rename(columns={"accents": schema.ACCENT})
    if schema.UTT_ID not in frame.columns and schema.AUDIO_PATH in frame.columns:
        frame[schema.UTT_ID] = frame[schema.AUDIO_PATH].map(lambda p: Path(p).stem)
    return frame


def _kaldi_map(path: Path, value_name: str, rest_of_line: bool = False) -> pd.DataFrame:
    """A Kaldi ``key value`` file (or ``key words...`` with ``rest_of_line``) with line numbers."""
    keys, values, lines = [], [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n")
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


def read_kaldi(directory: Path, hypothesis_file: Path | None = None) -> pd.DataFrame:
    """Kaldi data dir: ``text`` + ``utt2spk`` (required), ``spk2gender``, ``wav.scp``, ``utt2dur`` (optional).

    Hypotheses come from ``hypothesis_file`` (same ``utt-id words...`` format), or from a ``hyp``
    or ``text.hyp`` file in the directory. Every id in a map must be known: a speaker missing from
    spk2gender or an utterance missing from utt2spk is an error naming the file and line.
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

    def attach(path: Path, column: str, key_column: str, rest_of_line: bool = False) -> None:
        table = _kaldi_map(path, column, rest_of_line)
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
    if (directory / "wav.scp").exists():
        attach(directory / "wav.scp", schema.AUDIO_PATH, schema.UTT_ID, rest_of_line=True)
    if (directory / "utt2dur").exists():
        attach(directory / "utt2dur", schema.DURATION, schema.UTT_ID)
        frame[schema.DURATION] = pd.to_numeric(frame[schema.DURATION])
    if hypothesis_file is None:
        hypothesis_file = next((directory / n for n in ("hyp", "text.hyp") if (directory / n).exists()), None)
    if hypothesis_file is not None:
        attach(Path(hypothesis_file), schema.HYPOTHESIS, schema.UTT_ID, rest_of_line=True)
    return frame


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
        with open(path, encoding="utf-8") as handle:
            first = next((line for line in handle if line.strip()), "{}")
        try:
            keys = json.loads(first).keys()
        except (json.JSONDecodeError, AttributeError):
            return "jsonl"
        return "nemo" if "audio_filepath" in keys else "jsonl"
    if suffix == ".tsv":
        with open(path, encoding="utf-8") as handle:
            header = handle.readline().rstrip("\n").split("\t")
        return "commonvoice" if {"client_id", "sentence"} <= set(header) else "tsv"
    if suffix == ".csv":
        return "csv"
    raise ManifestError(f"cannot tell the format from suffix {suffix!r}; pass format= one of {FORMATS}", path)
