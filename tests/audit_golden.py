"""A mid-sized audit whose every number is pinned (tests/data/audit_golden.json) across speed work.

    python tests/audit_golden.py tests/data/audit_golden.json    # regenerate (only when the statistics change on purpose)

The manifest mixes what the fast paths must keep identical: punctuation, casing, apostrophe
look-alikes and other whitespace in the texts, a speaker-level attribute with missing values, an
attribute that varies within speakers, and an intersection.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd

N_BOOT = 200
SEED = 3
BY = "gender,region,gender*region"


def golden_frame(n_utts: int = 20_000, n_speakers: int = 1_500) -> pd.DataFrame:
    rng = np.random.default_rng(2026)
    vocab = np.array([f"w{i}" for i in range(400)] + ["Don’t", "don't", "naïve", "NAÏVE", "e\u0301t\u00e9", "été", "a,b", "--", "x\u00a0y", "Straße"], dtype=object)
    p = 1.0 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    speaker = rng.integers(0, n_speakers, n_utts)
    rate = rng.beta(2, 10, n_speakers)
    refs, hyps = [], []
    for i in range(n_utts):
        words = list(vocab[rng.choice(len(vocab), rng.integers(1, 16), p=p)])
        hyp = []
        for w in words:
            u = rng.random()
            r = rate[speaker[i]]
            if u < 0.6 * r:
                hyp.append(vocab[rng.choice(len(vocab), p=p)])
            elif u < 0.85 * r:
                continue
            else:
                hyp.append(w.upper() if u > 0.97 else w)
                if u < r:
                    hyp.append(vocab[rng.choice(len(vocab), p=p)])
        refs.append(" ".join(words) + ("." if i % 3 == 0 else ""))
        hyps.append("  ".join(hyp))
    gender = np.array(["f", "m", "x", None], dtype=object)[rng.choice(4, n_speakers, p=[0.45, 0.45, 0.05, 0.05])]
    return pd.DataFrame({
        "utt_id": [f"u{i:06d}" for i in range(n_utts)],
        "speaker_id": [f"s{s:05d}" for s in speaker],
        "reference": refs,
        "hypothesis": hyps,
        "gender": gender[speaker],
        "region": np.array(["north", "south", "east", "west", "centre"], dtype=object)[(speaker + rng.integers(0, 2, n_utts)) % 5],
    })


def golden_audit(tmp_dir) -> dict:
    from fairspeech.audit import run_audit
    from fairspeech.data.manifest import read_manifest

    path = f"{tmp_dir}/golden.parquet"
    golden_frame().to_parquet(path, index=False)
    result = run_audit(read_manifest(path), BY, n_boot=N_BOOT, n_permutations=N_BOOT, seed=SEED, progress=False, workers=1)
    data = result.to_dict()
    data.pop("timings_s")
    data.pop("fairspeech_version")
    data["input"].pop("path")
    counts = result.utterances[["hits", "substitutions", "deletions", "insertions", "ref_words"]].to_numpy()
    data["alignment_totals"] = counts.sum(axis=0).tolist()
    data["alignment_checksum"] = int((counts * np.arange(1, len(counts) + 1)[:, None]).sum())
    return json.loads(json.dumps(data))


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        data = golden_audit(tmp)
    with open(sys.argv[1], "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write("\n")
