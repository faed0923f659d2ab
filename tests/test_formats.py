"""Kaldi data dirs with a segments file, and NeMo/Common Voice utterance ids from relative audio paths."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from fairspeech.cli import main
from fairspeech.data.manifest import ManifestError, read_manifest
from fairspeech.data.readers import utt_ids_from_paths

EXAMPLES = Path(__file__).resolve().parents[1] / "data_manifests" / "examples"


def segmented_kaldi(tmp_path: Path) -> tuple[Path, list[str]]:
    """The example Kaldi dir with its 12 utterances as stretches of 3 recordings."""
    kaldi = tmp_path / "kaldi"
    shutil.copytree(EXAMPLES / "kaldi", kaldi)
    utts = [line.split()[0] for line in (kaldi / "text").read_text().splitlines()]
    (kaldi / "segments").write_text("".join(f"{u} rec{i % 3} {i * 2.0:.2f} {i * 2.0 + 1.25:.2f}\n" for i, u in enumerate(utts)))
    (kaldi / "wav.scp").write_text("".join(f"rec{r} /data/rec{r}.wav\n" for r in range(3)))
    return kaldi, utts


def test_kaldi_segments_give_recording_offsets_and_durations(tmp_path):
    kaldi, utts = segmented_kaldi(tmp_path)
    frame = read_manifest(kaldi).frame.set_index("utt_id")
    plain = read_manifest(EXAMPLES / "kaldi").frame.set_index("utt_id")
    pd.testing.assert_series_equal(frame["reference"], plain["reference"])
    for i, utt in enumerate(utts):
        row = frame.loc[utt]
        assert row["recording_id"] == f"rec{i % 3}" and row["audio_path"] == f"/data/rec{i % 3}.wav"
        assert row["audio_start"] == pytest.approx(i * 2.0) and row["audio_end"] == pytest.approx(i * 2.0 + 1.25)
        assert row["duration"] == pytest.approx(1.25)
    assert main(["audit", str(kaldi), "--by", "gender", "--out", str(tmp_path / "o"), "--n-boot", "20",
                 "--n-permutations", "9", "--min-speakers", "1", "--no-progress"]) == 0


def test_kaldi_segments_and_utt2dur_must_agree(tmp_path):
    kaldi, utts = segmented_kaldi(tmp_path)
    (kaldi / "utt2dur").write_text("".join(f"{u} 1.25\n" for u in utts))
    assert read_manifest(kaldi).frame["duration"].eq(1.25).all()
    (kaldi / "utt2dur").write_text("".join(f"{u} {3.0 if i == 4 else 1.25}\n" for i, u in enumerate(utts)))
    with pytest.raises(ManifestError, match="disagrees with segments") as error:
        read_manifest(kaldi)
    assert error.value.file.endswith("utt2dur") and error.value.line == 5 and error.value.field == "duration"


def test_kaldi_segments_for_unknown_or_missing_utterances(tmp_path):
    kaldi, utts = segmented_kaldi(tmp_path)
    with open(kaldi / "segments", "a") as handle:
        handle.write("ghost rec0 0 1\n")
    with pytest.raises(ManifestError, match="unknown id 'ghost'") as error:
        read_manifest(kaldi)
    assert error.value.line == 13
    lines = (kaldi / "segments").read_text().splitlines()
    (kaldi / "segments").write_text("\n".join(lines[1:-1]) + "\n")
    with pytest.raises(ManifestError, match=f"{utts[0]}.*has no entry"):
        read_manifest(kaldi)


def test_kaldi_segments_wav_scp_is_keyed_by_recording(tmp_path):
    kaldi, _ = segmented_kaldi(tmp_path)
    (kaldi / "wav.scp").write_text("rec0 a.wav\nrec1 b.wav\n")  # rec2 missing
    with pytest.raises(ManifestError, match="recording_id 'rec2'.*has no entry") as error:
        read_manifest(kaldi)
    assert error.value.file.endswith("wav.scp")


def test_asr_refuses_segmented_recordings_instead_of_transcribing_whole_files(tmp_path, capsys):
    kaldi, _ = segmented_kaldi(tmp_path)
    assert main(["audit", str(kaldi), "--asr", "pocketsphinx", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "segments" in capsys.readouterr().err


def test_nemo_ids_from_per_speaker_folders_do_not_collide(tmp_path):
    records = [
        {"audio_filepath": f"audio/{speaker}/{name}.wav", "text": "turn on the light", "pred_text": "turn on the lights", "speaker": speaker}
        for speaker in ("a", "b") for name in ("x", "y")
    ]
    path = tmp_path / "nemo.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    frame = read_manifest(path).frame
    assert frame["utt_id"].tolist() == ["a/x", "a/y", "b/x", "b/y"]
    assert main(["audit", str(path), "--out", str(tmp_path / "o"), "--n-boot", "20", "--n-permutations", "9", "--no-progress"]) == 0


@pytest.mark.parametrize(
    "paths,ids",
    [
        (["wav/s1.wav", "wav/s2.wav"], ["s1", "s2"]),  # one folder: the stems, as before
        (["/d/a/x.wav", "/d/b/x.wav"], ["a/x", "b/x"]),
        (["/d/a/x.wav", "/d/a/deep/x.flac"], ["x", "deep/x"]),
        (["/abs/a/x.wav", "rel/a/x.wav"], ["/abs/a/x", "rel/a/x"]),  # nothing shared: the whole path
        (["a/x.wav", None], ["x", None]),  # a missing path stays missing (validation names it)
    ],
)
def test_utt_ids_from_paths(paths, ids):
    assert [None if pd.isna(i) else i for i in utt_ids_from_paths(pd.Series(paths, dtype=object))] == ids


def test_nemo_without_audio_path_is_a_missing_utt_id(tmp_path):
    path = tmp_path / "nemo.json"
    rows = [{"audio_filepath": "a/x.wav", "text": "hi", "pred_text": "hi", "speaker": "s"},
            {"audio_filepath": None, "text": "hi", "pred_text": "hi", "speaker": "s"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ManifestError, match="missing utt_id") as error:
        read_manifest(path)
    assert error.value.line == 2


def test_csv_fields_longer_than_the_csv_module_default_limit(tmp_path):
    """A long-form transcript over 128 KiB in one CSV field reads (the csv module's default limit)."""
    words = " ".join(["word"] * 40_000)  # ~200 KB
    pd.DataFrame([{"utt_id": "u1", "speaker_id": "s1", "reference": words, "hypothesis": words}]).to_csv(tmp_path / "m.csv", index=False)
    assert read_manifest(tmp_path / "m.csv").frame["reference"].iloc[0] == words
