"""A verifier update against the model it replaces: can it keep the old gallery, and whom does it fail anew?

    report = compare_models("runs/old/model.safetensors", "runs/new/model.safetensors")
    report["compatible"], report["gate"]["flagged"]

The new model's held-out trials (its config's ``eval_splits``, ``max_nontarget``, ``trial_seed``) are
scored three ways: old-old (the deployed system), new-new (the update after re-enrolling everyone) and
new-old (new queries against the gallery the old model enrolled: left side old, right side new, as
:func:`fairspeech.verification.trials.cosine_scores` takes them). Each gets EER and minDCF overall and
per group with speaker-bootstrap intervals. The compatibility criterion of backward-compatible
training (Shen et al. 2020) is new-old EER below old-old EER; ``compatible_confidently`` asks the paired
interval of that change to lie below zero. For new-new and new-old, negative flips against old-old
(:func:`fairspeech.metrics.verification.update_report`, every system at its own EER threshold) go
through the regression gate ASR updates use (:class:`fairspeech.updates.check.RegressionGate`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fairspeech.data import schema
from fairspeech.metrics.verification import update_report
from fairspeech.updates.check import RegressionGate
from fairspeech.verification.evaluate import eval_trials, heldout, score_report
from fairspeech.verification.trials import cosine_scores

SYSTEMS = ("old-old", "new-new", "new-old")
# A verifier gate: any confident EER increase in a group, or more than 5% (balanced) of its trials newly wrong.
DEFAULT_GATE = RegressionGate(max_negative_flip_rate=0.05, max_eer_increase=0.0)


def compare_models(old_path: str | Path, new_path: str | Path, gate: RegressionGate = DEFAULT_GATE, progress: bool = False) -> dict:
    from fairspeech.verification.train import embed, load_extractor

    old, old_config = load_extractor(old_path)
    new, config = load_extractor(new_path)
    if old.config.embedding_dim != new.config.embedding_dim:
        raise ValueError(f"{old_path} embeds in {old.config.embedding_dim} dimensions, {new_path} in {new.config.embedding_dim}: "
                         "no cross-model trials (train the new model with --compatible-with the old one)")
    if Path(old_config.data.manifest).resolve() != Path(config.data.manifest).resolve():
        raise ValueError(f"{old_path} was trained on {old_config.data.manifest}, {new_path} on {config.data.manifest}: compare on one corpus")
    frame, caches = heldout(config, progress)
    gallery = np.concatenate([embed(old, c) for c in caches])
    query = np.concatenate([embed(new, c) for c in caches])
    ec = config.eval
    trials = eval_trials(frame, ec)
    scores = {"old-old": cosine_scores(gallery, trials), "new-new": cosine_scores(query, trials),
              "new-old": cosine_scores(gallery, trials, query=query)}
    reports = {name: score_report(s, trials, frame, ec) for name, s in scores.items()}
    speakers = frame[schema.SPEAKER_ID].astype(str).to_numpy()
    groups = {g: frame[g].to_numpy() for g in ec.groups}
    updates, gates = {}, {}
    for name in ("new-new", "new-old"):
        update = update_report(scores["old-old"], scores[name], trials.left, trials.right, trials.target, speakers, groups,
                               n_boot=ec.n_boot, seed=ec.trial_seed, alpha=ec.alpha)
        table = gate.check(pd.DataFrame(update["rows"]))
        rows = table.astype(object).where(table.notna(), None).to_dict("records")  # undefined figures (no trials) as null
        updates[name] = {"thresholds": update["thresholds"], "rows": rows}
        gates[name] = {"flagged": bool(table["flagged"].any()), "flagged_cohorts": table.loc[table["flagged"], ["attribute", "cohort", "reasons"]].to_dict("records")}
    cross = updates["new-old"]["rows"][0]
    return {
        "old_model": str(old_path), "new_model": str(new_path), "trials": reports["old-old"]["trials"],
        "systems": reports, "updates": updates, "gate": {"settings": gate.to_dict(), **gates},
        "compatible": reports["new-old"]["overall"]["eer"] < reports["old-old"]["overall"]["eer"],
        "compatible_confidently": cross["eer_change_high"] is not None and cross["eer_change_high"] < 0,
    }
