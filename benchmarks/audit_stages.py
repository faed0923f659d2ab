"""Per-stage profile of the in-memory audit, in one process: where the time goes, by stage.

The stages are those of ``fairspeech audit MANIFEST.parquet --by cohort``: import, read Parquet,
validate, normalize + align (one step: each distinct token is normalized once while encoding),
per-speaker sums, bootstrap, permutation tests, jackknife intervals, Benjamini-Hochberg, the gap's
simultaneous interval, and the report (figures, JSON, CSV, alignments.parquet, HTML). Timers wrap
the library's own functions, so the numbers add up to the audit the CLI runs.

    python benchmarks/audit_stages.py --sizes 200000:40000,200000:10000          # JSON on stdout
    python benchmarks/audit_stages.py --sizes 1000000:200000 --out /tmp/stages.json

Compare stages within one run (as shares of the total) when the CPU is shared with other jobs.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

_START = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, synthetic_corpus  # noqa: E402


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'1000000:50000,10000000:200000' -> [(1000000, 50000), (10000000, 200000)] (utterances:speakers)."""
    sizes = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        n, _, s = part.partition(":")
        sizes.append((int(float(n)), int(float(s))))
    return sizes


def _children_cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


def _cpu() -> float:
    """CPU seconds of the calling thread and of finished child processes (the alignment workers), robust
    to a CPU shared with other jobs; a stage run in a helper thread (the permutation tests) is timed
    on its own thread."""
    return time.thread_time() + _children_cpu()


def _process_cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime + _children_cpu()


class _Clock:
    """perf_counter-like: wall seconds, or CPU seconds (``cpu=True``)."""

    def __init__(self, cpu: bool):
        self.now = _cpu if cpu else time.perf_counter


def profile(manifest: Path, out: Path, n_boot: int, n_permutations: int, workers: int | None, cpu: bool = False) -> dict:
    clock = _Clock(cpu).now
    timings: dict[str, float] = collections.defaultdict(float)
    start = clock()
    from fairspeech import audit as audit_module
    from fairspeech.data import manifest as manifest_module
    from fairspeech.data import readers
    from fairspeech.metrics import bootstrap as bs
    from fairspeech.metrics import cohort_frame
    from fairspeech.report import html, plots

    timings["import"] = clock() - start

    def timed(module, name: str, stage: str) -> None:
        original = getattr(module, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            t = clock()
            try:
                return original(*args, **kwargs)
            finally:
                timings[stage] += clock() - t

        setattr(module, name, wrapper)

    manifest_module.READERS = dict(manifest_module.READERS)
    original_reader = readers.read_parquet

    def read(path):
        t = clock()
        try:
            return original_reader(path)
        finally:
            timings["read"] += clock() - t

    manifest_module.READERS["parquet"] = read
    timed(manifest_module, "validate", "validate")
    timed(audit_module, "score_utterances", "score_total")
    timed(audit_module, "alignment_counts", "normalize+align")
    timed(cohort_frame, "unit_sums", "speaker_sums")
    if hasattr(audit_module, "speaker_units"):  # one reduction of the utterances, before the cohort tables
        timed(audit_module, "speaker_units", "speaker_sums")
    timed(bs, "stratified_bootstrap", "bootstrap")
    timed(bs, "permutation_tests", "permutation")
    for name in ("jackknife_se", "to_overall_intervals", "effective_df", "t_interval"):
        timed(bs, name, "jackknife")
    timed(bs, "benjamini_hochberg", "bh")
    timed(bs, "simultaneous_critical", "gap_simultaneous")
    timed(plots, "png_bytes", "report_figures")
    timed(plots, "cohort_bars", "report_figures")
    timed(html, "render_report", "report_html")

    t = clock()
    m = manifest_module.read_manifest(manifest)
    timings["read_manifest_total"] = clock() - t
    t = clock()
    result = audit_module.run_audit(m, "cohort", n_boot=n_boot, n_permutations=n_permutations, seed=0, workers=workers, progress=False)
    timings["run_audit_total"] = clock() - t
    t = clock()
    result.write(out)
    timings["write_total"] = clock() - t
    timings["total"] = _process_cpu() if cpu else clock() - _START
    inner = {"bootstrap", "permutation", "jackknife", "bh", "gap_simultaneous", "speaker_sums"}
    # (on the CPU clock the permutation tests' thread overlaps the bootstrap; this is wall-clock bookkeeping)
    if not cpu:
        timings["cohort_tables_other"] = result.timings["cohort_tables"] + result.timings.get("speaker_sums", 0.0) - sum(timings[k] for k in inner)
    timings["score_other"] = timings["score_total"] - timings["normalize+align"]
    timings["report_other"] = timings["write_total"] - timings["report_figures"] - timings["report_html"]
    if cpu:  # Arrow's reader and writer threads, and start-up: not on any timed thread
        timings["untimed_threads_and_startup"] = timings["total"] - sum(
            v for k, v in timings.items() if k in {"import", "read", "validate", "score_total", "speaker_sums", "jackknife", "bootstrap",
                                                   "permutation", "bh", "gap_simultaneous", "write_total"})
    timings["discovery"] = result.timings.get("discovery", 0.0)
    shares = {k: round(v / timings["total"], 4) for k, v in timings.items() if not k.endswith("_total") and k != "total"}
    return {"seconds": {k: round(v, 3) for k, v in timings.items()}, "share_of_total": shares}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="200000:40000,200000:10000", help="UTTERANCES:SPEAKERS,...")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--n-permutations", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--manifest", default=None, help="profile this Parquet manifest instead (one size)")
    parser.add_argument("--out", default=None, help="write the JSON here too")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: CPU seconds of the process and its alignment workers, for a CPU shared with other jobs")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.manifest:
            targets = [(Path(args.manifest), None, None)]
        else:
            targets = []
            for n, s in parse_sizes(args.sizes):
                path = Path(tmp) / f"m_{n}_{s}.parquet"
                synthetic_corpus(n, s, 20, seed=0).to_parquet(path, index=False)
                targets.append((path, n, s))
        for path, n, s in targets:
            # Each size in a fresh process, so imports and caches count as in the CLI.
            import subprocess

            code = (
                "import sys, json; sys.path.insert(0, %r); import audit_stages as a; "
                "print(json.dumps(a.profile(__import__('pathlib').Path(%r), __import__('pathlib').Path(%r), %d, %d, %r, %r)))"
                % (str(Path(__file__).resolve().parent), str(path), str(Path(tmp) / f"out_{path.stem}"), args.n_boot, args.n_permutations,
                   args.workers, args.clock == "cpu")
            )
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            runs.append({"utterances": n, "speakers": s, "manifest": str(path) if args.manifest else None,
                         **json.loads(done.stdout.strip().splitlines()[-1])})
    result = {"benchmark": "audit_stages", "machine": machine(), "clock": args.clock, "n_boot": args.n_boot, "n_permutations": args.n_permutations, "runs": runs}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
