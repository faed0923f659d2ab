"""``fairspeech finetune --model SPEC``: EWC fine-tuning of the user's recognizer for the rows a query
picks (the worst cohorts an audit found), with every cohort reported before and after.

    fairspeech finetune --model hf:models/my-wav2vec2 --manifest train.csv --target "accent == 'scottish'" \\
        --eval-manifest dev.csv --by accent,gender --out runs/ewc_mine --lambda 100 --epochs 3 --lr 1e-5

Writes ``out/model`` (the fine-tuned model, same format as given), ``out/hypotheses_before.csv`` and
``out/hypotheses_after.csv`` (manifests ``fairspeech audit`` reads), and ``out/finetune_report.json``:
per cohort of each ``--by`` attribute the WER before and after, the negative flip rates (utterance
and word) with speaker-bootstrap intervals, and across cohorts the WER mean, max and variance before
and after. Training resumes from ``out/train`` if interrupted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from fairspeech.asr.data import resolve_audio_paths
from fairspeech.asr.user_model import load_model
from fairspeech.data import schema
from fairspeech.data.manifest import read_manifest
from fairspeech.errors import InputError
from fairspeech.metrics.flips import OVERALL
from fairspeech.mitigation.adapt import ewc_finetune
from fairspeech.mitigation.finetune import flip_tables
from fairspeech.utils import io


def select_rows(frame: pd.DataFrame, query: str, source: str) -> np.ndarray:
    """Positions of the rows ``query`` (a pandas query) selects; an invalid or empty selection is an input error."""
    try:
        mask = frame.eval(query)
    except Exception as error:  # pandas raises many kinds for a bad expression
        raise InputError(f"{source}: --target {query!r} is not a valid query over its columns ({error})") from None
    rows = np.flatnonzero(np.asarray(mask, dtype=bool))
    if not len(rows):
        raise InputError(f"{source}: --target {query!r} selects no rows")
    return rows


def cohort_report(frame: pd.DataFrame, before: Sequence[str], after: Sequence[str], by: Sequence[str], n_boot: int, seed: int) -> dict:
    """Overall and per cohort of each ``by`` attribute: WER before and after, negative flip rates with intervals,
    and the across-cohort WER mean, max and variance before and after."""
    for attribute in by:
        if attribute not in frame.columns:
            raise InputError(f"--by {attribute!r}: not a column of the evaluation manifest")
    keep = ["speakers", "utterances", "old_wer", "new_wer", "new_wer_low", "new_wer_high", "negative_flip_rate", "negative_flip_rate_low",
            "negative_flip_rate_high", "word_negative_flip_rate", "word_negative_flip_rate_low", "word_negative_flip_rate_high"]
    tables = flip_tables(frame, before, after, [None, *by], n_boot, seed)
    report = {"overall": tables[None].loc[OVERALL, keep].to_dict(), "by": {}}
    for attribute in by:
        t = tables[attribute].drop(index=[OVERALL, "(missing)"], errors="ignore")
        cohorts = {str(c): t.loc[c, keep].to_dict() for c in t.index}
        old, new = t["old_wer"].to_numpy(), t["new_wer"].to_numpy()
        report["by"][attribute] = {
            "cohorts": cohorts,
            "across_cohorts": {"before": {"wer_mean": float(old.mean()), "wer_max": float(old.max()), "wer_variance": float(old.var())},
                               "after": {"wer_mean": float(new.mean()), "wer_max": float(new.max()), "wer_variance": float(new.var())}},
        }
    return report


def finetune_model(model: str, manifest: str | Path, target: str, out: str | Path, eval_manifest: str | Path | None = None,
                   by: Sequence[str] = (), audio_dir: str | Path | None = None, lam: float = 100.0, epochs: int = 3, lr: float = 1e-5,
                   fisher_samples: int = 500, seed: int = 0, device: str | None = None, n_boot: int = 1000, progress: bool = True) -> dict:
    started = time.perf_counter()
    out = Path(out)
    loaded = load_model(model, device)
    train_frame = resolve_audio_paths(read_manifest(manifest, require_hypothesis=False).frame, manifest, audio_dir)
    targets = select_rows(train_frame, target, str(manifest))
    data = loaded.dataset(train_frame)
    eval_path = eval_manifest or manifest
    eval_frame = resolve_audio_paths(read_manifest(eval_path, require_hypothesis=False).frame, eval_path, audio_dir)
    eval_data = loaded.dataset(eval_frame, with_targets=False)
    before = loaded.transcribe(eval_data)
    summary = ewc_finetune(loaded.module, data, targets, objective=loaded.objective, lam=lam, fisher_samples=fisher_samples, epochs=epochs,
                           lr=lr, exp_dir=out / "train", seed=seed, progress=progress)
    after = loaded.transcribe(eval_data)
    saved = loaded.save(out / "model")
    columns = [c for c in [schema.UTT_ID, schema.SPEAKER_ID, schema.REFERENCE, *by, schema.AUDIO_PATH] if c in eval_frame.columns]
    for name, hyps in (("before", before), ("after", after)):
        io.write_text(out / f"hypotheses_{name}.csv", eval_frame[columns].assign(**{schema.HYPOTHESIS: hyps}).to_csv(index=False))
    report = {"model": model, "saved": str(saved), "manifest": str(manifest), "eval_manifest": str(eval_path), "target": target,
              "target_utterances": int(len(targets)), "seed": seed, "lambda": lam, "epochs": epochs, "lr": lr,
              "train": {k: v for k, v in summary.items() if k != "log"},
              **cohort_report(eval_frame, before, after, by, n_boot, seed), "wall_minutes": (time.perf_counter() - started) / 60}
    io.write_json(out / "finetune_report.json", report)
    return report
