"""Verifier updates: backward-compatible training through the old classifier, old/new/cross-model trials,
negative flips per group and the regression gate on them."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fairspeech.asr.data import load_splits
from fairspeech.errors import ConfigError
from fairspeech.metrics.verification import eer, eer_threshold, update_report
from fairspeech.updates.check import RegressionGate
from fairspeech.verification import cli
from fairspeech.verification.train import CompatibleObjective, SpeakerBatch, SpeakerLearner, load_classifier, load_config, load_extractor, train
from fairspeech.verification.trials import Trials, build_trials, cosine_scores
from test_verification_train import corpus, tiny  # noqa: F401  (the tone corpus fixture and tiny settings)


def test_eer_threshold_sits_at_the_equal_error_point():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(500, bool), np.zeros(5000, bool)]
    scores = np.r_[rng.normal(2, 1, 500), rng.normal(0, 1, 5000)]
    t = eer_threshold(scores, labels)
    miss, fa = np.mean(scores[labels] < t), np.mean(scores[~labels] >= t)
    assert abs(miss - fa) < 0.01 and abs((miss + fa) / 2 - eer(scores, labels)) < 0.01


def _trials(n_speakers=6, per=3):
    speakers = np.repeat([f"s{i}" for i in range(n_speakers)], per)
    return speakers, build_trials(speakers)


def test_update_report_counts_flips_by_hand():
    speakers, trials = _trials()
    group = np.where(np.repeat(np.arange(6), 3) < 3, "a", "b")
    old = np.where(trials.target, 1.0, 0.0)  # perfect at any threshold in (0, 1]
    new = old.copy()
    broken = np.flatnonzero(trials.target & (group[trials.left] == "a"))[:2]  # two of group a's target trials now missed
    new[broken] = 0.0
    report = update_report(old, new, trials.left, trials.right, trials.target, speakers, {"group": group},
                           n_boot=50, seed=0, old_threshold=0.5, new_threshold=0.5)
    rows = {(r["attribute"], r["cohort"]): r for r in report["rows"]}
    overall, a, b = rows[("overall", "(overall)")], rows[("group", "a")], rows[("group", "b")]
    assert overall["negative_flips"] == a["negative_flips"] == 2 and b["negative_flips"] == 0
    assert overall["negative_flip_rate"] == pytest.approx(0.5 * 2 / trials.target.sum())  # balanced: half from targets
    assert a["negative_flip_rate"] == pytest.approx(0.5 * 2 / 9) and a["speakers_with_new_misses"] >= 1
    assert b["eer_change"] == 0 and a["eer_change"] > 0 and overall["positive_flip_rate"] == 0
    same = update_report(old, old, trials.left, trials.right, trials.target, speakers, n_boot=20)
    assert same["rows"][0]["negative_flip_rate"] == 0 and same["rows"][0]["eer_change_high"] == 0


def test_gate_judges_verifier_tables_on_eer_and_flips_only():
    table = pd.DataFrame([{"attribute": "overall", "cohort": "(overall)", "speakers": 40, "eer_change_low": 0.01, "negative_flip_rate_low": 0.0},
                          {"attribute": "g", "cohort": "x", "speakers": 20, "eer_change_low": -0.02, "negative_flip_rate_low": 0.2},
                          {"attribute": "g", "cohort": "y", "speakers": 20, "eer_change_low": -0.02, "negative_flip_rate_low": 0.0}])
    checked = RegressionGate(max_negative_flip_rate=0.05).check(table)
    assert checked["flagged"].tolist() == [True, True, False]
    assert "EER increase" in checked["reasons"][0] and "negative flips" in checked["reasons"][1]


def test_cross_model_scores_take_gallery_left_and_query_right():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    query = np.array([[0.0, 1.0], [1.0, 0.0], [-1.0, -1.0]])
    trials = Trials(np.array([0, 0, 1]), np.array([1, 2, 2]), np.array([False, False, False]))
    assert np.allclose(cosine_scores(gallery, trials, query=query), [1.0, -1 / np.sqrt(2), -1 / np.sqrt(2)])
    assert np.allclose(cosine_scores(gallery, trials), cosine_scores(gallery, trials, query=gallery))
    with pytest.raises(ValueError, match="shape"):
        cosine_scores(gallery, trials, query=query[:, :1])


def test_influence_loss_is_the_old_classifier_loss_and_skips_unknown_speakers():
    torch.manual_seed(0)
    from fairspeech.verification.extractor import ExtractorConfig, XVector
    from fairspeech.verification.losses import AAMSoftmax
    from fairspeech.verification.train import LossConfig

    config = ExtractorConfig(channels=8, layers=[[3, 1]], pool_channels=8, embedding_dim=4)
    learner = SpeakerLearner(XVector(config, None), 3, LossConfig())
    old_head = AAMSoftmax(4, 2)
    objective = CompatibleObjective(1.0, old_head, torch.tensor([1, -1, 0]), weight=2.0)  # new speaker 1 unknown to the old model
    batch = SpeakerBatch(torch.randn(6, 30, 80), torch.tensor([0, 0, 1, 1, 2, 2]), torch.arange(6))
    plain = super(CompatibleObjective, objective).__call__(learner, batch)
    scored = objective(learner, batch)
    expected = old_head(plain.embeddings, torch.tensor([1, 1, 0, 0, 0, 0]))
    extra = (scored.per_sample - plain.per_sample).detach()
    assert torch.allclose(extra[[0, 1, 4, 5]], 2.0 * expected[[0, 1, 4, 5]].detach(), atol=1e-5)
    assert torch.all(extra[[2, 3]] == 0)
    assert not any(p.requires_grad for p in objective.old_head.parameters())


def _old_head_fit(run, old_run, corpus_path, feats):
    """(mean AAM loss, top-1 accuracy) of ``run``'s training embeddings through ``old_run``'s classifier."""
    extractor, config = load_extractor(run / "model.safetensors")
    head, speakers = load_classifier(old_run / "model.safetensors")
    frame, cache = load_splits(corpus_path, ["train"], feats, progress=False)["train"]
    with torch.no_grad():
        emb = torch.stack([extractor(cache.get(i)[None])[0] for i in range(len(cache))])
        labels = torch.tensor([speakers.index(s) for s in frame["speaker_id"].astype(str)])
        cosine = torch.nn.functional.normalize(emb) @ torch.nn.functional.normalize(head.weight).T
        return float(head(emb, labels).mean()), float((cosine.argmax(1) == labels).float().mean())


def test_compatible_training_lands_near_the_old_classifier_and_reports_the_update(corpus, tmp_path, capsys):
    feats = tmp_path / "f"
    settings = [a for s in tiny(corpus, feats, "train.steps=40", "train.lr=1e-2") for a in ("--set", s)]
    old, new, compatible = tmp_path / "old", tmp_path / "new", tmp_path / "compatible"
    base = ["train-verifier", "--config", "none"]
    assert cli.main(base + ["--seed", "5", "--out", str(old)] + settings) == 0
    assert cli.main(base + ["--seed", "0", "--arw", "--out", str(new), "--compare-with", str(old / "model.safetensors")] + settings) == 0
    assert cli.main(base + ["--seed", "0", "--arw", "--out", str(compatible), "--compatible-with", str(old / "model.safetensors"),
                            "--set", "compat.weight=4.0"] + settings) == 0
    (compatible_loss, compatible_top1), (new_loss, new_top1) = (_old_head_fit(run, old, corpus, feats) for run in (compatible, new))
    assert compatible_loss < 0.5 * new_loss and compatible_top1 > new_top1, (compatible_loss, compatible_top1, new_loss, new_top1)
    report = json.loads((compatible / "update.json").read_text())
    assert set(report["systems"]) == {"old-old", "new-new", "new-old"}
    assert {r["attribute"] for r in report["updates"]["new-old"]["rows"]} == {"overall", "gender", "voice_family"}
    assert isinstance(report["compatible"], bool) and "flagged" in report["gate"]["new-new"]
    assert "influence" in json.loads((compatible / "train_summary.json").read_text())["log"][-1]
    assert "compatible (new-old below old-old)" in capsys.readouterr().out


def test_compat_refuses_an_old_model_of_another_embedding_size(corpus, tmp_path):
    feats = tmp_path / "f"
    train(load_config(None, tiny(corpus, feats)), tmp_path / "old")
    wider = load_config(None, tiny(corpus, feats, "model.embedding_dim=12", f'compat.old_model="{tmp_path / "old" / "model.safetensors"}"'))
    with pytest.raises(ConfigError, match="embedding_dim"):
        train(wider, tmp_path / "new")


def test_recipe_summary_reads_every_run_and_checks_the_targets(corpus, tmp_path):
    """recipes/verifier_compat on the tone corpus: old, baseline, new (ARW from the baseline's pretraining) and
    compatible runs of one seed, summarized with ARW's weight shares per group."""
    from conftest import load_recipe_module

    summarize = load_recipe_module("verifier_compat", "summarize")
    runs, feats = tmp_path / "runs", tmp_path / "f"
    settings = [a for s in tiny(corpus, feats, "train.steps=12") for a in ("--set", s)]
    old = str(runs / "old-s0" / "model.safetensors")
    base = ["train-verifier", "--config", "none", "--no-progress"]
    assert cli.main(base + ["--seed", "100", "--out", str(runs / "old-s0")] + settings) == 0
    assert cli.main(base + ["--seed", "0", "--out", str(runs / "baseline-s0")] + settings) == 0
    assert cli.main(base + ["--seed", "0", "--arw", "--init-pretrained", str(runs / "baseline-s0"), "--compare-with", old,
                            "--out", str(runs / "new-s0")] + settings) == 0
    assert cli.main(base + ["--seed", "0", "--arw", "--compatible-with", old, "--out", str(runs / "compatible-s0")] + settings) == 0
    summarize.main([str(runs), "--out", str(tmp_path / "verifier_compat.json")])
    result = json.loads((tmp_path / "verifier_compat.json").read_text())
    assert result["seeds"] == [0] and set(result["mean_eer"]["compatible"]) == {"old-old", "new-new", "new-old"}
    weights = result["per_seed"]["0"]["arw_vs_baseline"]["arw_weights"]
    for attribute in ("gender", "voice_family"):
        assert 0 <= weights[attribute]["cluster_nmi"] <= 1
        assert len(weights[attribute]["weight_share_over_utterance_share"]) >= 1
    assert isinstance(result["targets"]["0"]["compatible_new_old_below_old_old"], bool)
