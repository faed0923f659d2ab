"""The verifier_compat recipe's results file: per seed, old-old / new-new / new-old EER of the incompatible
(ARW) and the compatible (ARW + BCT) update, their negative flips against the old model overall and per
group, the regression gate's verdicts, and ARW against its same-seed baseline on every group attribute;
then the issue's targets checked on every seed.

    python recipes/verifier_compat/local/summarize.py runs/verifier_compat --out benchmarks/results/verifier_compat.json
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file
from sklearn.metrics import normalized_mutual_info_score

from fairspeech.data import schema
from fairspeech.data.manifest import read_manifest
from fairspeech.training import checkpoint as ckpt
from fairspeech.training.reweighting import SampleAdversary, arl_weights, nearest_cluster
from fairspeech.utils import io
from fairspeech.verification.results import run_figures

SYSTEMS = ("old-old", "new-new", "new-old")


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _eer(report: dict) -> dict:
    o = report["overall"]
    return {"eer": o["eer"], "interval": [o["eer_low"], o["eer_high"]], "min_dcf": o["min_dcf"]}


def _flips(update: dict) -> dict:
    """Negative flip rate (balanced, with interval) overall and per (attribute, group), from update.json rows."""
    return {f"{r['attribute']}={r['cohort']}" if r["attribute"] != "overall" else "overall":
            {"rate": r["negative_flip_rate"], "interval": [r["negative_flip_rate_low"], r["negative_flip_rate_high"]],
             "flips": r["negative_flips"], "speakers_with_new_misses": r["speakers_with_new_misses"], "speakers": r["speakers"],
             "eer_change": r["eer_change"], "flagged": r["flagged"]}
            for r in update["rows"]}


def _spreads(report: dict) -> dict:
    """Per group attribute: EER std across groups and max-min gap, with intervals."""
    return {attribute: {"std": f["std"], "std_interval": [f["std_low"], f["std_high"]], "gap": f["gap"], "gap_interval": [f["gap_low"], f["gap_high"]]}
            for attribute, f in report["fairness"].items()}


def arw_weights_by_group(run: Path, attributes: list[str]) -> dict:
    """Where an ARW run's final adversary puts weight: ARL weights over every training utterance (its last
    embedding in the reweighter's bank, nearest cluster), each group's share of the weight against its
    share of the utterances; and how much the k-means clusters the adversary sees say about each attribute
    (normalized mutual information: 1 = the clusters are the groups)."""
    config = _load(run / "model.json")["config"]
    steps = ckpt.list_checkpoints(run / "checkpoints")
    tensors = load_file(str(run / "checkpoints" / f"step-{steps[-1]:08d}.safetensors"))
    state = {k[len("reweighter."):]: v for k, v in tensors.items() if k.startswith("reweighter.")}
    adversary = SampleAdversary(config["model"]["embedding_dim"], config["arw"]["n_clusters"], config["arw"]["hidden"])
    adversary.load_state_dict({k[len("sample_adversary."):]: v for k, v in state.items() if k.startswith("sample_adversary.")})
    with torch.no_grad():
        clusters = nearest_cluster(state["bank"], state["centers"])
        weights = arl_weights(adversary(state["bank"], clusters)).numpy()
    frame = read_manifest(config["data"]["manifest"], require_hypothesis=False).public_frame()
    frame = frame[frame[schema.SPLIT] == config["data"]["train_split"]].reset_index(drop=True)
    if len(frame) != len(weights):
        raise ValueError(f"{run}: {len(weights)} bank rows for {len(frame)} training utterances")
    out = {}
    for attribute in attributes:
        groups = frame[attribute].astype(str)
        table = pd.DataFrame({"group": groups, "w": weights}).groupby("group")["w"].agg(["sum", "size"])
        out[attribute] = {"weight_share_over_utterance_share": {g: float((r["sum"] / weights.sum()) / (r["size"] / len(weights)))
                                                                for g, r in table.iterrows()},
                          "cluster_nmi": float(normalized_mutual_info_score(groups, clusters.numpy()))}
    return out


def seed_summary(runs: Path, seed: int) -> dict:
    out = {}
    for variant in ("new", "compatible"):
        update = _load(runs / f"{variant}-s{seed}" / "update.json")
        out[variant] = {
            "systems": {name: _eer(update["systems"][name]) for name in SYSTEMS},
            "compatible": update["compatible"], "compatible_confidently": update["compatible_confidently"],
            "negative_flips": {name: _flips(update["updates"][name]) for name in update["updates"]},
            "gate": {name: {"flagged": g["flagged"], "flagged_cohorts": g["flagged_cohorts"]}
                     for name, g in update["gate"].items() if name != "settings"},
            "train_minutes": _load(runs / f"{variant}-s{seed}" / "train_summary.json")["train_minutes"],
        }
    baseline, arw = _load(runs / f"baseline-s{seed}" / "eval.json"), _load(runs / f"new-s{seed}" / "eval.json")
    out["arw_vs_baseline"] = {
        "baseline": run_figures(baseline) | {"spread": _spreads(baseline)},
        "arw": run_figures(arw) | {"spread": _spreads(arw)},
        "arw_weights": arw_weights_by_group(runs / f"new-s{seed}", list(baseline["fairness"])),
    }
    return out


def group_flip_ratio(summary: dict, compatible_system: str) -> dict:
    """Per group: the compatible model's negative flip rate over the incompatible one's (new-new: both re-enrolled)."""
    new, compat = summary["new"]["negative_flips"]["new-new"], summary["compatible"]["negative_flips"][compatible_system]
    return {group: (compat[group]["rate"] / new[group]["rate"] if new[group]["rate"] else None) for group in new if group in compat}


def _lower(a, b):
    """a < b, or None where either figure is undefined (a group without trials)."""
    return None if a is None or b is None else a < b


def targets(per_seed: dict) -> dict:
    checks = {}
    for seed, s in per_seed.items():
        compat = s["compatible"]["systems"]
        ratios = {system: group_flip_ratio(s, system) for system in ("new-new", "new-old")}
        base, arw = s["arw_vs_baseline"]["baseline"], s["arw_vs_baseline"]["arw"]
        checks[seed] = {
            "compatible_new_old_below_old_old": _lower(compat["new-old"]["eer"], compat["old-old"]["eer"]),
            "group_flip_ratio_at_most_half": {system: all(r is not None and r <= 0.5 for g, r in rs.items() if g != "overall")
                                              for system, rs in ratios.items()},
            "group_flip_ratio": ratios,
            "arw_lower_eer": _lower(arw["overall_eer"], base["overall_eer"]),
            "arw_lower_gender_gap": _lower(arw["gender_gap"], base["gender_gap"]),
            "arw_lower_spread": {a: _lower(arw["spread"][a]["std"], base["spread"][a]["std"]) for a in base["spread"]},
        }
    return checks


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    seeds = sorted(int(m.group(1)) for p in args.runs.glob("compatible-s*/update.json") if (m := re.fullmatch(r"compatible-s(\d+)", p.parent.name)))
    if not seeds:
        raise SystemExit(f"{args.runs}: no compatible-s<seed>/update.json")
    per_seed = {str(s): seed_summary(args.runs, s) for s in seeds}
    mean = {variant: {system: float(np.mean([per_seed[s][variant]["systems"][system]["eer"] for s in per_seed])) for system in SYSTEMS}
            for variant in ("new", "compatible")}
    config = _load(args.runs / f"old-s{seeds[0]}" / "model.json")["config"]
    result = {"benchmark": "verifier_compat", "recipe": "recipes/verifier_compat", "seeds": seeds,
              "old_model": {"seed": "seed + 100", "steps": config["train"]["steps"]},
              "eval_groups": config["eval"]["groups"], "mean_eer": mean, "per_seed": per_seed, "targets": targets(per_seed)}
    io.write_json(args.out, result)
    print(json.dumps({"mean_eer": mean, "targets": {s: {k: v for k, v in t.items() if k != "group_flip_ratio"}
                                                    for s, t in result["targets"].items()}}, indent=1))


if __name__ == "__main__":
    main()
