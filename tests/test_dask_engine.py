"""The out-of-core engine gives the same audit as the in-memory one on the same input."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed")

from fairspeech.audit import run_audit  # noqa: E402
from fairspeech.data.manifest import ManifestError, read_manifest  # noqa: E402
from fairspeech.engines.dask_engine import list_partitions, run_audit_dask  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import synthetic_corpus  # noqa: E402


def write_partitions(frame: pd.DataFrame, directory: Path, parts: int) -> Path:
    directory.mkdir()
    for i, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[chunk].to_parquet(directory / f"part-{i:03d}.parquet", index=False, row_group_size=700)
    return directory


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    frame = synthetic_corpus(6000, 300, 4, seed=1)
    rng = np.random.default_rng(0)
    frame["gender"] = frame["speaker_id"].map(lambda s: "f" if int(s[1:]) % 2 else "m")
    frame["noise"] = rng.choice(["clean", "noisy"], len(frame))  # an utterance-level attribute
    frame.loc[5, "reference"] = "..."  # empty after normalization
    frame.loc[17, "reference"] = ""  # empty reference
    path = write_partitions(frame, tmp_path_factory.mktemp("dask") / "manifest", parts=3)
    return frame, path


def test_partitions_are_row_groups(corpus):
    _, path = corpus
    partitions = list_partitions(path)
    assert len(partitions) == 9 and partitions[1].first_row == 700


def test_dask_engine_matches_in_memory_engine(corpus, tmp_path):
    frame, path = corpus
    frame.to_parquet(tmp_path / "all.parquet", index=False)
    kwargs = dict(n_boot=200, n_permutations=99, seed=5, skip_bad_rows=True, progress=False)
    memory = run_audit(read_manifest(tmp_path / "all.parquet", skip_bad_rows=True), "cohort,gender*noise", **kwargs).to_dict()
    dask = run_audit_dask(path, "cohort,gender*noise", workers=2, **kwargs).to_dict()
    assert dask["input"]["exclusions"] == memory["input"]["exclusions"] == {
        "empty reference": 1, "reference empty after normalization": 1
    }
    assert dask["overall"] == memory["overall"]
    assert dask["cohort_tables"] == memory["cohort_tables"]


def test_duplicates_across_partitions_are_found(corpus, tmp_path):
    frame, _ = corpus
    frame = frame.drop(index=[5, 17]).reset_index(drop=True)  # only the duplicate is wrong here
    frame.loc[4000, "utt_id"] = frame.loc[10, "utt_id"]
    path = write_partitions(frame, tmp_path / "dup", parts=2)
    with pytest.raises(ManifestError, match="duplicate utt_id") as error:
        run_audit_dask(path, "cohort", workers=1, n_boot=50, n_permutations=9, skip_bad_rows=False, progress=False)
    assert error.value.line == 11 and error.value.field == "utt_id" and error.value.file.endswith("part-000.parquet")


def test_worker_errors_keep_their_location(corpus):
    _, path = corpus  # holds an empty reference at row 18 of the first file
    with pytest.raises(ManifestError, match="empty reference") as error:
        run_audit_dask(path, "cohort", workers=1, n_boot=50, n_permutations=9, progress=False)
    assert error.value.line == 18 and error.value.field == "reference"


def test_cli_with_a_running_scheduler_address(corpus, tmp_path):
    from distributed import LocalCluster

    from fairspeech.cli import main

    frame, path = corpus
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        code = main([
            "audit", str(path), "--engine", "dask", "--scheduler", cluster.scheduler_address, "--by", "cohort",
            "--out", str(tmp_path / "out"), "--n-boot", "50", "--n-permutations", "9", "--skip-bad-rows", "--no-progress",
        ])
    assert code == 0
    data = (tmp_path / "out" / "audit.json").read_text()
    assert '"engine": "dask"' in data and '"partitions": 9' in data


def test_two_worker_processes_behind_a_running_scheduler_match_in_memory(corpus, tmp_path):
    """As on a real cluster (``dask scheduler`` + ``dask worker ADDRESS --nworkers 2 --nthreads 1``): a scheduler
    started elsewhere, two worker processes; the audit through its address equals the in-memory one."""
    import dask
    from distributed import LocalCluster

    frame, path = corpus
    frame.to_parquet(tmp_path / "all.parquet", index=False)
    kwargs = dict(n_boot=100, n_permutations=49, seed=2, skip_bad_rows=True, progress=False)
    memory = run_audit(read_manifest(tmp_path / "all.parquet", skip_bad_rows=True), "cohort", **kwargs).to_dict()
    with dask.config.set({"distributed.comm.timeouts.connect": "120s"}):
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            dask_result = run_audit_dask(path, "cohort", scheduler=cluster.scheduler_address, **kwargs).to_dict()
            assert len(cluster.workers) == 2
    assert dask_result["overall"] == memory["overall"]
    assert dask_result["cohort_tables"] == memory["cohort_tables"]
