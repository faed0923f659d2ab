"""Out-of-core audit with Dask on a partitioned Parquet manifest, against the in-memory engine.

Workload (issue 10): 10,000,000 utterances (200,000 speakers, 20 cohorts) written as 100 Parquet
partitions, audited by `fairspeech audit --engine dask` (a local cluster of 2 worker processes)
with 1,000 speaker-bootstrap replicates and 1,000 permutations. Peak memory is the PSS of the
whole process tree (client, scheduler, workers); target under 4 GiB. The in-memory engine is
measured on the largest sizes it can hold within the same budget (`--memory-sizes`), in the same run.

    python benchmarks/audit_dask.py                 # full size (~15 minutes on 2 cores)
    python benchmarks/audit_dask.py --quick         # 200k utterances, to check the script
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save, synthetic_corpus  # noqa: E402
from audit_scale import run_measured  # noqa: E402  (a peak-memory sampler that survives a worker ending mid-sample)

CHUNK = 100_000


def write_corpus(directory: Path, n_utts: int, n_speakers: int, n_cohorts: int) -> Path:
    directory.mkdir(parents=True)
    for part, first in enumerate(range(0, n_utts, CHUNK)):
        chunk = synthetic_corpus(min(CHUNK, n_utts - first), n_speakers, n_cohorts, seed=0, first_utt=first)
        chunk.to_parquet(directory / f"part-{part:05d}.parquet", index=False)
    return directory


def audit(path: Path, out: Path, engine: str) -> dict:
    command = [sys.executable, "-m", "fairspeech.cli", "audit", str(path), "--by", "cohort", "--out", str(out),
               "--n-boot", "1000", "--n-permutations", "1000", "--seed", "0", "--no-progress", "--workers", "2"]
    if engine == "dask":
        command += ["--engine", "dask"]
    run = run_measured(command)
    import json

    run["stages_s"] = {k: round(v, 3) for k, v in json.loads((out / "audit.json").read_text())["timings_s"].items()}
    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--utterances", type=int, default=10_000_000)
    parser.add_argument("--speakers", type=int, default=200_000)
    parser.add_argument("--memory-sizes", default="1000000,3000000", help="sizes for the in-memory engine")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None, help="write the JSON here instead of benchmarks/results/ (a check on a busy machine)")
    args = parser.parse_args()
    if args.quick:
        args.utterances, args.speakers, args.memory_sizes = 200_000, 10_000, "200000"
    result = {"benchmark": "audit_dask", "machine": machine(), "target": {"peak_memory_gib": 4}, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = write_corpus(tmp / "manifest", args.utterances, args.speakers, 20)
        parts = sorted(corpus.glob("*.parquet"))
        dask_run = audit(corpus, tmp / "out_dask", "dask")
        result["runs"].append({"engine": "dask", "utterances": args.utterances, "speakers": args.speakers, "partitions": len(parts), **dask_run})
        for size in (int(s) for s in args.memory_sizes.split(",")):
            subset = tmp / f"memory_{size}.parquet"
            pd.concat(pd.read_parquet(p) for p in parts[: size // CHUNK]).to_parquet(subset, index=False)
            run = audit(subset, tmp / f"out_mem_{size}", "memory")
            result["runs"].append({"engine": "memory", "utterances": size, **run})
            dask_out = tmp / "out_dask"
            if size != args.utterances:  # the same input for both engines, to check they agree
                dask_out = tmp / f"out_dask_{size}"
                dask_small = audit(_subdir(parts[: size // CHUNK], tmp / f"dask_{size}"), dask_out, "dask")
                result["runs"].append({"engine": "dask", "utterances": size, **dask_small})
            same = (tmp / f"out_mem_{size}" / "cohorts.csv").read_text() == (dask_out / "cohorts.csv").read_text()
            result.setdefault("identical_cohort_tables", {})[str(size)] = same
    result["meets_target"] = result["runs"][0]["peak_memory_gib"] < 4
    if args.out:
        import json

        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    else:
        save("audit_dask" + ("_quick" if args.quick else ""), result)


def _subdir(parts: list[Path], directory: Path) -> Path:
    directory.mkdir()
    for p in parts:
        (directory / p.name).symlink_to(p)
    return directory


if __name__ == "__main__":
    main()
