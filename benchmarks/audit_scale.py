"""Full audit at scale, against fairlearn's MetricFrame + jiwer on a subset it can finish.

Workload (issue 2): 1,000,000 utterances, 50,000 speakers, realistic sentence lengths, 20 cohorts,
1,000 speaker-bootstrap replicates (and 1,000 permutations). The audit runs as the real CLI in a
fresh process, reading Parquet and writing every output; wall time and peak memory (PSS of the
process tree) are measured from outside.

Peer: fairlearn.metrics.MetricFrame with a jiwer WER metric and ``n_boot`` (it resamples rows, not
speakers) on a subset; the comparison is seconds per (row x replicate), both measured in this run.

    python benchmarks/audit_scale.py            # full size
    python benchmarks/audit_scale.py --quick    # 50k utterances, to check the script
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, run_measured, save, synthetic_corpus  # noqa: E402


def fairlearn_route(frame, n_boot: int) -> dict:
    import jiwer
    from fairlearn.metrics import MetricFrame

    def wer(y_true, y_pred):
        return jiwer.wer(list(y_true), list(y_pred))

    start = time.perf_counter()
    mf = MetricFrame(
        metrics=wer, y_true=frame["reference"].to_numpy(), y_pred=frame["hypothesis"].to_numpy(),
        sensitive_features=frame["cohort"].to_numpy(), n_boot=n_boot, ci_quantiles=[0.025, 0.975], random_state=0,
    )
    _ = mf.by_group_ci
    return {"rows": len(frame), "n_boot": n_boot, "wall_s": round(time.perf_counter() - start, 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--utterances", type=int, default=1_000_000)
    parser.add_argument("--speakers", type=int, default=50_000)
    parser.add_argument("--cohorts", type=int, default=20)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--peer-rows", type=int, default=5_000)
    parser.add_argument("--peer-boot", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.utterances, args.speakers = 50_000, 2_500

    frame = synthetic_corpus(args.utterances, args.speakers, args.cohorts, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "manifest.parquet"
        frame.to_parquet(manifest, index=False)
        ours = run_measured([
            sys.executable, "-m", "fairspeech.cli", "audit", str(manifest), "--by", "cohort", "--out", str(Path(tmp) / "out"),
            "--n-boot", str(args.n_boot), "--n-permutations", str(args.n_boot), "--seed", "0", "--no-progress",
        ])
        import json

        timings = json.loads((Path(tmp) / "out" / "audit.json").read_text())["timings_s"]
    peer = fairlearn_route(frame.iloc[: args.peer_rows], args.peer_boot)
    ours_per = ours["wall_s"] / (args.utterances * (args.n_boot + 1))
    peer_per = peer["wall_s"] / (peer["rows"] * (peer["n_boot"] + 1))
    result = {
        "benchmark": "audit_scale",
        "machine": machine(),
        "workload": {"utterances": args.utterances, "speakers": args.speakers, "cohorts": args.cohorts, "n_boot": args.n_boot,
                     "n_permutations": args.n_boot, "mean_ref_words": round(frame["reference"].str.count(" ").mean() + 1, 2)},
        "fairspeech": {"wall_s": ours["wall_s"], "peak_memory_gib": ours["peak_memory_gib"], "stages_s": timings,
                       "what": "fairspeech audit CLI in a fresh process: read Parquet, align, cohort table with speaker bootstrap and permutation tests, write JSON/CSV/HTML/PNG"},
        "fairlearn_jiwer": {**peer, "what": "fairlearn MetricFrame(jiwer.wer, n_boot) by cohort; resamples rows"},
        "seconds_per_row_replicate": {"fairspeech": ours_per, "fairlearn_jiwer": peer_per},
        "speedup_per_row_replicate": round(peer_per / ours_per, 1),
        "targets": {"wall_s": 30, "peak_memory_gib": 2, "speedup": 100},
    }
    result["meets_targets"] = {
        "wall_s": ours["wall_s"] < 30, "peak_memory_gib": ours["peak_memory_gib"] < 2, "speedup": result["speedup_per_row_replicate"] >= 100,
    }
    save("audit_scale" + ("_quick" if args.quick else ""), result)


if __name__ == "__main__":
    main()
