import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from fairspeech.data.manifest import ManifestError, read_manifest

EXAMPLES = Path(__file__).resolve().parents[1] / "data_manifests" / "examples"
CORE = ["utt_id", "speaker_id", "reference", "hypothesis"]


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[CORE].sort_values("utt_id").reset_index(drop=True)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("manifest.tsv", {}),
        ("manifest.jsonl", {}),
        ("manifest.parquet", {}),
        ("nemo_manifest.json", {}),
        ("commonvoice.tsv", {"hypotheses": EXAMPLES / "commonvoice_hyp.txt"}),
        ("kaldi", {}),
    ],
)
def test_every_format_reads_to_the_same_table(name, kwargs):
    reference = read_manifest(EXAMPLES / "manifest.csv").frame
    other = read_manifest(EXAMPLES / name, **kwargs)
    pd.testing.assert_frame_equal(canonical(other.frame), canonical(reference))
    assert other.exclusions == {}


def test_metadata_columns_are_kept_and_typed():
    frame = read_manifest(EXAMPLES / "manifest.csv").frame
    assert frame["zip"].iloc[0] == "02138"  # leading zero kept
    assert frame["lat"].dtype == float and frame["duration"].dtype == float
    for name in ("manifest.jsonl", "manifest.parquet", "nemo_manifest.json"):
        other = read_manifest(EXAMPLES / name).frame
        assert other["zip"].tolist() == frame["zip"].tolist()
        assert other["lat"].tolist() == frame["lat"].tolist()


def test_kaldi_gender_map_and_audio_paths():
    frame = read_manifest(EXAMPLES / "kaldi").frame
    assert set(frame["gender"]) == {"f", "m"}
    assert frame["audio_path"].str.endswith(".wav").all()


def write_csv(tmp_path: Path, rows: list[dict], name="m.csv") -> Path:
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


GOOD = {"utt_id": "u1", "speaker_id": "s1", "reference": "hello there", "hypothesis": "hello", "lat": 40.0, "lon": -75.0}


def test_missing_column_names_file_and_field(tmp_path):
    path = write_csv(tmp_path, [{k: v for k, v in GOOD.items() if k != "speaker_id"}])
    with pytest.raises(ManifestError, match=r"m\.csv.*speaker_id"):
        read_manifest(path)


def test_column_mapping(tmp_path):
    path = write_csv(tmp_path, [{"id": "u1", "who": "s1", "transcript": "hi there", "asr": "hi"}])
    frame = read_manifest(path, columns={"utt_id": "id", "speaker_id": "who", "reference": "transcript", "hypothesis": "asr"}).frame
    assert frame.loc[0, "reference"] == "hi there"
    with pytest.raises(ManifestError, match="'nope'"):
        read_manifest(path, columns={"reference": "nope"})


@pytest.mark.parametrize(
    "change,reason,field,line",
    [
        ({"reference": ""}, "empty reference", "reference", 3),
        ({"reference": "   "}, "empty reference", "reference", 3),
        ({"lat": float("nan")}, "missing or non-numeric lat", "lat", 3),
        ({"lon": 200.0}, "out-of-range lon", "lon", 3),
        ({"utt_id": "u0"}, "duplicate utt_id", "utt_id", 2),
        ({"speaker_id": ""}, "missing speaker_id", "speaker_id", 3),
    ],
)
def test_bad_rows_are_errors_with_location_or_counted_exclusions(tmp_path, change, reason, field, line):
    rows = [dict(GOOD, utt_id="u0"), dict(GOOD, **change), dict(GOOD, utt_id="u2")]
    path = write_csv(tmp_path, rows)
    with pytest.raises(ManifestError) as error:
        read_manifest(path)
    assert error.value.file == str(path) and error.value.field == field and error.value.line == line
    assert reason in str(error.value)
    manifest = read_manifest(path, skip_bad_rows=True)
    excluded = 2 if reason == "duplicate utt_id" else 1  # both rows of a duplicated id are ambiguous
    assert manifest.exclusions == {reason: excluded}
    assert len(manifest.frame) == 3 - excluded


def test_non_text_reference_in_jsonl(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(dict(GOOD)) + "\n" + json.dumps(dict(GOOD, utt_id="u2", reference=42)) + "\n")
    with pytest.raises(ManifestError, match="non-text reference") as error:
        read_manifest(path)
    assert error.value.line == 2


def test_invalid_json_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(GOOD) + "\n{oops\n")
    with pytest.raises(ManifestError, match="line 2"):
        read_manifest(path)


def test_kaldi_unknown_speaker_in_spk2gender_and_missing_utt2spk(tmp_path):
    kaldi = tmp_path / "kaldi"
    shutil.copytree(EXAMPLES / "kaldi", kaldi)
    with open(kaldi / "spk2gender", "a") as handle:
        handle.write("ghost m\n")
    with pytest.raises(ManifestError, match="unknown id 'ghost'") as error:
        read_manifest(kaldi)
    assert error.value.file.endswith("spk2gender") and error.value.line == 5

    shutil.copy(EXAMPLES / "kaldi" / "spk2gender", kaldi / "spk2gender")
    lines = (kaldi / "utt2spk").read_text().splitlines()
    (kaldi / "utt2spk").write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(ManifestError, match="spk01-001.*has no entry") as error:
        read_manifest(kaldi)
    assert error.value.file.endswith("utt2spk")


def test_hypothesis_file_for_unknown_utterance(tmp_path):
    hyp = tmp_path / "hyp.txt"
    hyp.write_text("spk01-001 set an alarm\nnot-an-utt hello\n")
    with pytest.raises(ManifestError, match="not-an-utt") as error:
        read_manifest(EXAMPLES / "commonvoice.tsv", hypotheses=hyp)
    assert error.value.line == 2


def test_missing_hypothesis_without_audio_is_an_error(tmp_path):
    path = write_csv(tmp_path, [{k: v for k, v in GOOD.items() if k != "hypothesis"}])
    with pytest.raises(ManifestError, match="hypothesis"):
        read_manifest(path)


def test_unknown_suffix(tmp_path):
    path = tmp_path / "m.xlsx"
    path.write_text("x")
    with pytest.raises(ManifestError, match="format"):
        read_manifest(path)


def test_directory_of_parquet_partitions_reads_as_one_manifest(tmp_path):
    """The in-memory engine reads the same partitioned layout as ``--engine dask``; errors name the partition and row."""
    whole = read_manifest(EXAMPLES / "manifest.parquet").frame
    source = pd.read_parquet(EXAMPLES / "manifest.parquet")
    parts = tmp_path / "parts"
    (parts / "day=2").mkdir(parents=True)
    source.iloc[::2].to_parquet(parts / "part-0.parquet", index=False)
    source.iloc[1::2].to_parquet(parts / "day=2" / "part-1.parquet", index=False)
    partitioned = read_manifest(parts)
    assert partitioned.format == "parquet"
    pd.testing.assert_frame_equal(canonical(partitioned.frame), canonical(whole))

    bad = source.iloc[1::2].copy()
    bad.iloc[2, bad.columns.get_loc("reference")] = ""
    bad.to_parquet(parts / "day=2" / "part-1.parquet", index=False)
    with pytest.raises(ManifestError, match="reference") as error:
        read_manifest(parts)
    assert error.value.file.endswith("part-1.parquet") and error.value.line == 3


def test_directory_that_is_neither_kaldi_nor_parquet(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(ManifestError, match="no 'text' file.*parquet"):
        read_manifest(tmp_path)
