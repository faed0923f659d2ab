"""Full audit at scale (issue 23): the CLI from Parquet to HTML, by size, against the alignment alone.

Workload: synthetic corpora (benchmarks/_common.synthetic_corpus: 1-30 reference words, mean ~10,
Zipfian vocabulary, 20 cohorts, per-speaker error rates), 1,000 speaker-bootstrap replicates and
1,000 permutations. Each size runs as the real CLI (``fairspeech audit M.parquet --by cohort``) in a
fresh process, reading Parquet and writing every output (audit.json, cohorts.csv, alignments.parquet,
report.html, PNG); wall time and peak memory (PSS of the whole process tree) are measured from
outside. Sizes are UTTERANCES:SPEAKERS pairs; the default is the issue's scaling table (1M, 3M, 10M
utterances by 50k and 200k speakers).

In the same run, on the rows of the largest size (or the first ``--baseline-rows`` of them, then
scaled to the run's rows): ``jiwer.process_words`` and rapidfuzz word alignment alone (``editops``
over word lists, counting substitutions, deletions and insertions; one process, no normalization),
and the ratio of the whole audit to each. Optionally (``--peer-rows``) fairlearn's MetricFrame with
a jiwer WER metric and ``n_boot`` on a subset, per (row x replicate), as the earlier benchmark.

    python benchmarks/audit_scale.py                                   # the issue's table, 1M-10M (cores free!)
    python benchmarks/audit_scale.py --sizes 10000000:200000            # the headline run alone
    python benchmarks/audit_scale.py --sizes 200000:40000,1000000:200000 --out /tmp/audit_scale.json   # a check
    python benchmarks/audit_scale.py --engine dask --sizes 10000000:200000  # the out-of-core engine instead

Corpora are written once per speaker count, 100k utterances per row group (generated on all CPUs),
and the smaller sizes are prefixes of the larger ones (same speakers).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, run_measured, save, synthetic_corpus  # noqa: E402

CHUNK = 100_000
DEFAULT_SIZES = "1000000:50000,3000000:50000,10000000:50000,1000000:200000,3000000:200000,10000000:200000"
TARGETS = {"wall_s": 120, "wall_s_goal": 60, "peak_memory_gib": 4}


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'1000000:50000,10000000:200000' -> [(1000000, 50000), (10000000, 200000)]; '1e6:5e4' works too."""
    sizes = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        n, sep, s = part.partition(":")
        if not sep:
            raise SystemExit(f"--sizes: {part!r} is not UTTERANCES:SPEAKERS")
        sizes.append((int(float(n)), int(float(s))))
    return sizes


def _write_chunk(args) -> str:
    path, first, n, speakers = args
    if not Path(path).exists():
        synthetic_corpus(n, speakers, 20, seed=0, first_utt=first).to_parquet(path + ".tmp", index=False)
        os.replace(path + ".tmp", path)
    return path


def write_chunks(directory: Path, n_utts: int, speakers: int) -> list[Path]:
    """The corpus as 100k-utterance Parquet chunks, generated in parallel (prefixes are the smaller corpora)."""
    directory.mkdir(parents=True, exist_ok=True)
    jobs = [(str(directory / f"part-{i:05d}.parquet"), first, min(CHUNK, n_utts - first), speakers)
            for i, first in enumerate(range(0, n_utts, CHUNK))]
    with ProcessPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
        return [Path(p) for p in pool.map(_write_chunk, jobs)]


def one_file(chunks: list[Path], path: Path, rows: int | None = None) -> Path:
    """The first ``rows`` rows of the chunks (all by default) as one Parquet file, one row group per chunk
    (streamed: one chunk in memory at a time)."""
    import pyarrow.parquet as pq

    writer, left = None, rows
    for chunk in chunks:
        table = pq.read_table(chunk)
        if left is not None:
            table = table.slice(0, left)
            left -= len(table)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=CHUNK)
        if left == 0:
            break
    writer.close()
    return path


def audit(manifest: Path, out: Path, engine: str, n_boot: int, workers: int | None) -> dict:
    command = [sys.executable, "-m", "fairspeech.cli", "audit", str(manifest), "--by", "cohort", "--out", str(out),
               "--n-boot", str(n_boot), "--n-permutations", str(n_boot), "--seed", "0", "--no-progress"]
    if workers:
        command += ["--workers", str(workers)]
    if engine == "dask":
        command += ["--engine", "dask"]
    run = run_measured(command)
    report = json.loads((out / "audit.json").read_text())
    run["stages_s"] = {k: round(v, 3) for k, v in report["timings_s"].items()}
    run["overall_wer"] = report["overall"]["wer"]
    return run


def _batches(manifest: Path, limit: int | None):
    """(references, hypotheses) as Python lists, one row group at a time, up to ``limit`` rows."""
    import pyarrow.parquet as pq

    file, seen = pq.ParquetFile(manifest), 0
    for group in range(file.num_row_groups):
        table = file.read_row_group(group, columns=["reference", "hypothesis"])
        if limit is not None:
            table = table.slice(0, max(0, limit - seen))
        if not len(table):
            break
        seen += len(table)
        yield table.column(0).to_pylist(), table.column(1).to_pylist()


def rapidfuzz_alone(manifest: Path, limit: int | None) -> dict:
    """rapidfuzz's word-level edit script per pair (lists of words), counting its operations: the floor."""
    from fairspeech.metrics.wer import edit_counts

    rows, elapsed, errors = 0, 0.0, 0
    for refs, hyps in _batches(manifest, limit):
        start = time.perf_counter()
        for ref, hyp in zip(refs, hyps):
            errors += sum(edit_counts(ref.split(), hyp.split()))
        elapsed += time.perf_counter() - start
        rows += len(refs)
    return {"rows": rows, "wall_s": round(elapsed, 3), "utterances_per_s": round(rows / elapsed), "errors": errors,
            "what": "rapidfuzz.distance.Levenshtein.editops over str.split() word lists, S/D/I counted; one process, texts already in memory"}


def jiwer_alone(manifest: Path, limit: int | None) -> dict:
    import jiwer

    rows, elapsed, errors = 0, 0.0, 0
    for refs, hyps in _batches(manifest, limit):
        start = time.perf_counter()
        out = jiwer.process_words(refs, hyps)
        elapsed += time.perf_counter() - start
        rows += len(refs)
        errors += out.substitutions + out.deletions + out.insertions
    return {"rows": rows, "wall_s": round(elapsed, 3), "utterances_per_s": round(rows / elapsed), "errors": errors,
            "what": "jiwer.process_words(references, hypotheses) per 100k-row batch; one process, texts already in memory"}


def fairlearn_route(manifest: Path, rows: int, n_boot: int) -> dict:
    import jiwer
    import pandas as pd
    from fairlearn.metrics import MetricFrame

    frame = pd.read_parquet(manifest).iloc[:rows]

    def wer(y_true, y_pred):
        return jiwer.wer(list(y_true), list(y_pred))

    start = time.perf_counter()
    mf = MetricFrame(
        metrics=wer, y_true=frame["reference"].to_numpy(), y_pred=frame["hypothesis"].to_numpy(),
        sensitive_features=frame["cohort"].to_numpy(), n_boot=n_boot, ci_quantiles=[0.025, 0.975], random_state=0,
    )
    _ = mf.by_group_ci
    return {"rows": len(frame), "n_boot": n_boot, "wall_s": round(time.perf_counter() - start, 3),
            "what": "fairlearn MetricFrame(jiwer.wer, n_boot) by cohort; resamples rows"}


def scaling_table(runs: list[dict]) -> dict:
    """Per run: seconds per million utterances; and a least-squares fit wall = a + b * utterances + c * speakers
    with each run's relative residual (linear cost: small residuals, no growth of seconds per utterance)."""
    table = [{"utterances": r["utterances"], "speakers": r["speakers"], "wall_s": r["wall_s"], "peak_memory_gib": r["peak_memory_gib"],
              "wall_s_per_million_utterances": round(r["wall_s"] / (r["utterances"] / 1e6), 2)} for r in runs]
    fit = None
    if len({(r["utterances"], r["speakers"]) for r in runs}) >= 3:
        x = np.array([[1.0, r["utterances"] / 1e6, r["speakers"] / 1e5] for r in runs])
        y = np.array([r["wall_s"] for r in runs])
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        predicted = x @ coef
        for row, p in zip(table, predicted):
            row["linear_fit_s"] = round(float(p), 2)
            row["relative_residual"] = round(float((row["wall_s"] - p) / p), 3) if p > 0 else None
        fit = {"intercept_s": round(float(coef[0]), 2), "s_per_million_utterances": round(float(coef[1]), 2),
               "s_per_100k_speakers": round(float(coef[2]), 2)}
    return {"rows": table, "linear_fit": fit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="UTTERANCES:SPEAKERS,... (default: the issue's table)")
    parser.add_argument("--engine", choices=["memory", "dask"], default="memory")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates and permutations")
    parser.add_argument("--workers", type=int, default=None, help="--workers for the CLI (default: all CPUs)")
    parser.add_argument("--baseline-rows", type=int, default=0,
                        help="rows of the largest run for the jiwer / rapidfuzz baselines (0: all; then scaled to each run)")
    parser.add_argument("--peer-rows", type=int, default=5_000, help="rows for fairlearn MetricFrame (0: skip)")
    parser.add_argument("--peer-boot", type=int, default=20)
    parser.add_argument("--data-dir", default=None, help="folder for the generated corpora, removed at the end (default: the system's temporary folder; 10M rows take ~1.5 GB)")
    parser.add_argument("--out", default=None, help="write the JSON here (default: benchmarks/results/audit_scale.json)")
    args = parser.parse_args()
    sizes = parse_sizes(args.sizes)

    result = {"benchmark": "audit_scale", "machine": machine(), "load_average_at_start": os.getloadavg(),
              "workload": {"cohorts": 20, "n_boot": args.n_boot, "n_permutations": args.n_boot, "engine": args.engine,
                           "command": "fairspeech audit M.parquet --by cohort --n-boot B --n-permutations B --seed 0"},
              "targets": {**TARGETS, "at": "10000000 utterances, 200000 speakers"}, "runs": []}
    with tempfile.TemporaryDirectory(dir=args.data_dir) as tmp:
        tmp = Path(tmp)
        files = {}
        for speakers in sorted({s for _, s in sizes}):
            chunks = write_chunks(tmp / f"chunks_{speakers}", max(n for n, s in sizes if s == speakers), speakers)
            for n in sorted({n for n, s in sizes if s == speakers}):
                used = chunks[: -(-n // CHUNK)]
                if args.engine == "dask":  # whole chunks linked, a partial last one written
                    directory = tmp / f"parts_{n}_{speakers}"
                    directory.mkdir()
                    for i, chunk in enumerate(used):
                        if (i + 1) * CHUNK <= n:
                            (directory / chunk.name).symlink_to(chunk)
                        else:
                            one_file([chunk], directory / chunk.name, n - i * CHUNK)
                    files[n, speakers] = directory
                else:
                    files[n, speakers] = one_file(used, tmp / f"manifest_{n}_{speakers}.parquet", n)
        for n, speakers in sizes:
            run = audit(files[n, speakers], tmp / f"out_{n}_{speakers}", args.engine, args.n_boot, args.workers)
            result["runs"].append({"utterances": n, "speakers": speakers, "engine": args.engine, **run})
            print(json.dumps(result["runs"][-1]), flush=True)

        largest = max(sizes)
        baseline_file = files[largest] if args.engine == "memory" else one_file(sorted(files[largest].glob("*.parquet")), tmp / "baseline.parquet")
        limit = args.baseline_rows or None
        result["baselines"] = {"rapidfuzz_alone": rapidfuzz_alone(baseline_file, limit), "jiwer_process_words": jiwer_alone(baseline_file, limit)}
        if args.peer_rows:
            result["baselines"]["fairlearn_jiwer"] = fairlearn_route(baseline_file, args.peer_rows, args.peer_boot)

    for run in result["runs"]:
        run["audit_over_baseline"] = {}
        for name in ("rapidfuzz_alone", "jiwer_process_words"):
            base = result["baselines"][name]
            scaled = base["wall_s"] * run["utterances"] / base["rows"]  # the same rows when the run is the largest and all rows were used
            run["audit_over_baseline"][name] = round(run["wall_s"] / scaled, 3)
        peer = result["baselines"].get("fairlearn_jiwer")
        if peer:
            ours = run["wall_s"] / (run["utterances"] * (args.n_boot + 1))
            theirs = peer["wall_s"] / (peer["rows"] * (peer["n_boot"] + 1))
            run["speedup_per_row_replicate_vs_fairlearn"] = round(theirs / ours, 1)
    result["scaling"] = scaling_table(result["runs"])
    headline = [r for r in result["runs"] if (r["utterances"], r["speakers"]) == (10_000_000, 200_000)]
    if headline:
        r = headline[0]
        result["meets_targets"] = {"wall_s": r["wall_s"] <= TARGETS["wall_s"], "wall_s_goal": r["wall_s"] <= TARGETS["wall_s_goal"],
                                   "peak_memory_gib": r["peak_memory_gib"] <= TARGETS["peak_memory_gib"]}
    if args.out:
        text = json.dumps(result, indent=2)
        print(text)
        Path(args.out).write_text(text + "\n")
    else:
        save("audit_scale" + ("_dask" if args.engine == "dask" else ""), result)


if __name__ == "__main__":
    main()
