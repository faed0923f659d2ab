"""Evaluation: transcribe a split, write a manifest the audit reads, run the audit per cohort.

    python -m fairspeech.asr.evaluate exp/asr_baseline/model.safetensors --out exp/asr_baseline/eval

For each split this writes ``{split}_manifest.parquet`` (utt_id, speaker_id, reference, our
hypothesis, every metadata column of the corpus, the corpus's own hypothesis as ``prior_hypothesis``
(scored too, for comparison), and the per-utterance compute routing of models that route) and ``audit_{split}/`` (the audit's JSON, CSV, HTML report and figures), so any model of
the stack is auditable per cohort with ``fairspeech audit`` as well.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from fairspeech.training import checkpoint as ckpt
from fairspeech.asr import efficiency
from fairspeech.asr.config import RecipeConfig, build_model, dict_to_config, parse_override
from fairspeech.asr.data import SplitData, load_splits
from fairspeech.asr.decode import decode
from fairspeech.asr.tokenizer import tokenizer_from_dict
from fairspeech.audit import run_audit
from fairspeech.data import schema
from fairspeech.data.manifest import Manifest, read_manifest
from fairspeech.accelerator import load_profile
from fairspeech.metrics.wer import alignment_counts, wer
from fairspeech.utils import io

ROUTING = "routing_rate"  # share of the full compute used, averaged over the utterance's encoder frames
ENCODER_FRAMES = "encoder_frames"
FLOPS = "flops"  # measured per utterance when the eval config names a profile
LATENCY = "latency_s"
PRIOR_HYPOTHESIS = "prior_hypothesis"  # the corpus's own hypothesis column (pocketsphinx's, in the demo corpus)


def corpus_wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    counts = alignment_counts(list(references), list(hypotheses))
    return wer(counts[schema.ERRORS], counts[schema.REF_WORDS])


@torch.inference_mode()
def transcribe(model: torch.nn.Module, data: SplitData, tokenizer, method: str = "greedy", beam: int = 8,
               max_frames: int = 30000) -> tuple[list[str], pd.DataFrame]:
    """Hypotheses in split order, and per utterance its encoder frames and routing rate (NaN if the model does not route)."""
    was_training = model.training
    model.eval()
    hyps: list[str] = [""] * len(data)
    frames = np.zeros(len(data), dtype=np.int64)
    routing = np.full(len(data), np.nan)
    for batch in data.iterate(data.batches(max_frames)):
        out = model(batch.features, batch.lengths)
        for i, ids in zip(batch.indices, decode(out.log_probs, out.lengths, method, beam)):
            hyps[i] = tokenizer.decode(ids)
        for row, i in enumerate(batch.indices):
            n = int(out.lengths[row])
            frames[i] = n
            if out.routing is not None and n > 0:
                routing[i] = float(out.routing[row, :n].float().mean())
    model.train(was_training)
    return hyps, pd.DataFrame({ENCODER_FRAMES: frames, ROUTING: routing})


def load_trained(model_path: str | Path) -> tuple[torch.nn.Module, object, RecipeConfig]:
    weights, meta = ckpt.load_weights(model_path)
    config = dict_to_config(meta["config"])
    tokenizer = tokenizer_from_dict(meta["tokenizer"])
    model = build_model(config, tokenizer.vocab_size)
    model.load_state_dict(weights)
    model.eval()
    return model, tokenizer, config


def per_frame_by_cohort(frame: pd.DataFrame, value: str, by: Sequence[str]) -> dict:
    """``value`` (a per-frame rate, or a per-utterance total when ``value`` is FLOPs) per encoder frame,
    frame-weighted, for each cohort of each attribute."""
    out = {}
    for column in by:
        total = frame[value] if value == FLOPS else frame[value] * frame[ENCODER_FRAMES]
        grouped = pd.DataFrame({"v": total, "n": frame[ENCODER_FRAMES], column: frame[column].astype("string").fillna("(missing)")}).groupby(column)
        sums = grouped[["v", "n"]].sum()
        out[column] = {str(k): float(v) for k, v in (sums["v"] / sums["n"]).items()}
    return out


def mean_by_cohort(frame: pd.DataFrame, value: str, by: Sequence[str]) -> dict:
    return {column: {str(k): float(v) for k, v in frame.groupby(frame[column].astype("string").fillna("(missing)"))[value].mean().items()} for column in by}


def audit_summary(result) -> dict:
    """The parts of an audit worth keeping in a benchmark JSON: overall WER, cohort WERs with intervals, gaps."""
    data = result.to_dict()
    keep = ("speakers", "utterances", "ref_words", "errors", "wer", "wer_low", "wer_high")
    tables = {}
    for table in data["cohort_tables"]:
        tables[table["name"]] = {
            "cohorts": {c["cohort"]: {k: c[k] for k in keep} for c in table["cohorts"]},
            "gap": table["gap"],
        }
    return {"overall": {k: data["overall"][k] for k in keep}, "by": tables}


def evaluate_split(model, tokenizer, frame: pd.DataFrame, data: SplitData, split: str, out_dir: Path, config: RecipeConfig) -> dict:
    ec = config.eval
    hyps, per_utt = transcribe(model, data, tokenizer, ec.decode, ec.beam, ec.max_frames_per_batch)
    table = frame.copy()
    if schema.HYPOTHESIS in table.columns:
        table[PRIOR_HYPOTHESIS] = table[schema.HYPOTHESIS]
    table[schema.HYPOTHESIS] = hyps
    table = pd.concat([table.reset_index(drop=True), per_utt], axis=1)
    profile = None
    if ec.profile:
        profile = load_profile(ec.profile)
        measured = efficiency.measure(model, data, profile)
        table[FLOPS], table[LATENCY] = measured["flops"].to_numpy(), measured["latency_s"].to_numpy()
    manifest_path = out_dir / f"{split}_manifest.parquet"
    with io.atomic_path(manifest_path) as tmp:
        table.to_parquet(tmp, index=False)
    by = [c for c in ec.by if c in table.columns]
    common = dict(by=by, n_boot=ec.n_boot, n_permutations=ec.n_boot, min_speakers=ec.min_speakers, seed=config.train.seed, progress=False)
    result = run_audit(read_manifest(manifest_path), **common)
    result.write(out_dir / f"audit_{split}")
    summary = {"decode": ec.decode, "manifest": str(manifest_path), **audit_summary(result)}
    if table[ROUTING].notna().any():
        summary["routing_rate"] = float((table[ROUTING] * table[ENCODER_FRAMES]).sum() / table[ENCODER_FRAMES].sum())
        summary["routing_by_cohort"] = per_frame_by_cohort(table, ROUTING, by)
    if profile is not None:
        summary["efficiency"] = efficiency.summarize(measured, profile)
        summary["flops_per_frame_by_cohort"] = per_frame_by_cohort(table, FLOPS, by)
        summary["latency_ms_by_cohort"] = {c: {k: 1000 * v for k, v in d.items()} for c, d in mean_by_cohort(table, LATENCY, by).items()}
    if PRIOR_HYPOTHESIS in table.columns and table[PRIOR_HYPOTHESIS].notna().all():
        prior = table.drop(columns=[schema.HYPOTHESIS]).rename(columns={PRIOR_HYPOTHESIS: schema.HYPOTHESIS})
        summary["prior_recognizer"] = audit_summary(run_audit(Manifest(prior, str(manifest_path), "parquet"), **common))
    return summary


def evaluate(model_path: str | Path, out_dir: str | Path, splits: Sequence[str] | None = None, overrides: dict | None = None,
             model_attributes: dict | None = None) -> dict:
    """Evaluate a trained model on ``splits`` (default: the config's eval splits); writes ``out_dir/eval.json``.

    ``overrides`` replace ``[eval]`` settings; ``model_attributes`` set switches on the model, e.g.
    ``{"force_route": "slow"}`` to evaluate an amortized model's slow branch alone.
    """
    model, tokenizer, config = load_trained(model_path)
    for key, value in (overrides or {}).items():
        if not hasattr(config.eval, key):
            raise KeyError(f"[eval] has no setting {key!r}")
        setattr(config.eval, key, value)
    for key, value in (model_attributes or {}).items():
        if not hasattr(model, key):
            raise KeyError(f"{type(model).__name__} has no switch {key!r}")
        setattr(model, key, value)
    if config.eval.profile and hasattr(model, "use_profile"):
        model.use_profile(config.eval.profile)  # the arbitrator sees the backlog of the device evaluated on
    torch.set_num_threads(config.train.threads)
    out_dir = Path(out_dir)
    splits = list(splits or config.eval.splits)
    loaded = load_splits(config.data.manifest, splits, config.data.cache_dir, progress=config.train.progress, audio_dir=config.data.audio_dir)
    results = {}
    for split in splits:
        frame, cache = loaded[split]
        results[split] = evaluate_split(model, tokenizer, frame, SplitData(cache), split, out_dir, config)
    io.write_json(out_dir / "eval.json", results)
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Transcribe splits with a trained fairspeech ASR model and audit them per cohort.")
    parser.add_argument("model", help="model.safetensors written by fairspeech.asr.train")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--splits", default=None, help="comma-separated splits (default: the config's)")
    parser.add_argument("--decode", choices=["greedy", "beam"], default=None)
    parser.add_argument("--profile", default=None, help="accelerator profile for FLOPs and latency (default: the config's; 'none' to skip)")
    parser.add_argument("--model-set", action="append", default=[], metavar="ATTR=VALUE",
                        help="set a model switch, e.g. force_route=slow (amortized) or force_on=true (gated)")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("decode", args.decode), ("profile", args.profile)) if v}
    if args.profile == "none":
        overrides["profile"] = None
    attributes = dict(parse_override(item) for item in args.model_set)
    results = evaluate(args.model, args.out, args.splits.split(",") if args.splits else None, overrides, attributes)
    for split, summary in results.items():
        print(f"{split}: WER {100 * summary['overall']['wer']:.2f}%")


if __name__ == "__main__":
    main()
