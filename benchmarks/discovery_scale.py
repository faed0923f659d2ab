"""Cohort discovery at scale (issue 4): the geographic tree and embedding k-means.

Workloads:
- geographic tree: 1,000,000 utterances of 100,000 speakers spread over the continental US box
  with a planted high-WER rectangle; timed from the utterance table (speaker aggregation included)
  to the fitted tree, with its permutation tests (199 per tested split). Target: under 10 s.
- k-means: 100,000 speaker embeddings of dimension 256 (8 planted clusters) with k = 8 given, from
  the speaker frame to fitted clusters with the permutation test (MiniBatchKMeans at this size).
  Target: under 20 s. Also timed once with k chosen by silhouette (k = 2..10), for information.

Each timing is repeated (``--repeats``) and reported as every run plus the best; the machine is
shared, so the load average is recorded before and after.

    python benchmarks/discovery_scale.py            # full size, writes benchmarks/results/discovery_scale.json
    python benchmarks/discovery_scale.py --quick    # a tenth of the size, to check the script
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save  # noqa: E402

from fairspeech.cohorts import EmbeddingKMeans, GeoClusteringTree  # noqa: E402
from fairspeech.cohorts import synthetic as syn  # noqa: E402
from fairspeech.data.speakers import speaker_table  # noqa: E402


def timed(function, repeats: int) -> tuple[list[float], object]:
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(round(time.perf_counter() - start, 3))
    return seconds, result


def geo_tree(n_speakers: int, utterances_per_speaker: float, repeats: int) -> dict:
    corpus = syn.planted_map(n_speakers=n_speakers, seed=0, utterances_per_speaker=utterances_per_speaker)
    utterances = corpus.utterances[["utt_id", "speaker_id", "lat", "lon", "errors", "ref_words"]]
    model = GeoClusteringTree(min_speakers=200, max_regions=8, n_permutations=199, seed=0)

    def run():
        return model.fit(speaker_table(utterances, ["lat", "lon"]))

    seconds, tree = timed(run, repeats)
    splits = tree.splits_
    return {
        "utterances": len(utterances),
        "speakers": int(utterances["speaker_id"].nunique()),
        "params": {k: v for k, v in tree.get_params().items()},
        "seconds": seconds,
        "best_s": min(seconds),
        "target_s": 10,
        "regions": int(len(tree.regions_)),
        "splits_tested": int(len(splits)),
        "permutations_run": int(splits["permutations"].sum()),
        "worst_region": tree.regions_.iloc[0]["description"],
        "planted_box": list(corpus.truth["plant_box"]),
        "what": "speaker_table(1M utterances) + GeoClusteringTree.fit with a permutation test per tested split",
    }


def kmeans(n_speakers: int, dim: int, k: int, repeats: int) -> dict:
    corpus = syn.planted_clusters(n_speakers=n_speakers, seed=0, k=k, dim=dim, noise=1.0)
    speakers = speaker_table(corpus.utterances).join(corpus.embeddings.astype(np.float32).add_prefix("emb_"))
    given = EmbeddingKMeans(k=k, seed=0)
    seconds, model = timed(lambda: given.fit(speakers), repeats)
    chosen_seconds, chosen = timed(lambda: EmbeddingKMeans(k=None, k_range=(2, 10), seed=0).fit(speakers), 1)
    return {
        "speakers": len(speakers),
        "dimension": dim,
        "k": k,
        "algorithm": type(model.model_).__name__,
        "seconds": seconds,
        "best_s": min(seconds),
        "target_s": 20,
        "p_value": model.p_value_,
        "k_chosen_by_silhouette": {"seconds": chosen_seconds[0], "k": chosen.k_, "sample": chosen.silhouette_sample},
        "what": "EmbeddingKMeans.fit: L2-normalize, MiniBatchKMeans (3 inits), max-statistic permutation test (999)",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--speakers", type=int, default=100_000)
    parser.add_argument("--utterances-per-speaker", type=float, default=10)
    parser.add_argument("--dimension", type=int, default=256)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.speakers, args.repeats = 10_000, 1

    load_before = os.getloadavg()
    result = {
        "benchmark": "discovery_scale",
        "machine": machine(),
        "geo_tree": geo_tree(args.speakers, args.utterances_per_speaker, args.repeats),
        "embedding_kmeans": kmeans(args.speakers, args.dimension, args.k, args.repeats),
        "load_average_1m": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
    }
    if args.quick:
        import json

        print(json.dumps(result, indent=2, default=str))
    else:
        save("discovery_scale", result)


if __name__ == "__main__":
    main()
