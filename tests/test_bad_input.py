"""Every row of the bad-input table in data_manifests/README.md, through the CLI entry point.

Each case writes its input, runs ``fairspeech audit`` (``fairspeech.cli.main``, what the console
script calls) and checks the exit status and that the message names the file, physical line and field.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fairspeech.cli import main
from fairspeech.data.manifest import read_manifest

EXAMPLES = Path(__file__).resolve().parents[1] / "data_manifests" / "examples"
FAST = ["--n-boot", "20", "--n-permutations", "9", "--min-speakers", "1", "--no-progress"]
CSV_TEXT = (EXAMPLES / "manifest.csv").read_text()
HEADER = CSV_TEXT.splitlines()[0].split(",")


def csv_lines() -> list[str]:
    return CSV_TEXT.splitlines()


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def kaldi_copy(tmp: Path) -> Path:
    kaldi = tmp / "kaldi"
    shutil.copytree(EXAMPLES / "kaldi", kaldi)
    return kaldi


# Each case: its input (a function of tmp_path returning the manifest path and extra CLI arguments),
# then what the message must name: the file (a suffix), "line N" and the field.
def empty_file(tmp):
    return write(tmp / "m.csv", ""), []


def empty_jsonl(tmp):
    return write(tmp / "m.jsonl", "\n\n"), []


def latin1_csv(tmp):
    lines = csv_lines()
    lines[2] = lines[2].replace("What's the weather", "Qu'est-ce que la météo")
    return write(tmp / "m.csv", "\n".join(lines).encode("latin-1")), []


def latin1_kaldi_text(tmp):
    kaldi = kaldi_copy(tmp)
    lines = (kaldi / "text").read_text().splitlines()
    lines[3] = lines[3] + " café"
    write(kaldi / "text", "\n".join(lines).encode("latin-1"))
    return kaldi, []


def latin1_jsonl(tmp):
    lines = (EXAMPLES / "manifest.jsonl").read_text().splitlines()
    lines[1] = lines[1].replace("Denver", "Montréal")
    return write(tmp / "m.jsonl", "\n".join(lines).encode("latin-1")), []


def latin1_hypotheses(tmp):
    lines = (EXAMPLES / "commonvoice_hyp.txt").read_text().splitlines()
    lines[4] = lines[4] + " déjà"
    hyp = write(tmp / "hyp.txt", "\n".join(lines).encode("latin-1"))
    return EXAMPLES / "commonvoice.tsv", ["--hyp", str(hyp)]


def ragged_tsv_row(tmp):
    lines = (EXAMPLES / "manifest.tsv").read_text().splitlines()
    lines[7] = "\t".join(lines[7].split("\t")[:2])
    return write(tmp / "m.tsv", "\n".join(lines)), []


def latin1_zip_attributes(tmp):
    return EXAMPLES / "manifest.csv", ["--discover", "geodemo", "--zip-attributes", str(write(tmp / "zips.csv", "zip,name\n02138,Cambridge caf\xe9\n".encode("latin-1")))]


def ragged_row(tmp):
    lines = csv_lines()
    lines[4] = ",".join(lines[4].split(",")[:-3])  # three fields short
    return write(tmp / "m.csv", "\n".join(lines)), []


def extra_field_row(tmp):
    lines = csv_lines()
    lines[5] = lines[5] + ",surplus"
    return write(tmp / "m.csv", "\n".join(lines)), []


def trailing_comma_every_row(tmp):
    lines = csv_lines()
    return write(tmp / "m.csv", "\n".join([lines[0]] + [line + "," for line in lines[1:]])), []


def line_after_quoted_newline(tmp):
    lines = csv_lines()
    lines[1] = lines[1].replace("Set an alarm for seven thirty tomorrow.", '"Set an alarm\nfor seven\nthirty tomorrow."')
    fields = lines[3].split(",")
    fields[2] = ""  # empty reference on the 3rd data row, which starts on physical line 6
    lines[3] = ",".join(fields)
    return write(tmp / "m.csv", "\n".join(lines)), []


def csv_named_parquet(tmp):
    return write(tmp / "m.parquet", CSV_TEXT), []


def csv_named_parquet_dask(tmp):
    return write(tmp / "m.parquet", CSV_TEXT), ["--engine", "dask"]


def kaldi_utt2dur_not_numeric(tmp):
    kaldi = kaldi_copy(tmp)
    utts = [line.split()[0] for line in (kaldi / "text").read_text().splitlines()]
    write(kaldi / "utt2dur", "".join(f"{u} {'2.5s' if i == 6 else '2.5'}\n" for i, u in enumerate(utts)))
    return kaldi, []


def kaldi_segments_not_numeric(tmp):
    kaldi = kaldi_copy(tmp)
    utts = [line.split()[0] for line in (kaldi / "text").read_text().splitlines()]
    write(kaldi / "segments", "".join(f"{u} rec{i // 4} {i}.0 {'end' if i == 2 else f'{i}.9'}\n" for i, u in enumerate(utts)))
    write(kaldi / "wav.scp", "".join(f"rec{r} rec{r}.wav\n" for r in range(3)))
    return kaldi, []


def kaldi_segments_backwards(tmp):
    kaldi = kaldi_copy(tmp)
    utts = [line.split()[0] for line in (kaldi / "text").read_text().splitlines()]
    write(kaldi / "segments", "".join(f"{u} rec0 {i + 1}.0 {i + (0.5 if i == 9 else 1.5)}\n" for i, u in enumerate(utts)))
    write(kaldi / "wav.scp", "rec0 rec0.wav\n")
    return kaldi, []


def by_self_intersection(tmp):
    return EXAMPLES / "manifest.csv", ["--by", "gender*gender"]


def by_speaker_id(tmp):
    return EXAMPLES / "manifest.csv", ["--by", "speaker_id"]


def by_unknown(tmp):
    return EXAMPLES / "manifest.csv", ["--by", "dialect"]


def by_numeric_many_values(tmp):
    frame = pd.read_csv(EXAMPLES / "manifest.csv", dtype=str)
    frame["age_years"] = [str(18 + 3 * i) for i in range(len(frame))]  # 12 values
    frame = pd.concat([frame, frame.assign(utt_id=frame["utt_id"] + "b", age_years=[str(60 + i) for i in range(len(frame))])])
    frame.to_csv(tmp / "m.csv", index=False)
    return tmp / "m.csv", ["--by", "age_years"]


def n_boot_zero(tmp):
    return EXAMPLES / "manifest.csv", ["--n-boot", "0"]


def alpha_above_one(tmp):
    return EXAMPLES / "manifest.csv", ["--alpha", "1.5"]


def alpha_zero(tmp):
    return EXAMPLES / "manifest.csv", ["--alpha", "0"]


def empty_reference(tmp):
    lines = csv_lines()
    fields = lines[2].split(",")
    lines[2] = ",".join(fields[:2] + ['""'] + fields[4:])  # the quoted reference held a comma: 2 fields become 1
    return write(tmp / "m.csv", "\n".join(lines)), []


ERRORS = [
    # id, input, message must contain, file suffix, line, field
    ("empty file", empty_file, "empty file", "m.csv", 1, None),
    ("empty JSONL (blank lines only)", empty_jsonl, "empty file", "m.jsonl", 1, None),
    ("Latin-1 bytes in a CSV", latin1_csv, "not UTF-8", "m.csv", 3, "reference"),
    ("Latin-1 bytes in a Kaldi file", latin1_kaldi_text, "not UTF-8", "text", 4, "value"),
    ("Latin-1 bytes in JSONL", latin1_jsonl, "not UTF-8", "m.jsonl", 2, None),
    ("Latin-1 bytes in a --hyp file", latin1_hypotheses, "not UTF-8", "hyp.txt", 5, "value"),
    ("Latin-1 bytes in --zip-attributes", latin1_zip_attributes, "cannot be read as UTF-8 CSV", "zips.csv", None, None),
    ("ragged TSV row", ragged_tsv_row, "ragged row", "m.tsv", 8, "reference"),
    ("ragged row (too few fields)", ragged_row, "ragged row", "m.csv", 5, HEADER[-3]),
    ("ragged row (too many fields)", extra_field_row, "ragged row", "m.csv", 6, f"#{len(HEADER) + 1} (no header)"),
    ("trailing comma on every row", trailing_comma_every_row, "trailing ','", "m.csv", 2, f"#{len(HEADER) + 1} (no header)"),
    ("line numbers are physical (quoted newlines)", line_after_quoted_newline, "empty reference", "m.csv", 6, "reference"),
    ("a CSV named .parquet", csv_named_parquet, "not a readable Parquet file", "m.parquet", None, None),
    ("a CSV named .parquet, --engine dask", csv_named_parquet_dask, "not a readable Parquet file", "m.parquet", None, None),
    ("non-numeric Kaldi utt2dur", kaldi_utt2dur_not_numeric, "'2.5s'", "utt2dur", 7, "duration"),
    ("non-numeric Kaldi segments", kaldi_segments_not_numeric, "'end'", "segments", 3, "end"),
    ("Kaldi segment ending before it starts", kaldi_segments_backwards, "not after start", "segments", 10, "end"),
    ("--by a*a", by_self_intersection, "intersects an attribute with itself", None, None, None),
    ("--by speaker_id", by_speaker_id, "not an attribute", "manifest.csv", None, "speaker_id"),
    ("--by an unknown column", by_unknown, "dialect", "manifest.csv", None, "dialect"),
    ("numeric --by with many values", by_numeric_many_values, "bin it", "m.csv", None, "age_years"),
    ("--n-boot 0", n_boot_zero, "--n-boot must be at least 1", None, None, None),
    ("--alpha 1.5", alpha_above_one, "--alpha must be strictly between 0 and 1", None, None, None),
    ("--alpha 0", alpha_zero, "--alpha must be strictly between 0 and 1", None, None, None),
    ("empty reference", empty_reference, "empty reference", "m.csv", 3, "reference"),
]


@pytest.mark.parametrize("case,make,message,file,line,field", ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_input_exits_2_naming_file_line_and_field(tmp_path, capsys, case, make, message, file, line, field):
    manifest, extra = make(tmp_path)
    code = main(["audit", str(manifest), "--out", str(tmp_path / "out"), *FAST, *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and message in err, err
    if file:
        assert re.search(rf"file /\S*/{re.escape(file)}[,:]", err), err
    if line:
        assert f"line {line}," in err or f"line {line}:" in err, err
    if field:
        assert f"field {field!r}" in err, err
    assert not (tmp_path / "out" / "audit.json").exists()  # nothing half-done left as if it were a result


def test_bad_input_gives_no_traceback_from_the_console_entry_point(tmp_path):
    """The installed command, as a user runs it: status 2, one line, no traceback."""
    manifest, _ = latin1_csv(tmp_path)
    run = subprocess.run([sys.executable, "-m", "fairspeech.cli", "audit", str(manifest), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr and "not UTF-8" in run.stderr


def test_a_real_bug_keeps_its_traceback(tmp_path, monkeypatch):
    """Only the project's InputError means bad input; any other error propagates from main()."""
    import fairspeech.audit

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(fairspeech.audit, "score_utterances", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["audit", str(EXAMPLES / "manifest.csv"), "--out", str(tmp_path / "o"), *FAST])


@pytest.mark.parametrize("case,make", [("ragged row", ragged_row), ("trailing comma", trailing_comma_every_row), ("Latin-1", latin1_csv)])
def test_file_structure_errors_stay_errors_under_skip_bad_rows(tmp_path, capsys, case, make):
    """A broken file is not a bad row: --skip-bad-rows cannot know which values are where."""
    manifest, _ = make(tmp_path)
    assert main(["audit", str(manifest), "--out", str(tmp_path / "o"), "--skip-bad-rows", *FAST]) == 2


def test_bad_rows_are_excluded_and_counted_under_skip_bad_rows(tmp_path):
    manifest, _ = empty_reference(tmp_path)
    assert main(["audit", str(manifest), "--by", "gender", "--out", str(tmp_path / "o"), "--skip-bad-rows", *FAST]) == 0
    data = json.loads((tmp_path / "o" / "audit.json").read_text())
    assert data["input"]["exclusions"] == {"empty reference": 1} and data["input"]["utterances"] == 11


def test_bom_prefixed_common_voice_tsv_reads_its_first_column(tmp_path):
    path = write(tmp_path / "cv.tsv", "\ufeff" + (EXAMPLES / "commonvoice.tsv").read_text())
    manifest = read_manifest(path, hypotheses=EXAMPLES / "commonvoice_hyp.txt")
    assert manifest.format == "commonvoice"  # detected: the first column is client_id, not '\ufeffclient_id'
    plain = read_manifest(EXAMPLES / "commonvoice.tsv", hypotheses=EXAMPLES / "commonvoice_hyp.txt")
    pd.testing.assert_frame_equal(manifest.public_frame(), plain.public_frame())
    hyp = write(tmp_path / "hyp.txt", "\ufeff" + (EXAMPLES / "commonvoice_hyp.txt").read_text())
    assert main(["audit", str(path), "--hyp", str(hyp), "--by", "gender", "--out", str(tmp_path / "o"), *FAST]) == 0


@pytest.mark.parametrize("name", ["text", "utt2spk", "spk2gender", "wav.scp", "hyp"])
def test_bom_prefixed_kaldi_files_read_their_first_id(tmp_path, name):
    kaldi = kaldi_copy(tmp_path)
    write(kaldi / name, "\ufeff" + (kaldi / name).read_text())
    pd.testing.assert_frame_equal(read_manifest(kaldi).public_frame(), read_manifest(EXAMPLES / "kaldi").public_frame())


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_blank_and_null_attributes_are_one_missing_label(tmp_path, suffix):
    frame = pd.read_csv(EXAMPLES / "manifest.csv", dtype=str, keep_default_na=False)  # keeps the empty hypothesis ""
    # Speakers spk01..: one with a blank accent, one with spaces, one null: all three are "(missing)".
    frame["accent"] = frame["accent"].astype(object)
    speakers = sorted(frame["speaker_id"].unique())
    frame.loc[frame["speaker_id"] == speakers[0], "accent"] = ""
    frame.loc[frame["speaker_id"] == speakers[1], "accent"] = "  "
    frame.loc[frame["speaker_id"] == speakers[2], "accent"] = None
    path = tmp_path / f"m{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))
    else:
        frame.to_parquet(path, index=False)
    assert main(["audit", str(path), "--by", "accent", "--out", str(tmp_path / "o"), *FAST]) == 0
    table = pd.read_csv(tmp_path / "o" / "cohorts.csv", keep_default_na=False)
    accents = table.loc[table["attribute"] == "accent", "cohort"].tolist()
    assert "(missing)" in accents and "" not in accents and "  " not in accents
    missing = table[(table["attribute"] == "accent") & (table["cohort"] == "(missing)")]
    assert int(missing["speakers"].iloc[0]) == 3


def test_numeric_by_with_few_values_is_audited_as_labels(tmp_path):
    frame = pd.read_csv(EXAMPLES / "manifest.csv", dtype=str)
    frame["rating"] = [str(1 + i % 3) for i in range(len(frame))]
    frame.to_csv(tmp_path / "m.csv", index=False)
    assert main(["audit", str(tmp_path / "m.csv"), "--by", "rating", "--out", str(tmp_path / "o"), *FAST]) == 0


def test_the_readme_table_and_these_tests_match():
    """Every row of the bad-input table names tests that exist, and every case here has a row."""
    readme = (Path(__file__).resolve().parents[1] / "data_manifests" / "README.md").read_text()
    table = readme[readme.index("### Bad input: what the tool does"):].split("\n\n")[2]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| bad input")]
    assert len(rows) >= 15
    here = sys.modules[__name__]
    formats = (Path(__file__).parent / "test_formats.py").read_text() + (Path(__file__).parent / "test_manifest.py").read_text()
    cited = set()
    for row in rows:
        tests = row.rstrip(" |").rsplit("|", 1)[1]
        names = re.findall(r"`([^`]+)`", tests)
        assert names, row
        for name in names:
            if name.startswith("["):
                cited.add(name[1:-1])
            elif name.startswith("test_"):
                assert hasattr(here, name) or f"def {name}(" in formats, name
    assert cited == {case[0] for case in ERRORS}
