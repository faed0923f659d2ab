"""Atomic writes end with the mode the umask gives, stay atomic, and leave nothing behind."""

import os
import stat
from pathlib import Path

import pytest

from fairspeech.audit import run_audit
from fairspeech.data.manifest import read_manifest
from fairspeech.utils import io

EXAMPLES = Path(__file__).resolve().parents[1] / "data_manifests" / "examples"


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_written_files_honour_the_umask(tmp_path, umask, mask):
    umask(mask)
    assert io.current_umask() == mask
    io.write_text(tmp_path / "a.txt", "x")
    io.write_bytes(tmp_path / "b.bin", b"x")
    io.write_json(tmp_path / "c.json", {"a": 1})
    with io.atomic_path(tmp_path / "d.csv") as tmp:
        tmp.write_text("x")
    for name in ("a.txt", "b.bin", "c.json", "d.csv"):
        assert mode(tmp_path / name) == 0o666 & ~mask, name


def test_audit_outputs_are_readable_as_the_umask_says(tmp_path, umask):
    umask(0o022)
    result = run_audit(read_manifest(EXAMPLES / "manifest.csv"), "gender", n_boot=20, n_permutations=9, min_speakers=1, progress=False)
    out = result.write(tmp_path / "out")
    names = sorted(p.name for p in out.iterdir())
    assert {"audit.json", "cohorts.csv", "report.html", "alignments.parquet", "wer_by_gender.png"} <= set(names)
    assert {name: mode(out / name) for name in names} == {name: 0o644 for name in names}


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "audit.json"
    io.write_text(target, "old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            assert target.read_text() == "old"  # nothing visible before the rename
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]
