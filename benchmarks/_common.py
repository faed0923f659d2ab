"""Shared benchmark helpers: synthetic corpora at scale, peak-memory sampling, JSON results."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    return {"cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(), "platform": platform.platform()}


def save(name: str, result: dict) -> None:
    """Print the JSON and keep it as benchmarks/results/NAME.json (atomically)."""
    from fairspeech.utils.io import write_json

    text = json.dumps(result, indent=2)
    print(text)
    write_json(RESULTS / f"{name}.json", result)


def synthetic_corpus(n_utts: int, n_speakers: int, n_cohorts: int, seed: int = 0, first_utt: int = 0) -> pd.DataFrame:
    """Utterances with realistic lengths (1-30 words, mean ~10), a Zipfian 20k-word vocabulary, and
    hypotheses corrupted at each speaker's own error rate (substitutions, deletions, insertions).
    Cohort membership shifts the rate so cohorts really differ.

    Speakers depend on ``seed`` only, utterances on (seed, first_utt): a large corpus can be made
    chunk by chunk (``first_utt`` = rows made so far) with the same speakers throughout."""
    speakers_rng = np.random.default_rng(seed)
    cohort_of_speaker = speakers_rng.integers(0, n_cohorts, n_speakers)
    rate = np.clip(speakers_rng.beta(2, 14, n_speakers) * (1 + 0.08 * cohort_of_speaker), 0, 0.9)
    rng = np.random.default_rng([seed, first_utt])
    vocab = np.array([f"w{i}" for i in range(20_000)], dtype=object)
    zipf = 1.0 / np.arange(1, len(vocab) + 1)
    zipf /= zipf.sum()
    speaker = rng.integers(0, n_speakers, n_utts)
    lengths = np.clip(rng.poisson(9, n_utts) + 1, 1, 30)
    words = rng.choice(len(vocab), size=int(lengths.sum()), p=zipf)
    ops = rng.random(len(words))
    r = rate[np.repeat(speaker, lengths)]
    # Per word: substitute, delete, insert-after, or keep, with the speaker's rate split 60/25/15.
    substitute = ops < 0.6 * r
    delete = (ops >= 0.6 * r) & (ops < 0.85 * r)
    insert = (ops >= 0.85 * r) & (ops < r)
    replacement = rng.choice(len(vocab), size=len(words), p=zipf)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    refs, hyps = [], []
    for i in range(n_utts):
        s, e = bounds[i], bounds[i + 1]
        ref_words = vocab[words[s:e]]
        hyp = []
        for j in range(s, e):
            if delete[j]:
                continue
            hyp.append(vocab[replacement[j]] if substitute[j] else vocab[words[j]])
            if insert[j]:
                hyp.append(vocab[replacement[j]])
        refs.append(" ".join(ref_words))
        hyps.append(" ".join(hyp))
    return pd.DataFrame(
        {
            "utt_id": [f"u{i:09d}" for i in range(first_utt, first_utt + n_utts)],
            "speaker_id": [f"s{s:06d}" for s in speaker],
            "reference": refs,
            "hypothesis": hyps,
            "cohort": [f"c{c:02d}" for c in cohort_of_speaker[speaker]],
        }
    )


class PeakMemory:
    """Peak proportional set size (PSS: shared pages split fairly) of a process tree, sampled."""

    def __init__(self, pid: int, interval: float = 0.05):
        import psutil

        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        import psutil

        total = 0
        try:
            tree = [self.process] + self.process.children(recursive=True)
        except psutil.Error:  # a process of the tree ended while it was being listed: skip this sample
            return 0
        for proc in tree:
            try:
                total += proc.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_measured(command: list[str]) -> dict:
    """Run a command; wall time and the peak PSS of its whole process tree."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with PeakMemory(proc.pid) as memory:
        stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(stderr)
        raise RuntimeError(f"{command} failed with {proc.returncode}")
    return {"wall_s": round(wall, 3), "peak_memory_gib": round(memory.peak / 2**30, 3), "stdout_tail": stdout.strip().splitlines()[-3:]}
