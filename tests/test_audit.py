import json
from pathlib import Path

import pandas as pd
import pytest

from fairspeech.audit import parse_by, run_audit
from fairspeech.cli import main
from fairspeech.data.manifest import ManifestError, read_manifest

EXAMPLES = Path(__file__).resolve().parents[1] / "data_manifests" / "examples"


def test_parse_by_intersections():
    assert parse_by("gender,age,gender*age") == [["gender"], ["age"], ["gender", "age"]]


def test_cli_audit_writes_every_output(tmp_path):
    out = tmp_path / "audit"
    code = main([
        "audit", str(EXAMPLES / "manifest.csv"), "--by", "gender,age,gender*accent", "--out", str(out),
        "--n-boot", "200", "--n-permutations", "99", "--min-speakers", "1", "--no-progress",
    ])
    assert code == 0
    for name in ("audit.json", "cohorts.csv", "report.html", "alignments.parquet", "wer_by_gender.png", "wer_by_gender_x_accent.png"):
        assert (out / name).stat().st_size > 0, name
    data = json.loads((out / "audit.json").read_text())
    assert data["settings"]["seed"] == 0 and data["settings"]["n_boot"] == 200
    assert data["input"]["utterances"] == 12 and data["input"]["excluded_rows"] == 0
    table = pd.read_csv(out / "cohorts.csv")
    assert set(table["attribute"]) == {"gender", "age", "gender x accent"}
    html = (out / "report.html").read_text()
    assert "data:image/png;base64" in html and "speaker" in html.lower()
    # One global test per table, and the naive gap interval labelled as such, in the JSON and the report.
    gender = data["cohort_tables"][0]
    assert 0 < gender["global_test"]["p_value"] <= 1 and gender["gap"]["naive_difference_low"] is not None
    assert html.count("Global test, no cohort differs") == 3 and html.count("Naive (selected after looking; not a test)") == 3
    assert not list(out.glob(".*.tmp*")), "temporary files left behind"


def test_same_seed_same_numbers_and_another_seed_other_intervals():
    manifest = read_manifest(EXAMPLES / "manifest.csv")
    a = run_audit(manifest, "gender,age", n_boot=300, n_permutations=99, min_speakers=1, seed=3, progress=False).to_dict()
    b = run_audit(manifest, "gender,age", n_boot=300, n_permutations=99, min_speakers=1, seed=3, progress=False).to_dict()
    c = run_audit(manifest, "gender,age", n_boot=300, n_permutations=99, min_speakers=1, seed=4, progress=False).to_dict()
    for d in (a, b, c):
        d.pop("timings_s")
    assert a == b
    # Point estimates do not depend on the seed; the resampling does.
    assert a["overall"]["wer"] == c["overall"]["wer"]
    assert [t["cohorts"] for t in a["cohort_tables"]] != [t["cohorts"] for t in c["cohort_tables"]]


def test_reference_empty_after_normalization(tmp_path):
    frame = pd.read_csv(EXAMPLES / "manifest.csv", dtype=str)
    frame.loc[3, "reference"] = "?!"
    path = tmp_path / "m.csv"
    frame.to_csv(path, index=False)
    manifest = read_manifest(path)
    with pytest.raises(ManifestError, match="empty after normalization") as error:
        run_audit(manifest, "gender", progress=False)
    assert error.value.line == 5 and error.value.field == "reference"
    result = run_audit(read_manifest(path), "gender", n_boot=100, n_permutations=9, min_speakers=1, skip_bad_rows=True, progress=False)
    assert result.to_dict()["input"]["exclusions"] == {"reference empty after normalization": 1}
    assert result.overall.overall["utterances"] == 11


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    pd.DataFrame([{"utt_id": "u1", "speaker_id": "s1", "reference": "", "hypothesis": "x"}]).to_csv(path, index=False)
    assert main(["audit", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and "line 2" in err and "'reference'" in err


def test_unknown_by_column_is_a_clear_error(capsys):
    assert main(["audit", str(EXAMPLES / "manifest.csv"), "--by", "dialect", "--out", "/tmp/never"]) == 2
    assert "dialect" in capsys.readouterr().err


def test_a_perfect_best_cohort_gives_an_undefined_ratio_not_infinity(tmp_path):
    rows = [
        {"utt_id": f"u{i}", "speaker_id": f"s{i % 4}", "reference": "turn on the lights",
         "hypothesis": "turn on the lights" if i % 2 == 0 else "turn the light", "gender": "f" if i % 2 == 0 else "m"}
        for i in range(8)
    ]
    path = tmp_path / "m.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    result = run_audit(read_manifest(path), "gender", n_boot=50, n_permutations=9, min_speakers=1, progress=False)
    gap = result.tables[0].gap
    assert gap["wer_best"] == 0.0 and gap["ratio"] is None
    result.write(tmp_path / "out")  # strict JSON: no Infinity/NaN
    assert json.loads((tmp_path / "out" / "audit.json").read_text())["cohort_tables"][0]["gap"]["ratio"] is None
