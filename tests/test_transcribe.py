"""Audio plus an ASR to run: the audit transcribes with pocketsphinx (real synthesized speech)."""

import json
import os
import shutil
import subprocess

import pandas as pd
import pytest

from fairspeech.cli import main

pytestmark = pytest.mark.speech


def need(binary: str) -> None:
    if shutil.which(binary) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{binary} is missing; scripts/install.sh installs it")
        pytest.skip(f"{binary} not installed")


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    need("flite")
    pytest.importorskip("pocketsphinx")
    folder = tmp_path_factory.mktemp("asr")
    sentences = ["set an alarm for seven", "what is the weather today"]
    rows = []
    for i, text in enumerate(sentences):
        raw = folder / f"raw{i}.wav"
        subprocess.run(["flite", "-voice", "kal16", "-t", text, "-o", str(raw)], check=True)
        rows.append({"utt_id": f"u{i}", "speaker_id": "s1", "reference": text, "audio_path": raw.name, "gender": "m"})
    rows.append({"utt_id": "u9", "speaker_id": "s2", "reference": "play music", "audio_path": "missing.wav", "gender": "f"})
    (folder / "broken.wav").write_bytes(b"RIFF not really a wav")
    rows.append({"utt_id": "u8", "speaker_id": "s2", "reference": "call home", "audio_path": "broken.wav", "gender": "f"})
    manifest = folder / "m.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def test_unreadable_audio_names_file_line_and_field(spoken, tmp_path, capsys):
    assert main(["audit", str(spoken), "--asr", "pocketsphinx", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "m.csv" in err and "line 4" in err and "'audio_path'" in err and "missing.wav" in err


def test_transcribed_audit_counts_excluded_audio(spoken, tmp_path):
    code = main([
        "audit", str(spoken), "--asr", "pocketsphinx", "--skip-bad-rows", "--by", "gender", "--min-speakers", "1",
        "--n-boot", "50", "--n-permutations", "9", "--out", str(tmp_path), "--no-progress",
    ])
    assert code == 0
    data = json.loads((tmp_path / "audit.json").read_text())
    assert data["input"]["exclusions"] == {"unreadable audio": 2}
    assert data["input"]["utterances"] == 2
    # flite's kal16 voice is recognized well by pocketsphinx (about 5% WER measured on 20 sentences).
    assert data["overall"]["wer"] < 0.5
