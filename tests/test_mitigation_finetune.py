"""The EWC fine-tuning comparison end to end on the tone corpus (cohorts, Fisher, every variant through the
training loop's callbacks, figures, plot), its resume, the CLI verb, focal distillation and settings errors."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fairspeech.asr.synthetic import make_tone_corpus, tiny_config
from fairspeech.asr.train import train
from conftest import load_recipe_module
from fairspeech.mitigation.distill import focal_distillation, old_model_right

finetune = load_recipe_module("ewc_finetune", "compare")  # the recipe's driver, recipes/ewc_finetune/local/compare.py


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ft")
    manifest = make_tone_corpus(root / "tones", n_speakers=10, utterances_per_speaker=4)
    train(tiny_config(manifest, root / "feats", epochs=4), root / "base")
    frame = pd.read_parquet(manifest)
    families = frame.groupby("speaker_id")["voice_family"].first()
    rng = np.random.default_rng(0)
    vectors = [list(np.eye(3)[0 if f == "low" else 1] + 0.1 * rng.random(3)) for f in families]
    pd.DataFrame({"speaker_id": families.index, "embedding": vectors}).to_parquet(root / "emb.parquet")
    return root


def _overrides(root, out="ft"):
    return [f'base_model="{root}/base/model.safetensors"', f'out_dir="{root}/{out}"', f'result="{root}/{out}/result.json"',
            f'plot="{root}/{out}/plot.png"', f'cohorts.embeddings="{root}/emb.parquet"', "cohorts.k=2", "cohorts.min_speakers=2",
            "fisher.utterances=12", "lambdas=[1.0, 1000.0]", "distill_lambda=1.0", "train.epochs=3", "train.max_frames_per_batch=600", "n_boot=20", "progress=false"]


def test_comparison_runs_every_variant_and_resumes(base):
    settings = finetune.load_settings(None, _overrides(base), seed=0)
    report = finetune.run_comparison(settings)
    names = ["none", "finetune", "replay", "ewc_1", "ewc_1000", "ewc_distill"]
    assert list(report["variants"]) == names
    assert report["cohorts"]["targets"] and report["cohorts"]["target_train_utterances"] > 0
    ft = report["variants"]["finetune"]["train"]
    assert ft["train_utterances"] == report["cohorts"]["target_train_utterances"]
    assert report["variants"]["replay"]["train"]["train_utterances"] > ft["train_utterances"]
    # the penalty holds the weights: a huge lambda ends far closer to the base than plain fine-tuning
    assert report["variants"]["ewc_1000"]["ewc_distance_from_base"] < 0.5 * report["variants"]["finetune"]["ewc_distance_from_base"]
    test = report["variants"]["none"]["splits"]["test"]
    assert test["overall"]["negative_flip_rate"] == 0.0 and test["overall"]["wer"] == test["overall"]["base_wer"]
    for record in report["variants"].values():
        figures = record["splits"]["dev"]
        assert {"wer", "wer_low", "wer_high", "negative_flip_impact", "word_negative_flip_rate"} <= set(figures["overall"])
        assert figures["across_cohorts"]["wer_max"] >= figures["across_cohorts"]["wer_mean"]
    assert (base / "ft" / "plot.png").stat().st_size > 0
    assert report["checks"]["selected"]["variant"] in ("ewc_1", "ewc_1000")
    # rerun: nothing is retrained or decoded again, and every figure is the same
    model_file = base / "ft" / "variants" / "finetune" / "model.safetensors"
    before = model_file.stat().st_mtime_ns
    again = finetune.run_comparison(settings)
    assert model_file.stat().st_mtime_ns == before
    assert json.dumps(again["variants"], sort_keys=True) == json.dumps(report["variants"], sort_keys=True)


def test_driver_command_line_takes_seed_and_variants(base):
    args = ["--seed", "1", "--variants", "none,finetune", "--no-progress"]
    for item in _overrides(base, "cli"):
        args += ["--set", item]
    assert finetune.main(args) == 0
    report = json.loads((base / "cli" / "result.json").read_text())
    assert report["seed"] == 1 and list(report["variants"]) == ["none", "finetune"]


def test_settings_errors_name_the_key():
    from fairspeech.errors import ConfigError

    with pytest.raises(ConfigError, match="lambda"):
        finetune.load_settings(None, ["lambda=3"])
    with pytest.raises(ConfigError, match=r"\[fisher\] has unknown keys \['size'\]"):
        finetune.load_settings(None, ["fisher.size=3"])
    with pytest.raises(ValueError, match="unknown variants"):
        finetune.variant_specs(finetune.load_settings(None, ['variants=["ewc_7"]']))


def test_focal_distillation_weights_and_zero_at_the_old_model(base):
    from fairspeech.asr.data import Batch
    from fairspeech.asr.evaluate import load_trained

    refs = ["bad cab", "ace", "fade deaf"]
    hyps = ["bad cab", "ace bed", "fade"]
    assert old_model_right(refs, hyps, "utterance").tolist() == [1.0, 0.0, 0.0]  # an insertion is not right
    assert old_model_right(refs, hyps, "words").tolist() == [1.0, 1.0, 0.5]
    old, _, _ = load_trained(base / "base" / "model.safetensors")
    new, _, _ = load_trained(base / "base" / "model.safetensors")
    features = torch.randn(2, 60, old.config.n_mels)
    batch = Batch(features, torch.tensor([60, 40]), torch.zeros(0, dtype=torch.int64), torch.zeros(2, dtype=torch.int64), [0, 1])
    hook = focal_distillation(old, [1.0, 0.0], weight=2.0, alpha=0.5, beta=1.0)
    loss, stats = hook(new, batch, new(batch.features, batch.lengths))
    assert abs(loss.detach().item()) < 1e-6  # identical models: nothing to distill
    with torch.no_grad():
        new.head.bias.add_(torch.linspace(0, 3, new.head.bias.numel()))
    out = new(batch.features, batch.lengths)
    loss, stats = hook(new, batch, out)
    only_first = focal_distillation(old, [1.0, 0.0], weight=2.0, alpha=0.0, beta=1.0)(new, batch, out)[0]
    assert loss.detach().item() > only_first.detach().item() > 0  # alpha adds the utterance the old model got wrong


def test_targets_from_an_audits_assignments(base, tmp_path):
    """cohorts.method = "assigned": the cohorts of an audit's cohorts.parquet, ranked by the base model's train WER;
    speakers the file does not name are counted as excluded, never silently merged into a cohort."""
    frame = pd.read_parquet(base / "tones" / "manifest.parquet")
    families = frame.groupby("speaker_id")["voice_family"].first()
    named = families.index[1:]  # the first speaker is left out of the file
    path = tmp_path / "cohorts.parquet"
    pd.DataFrame({"speaker_id": named, "embedding": pd.array([0 if families[s] == "low" else 1 for s in named], dtype="Int64")}).to_parquet(path)
    overrides = _overrides(base, "assigned") + ["cohorts.method=\"assigned\"", f'cohorts.assignments="{path}"', 'variants=["none"]']
    report = finetune.run_comparison(finetune.load_settings(None, overrides, seed=0))
    cohorts = report["cohorts"]
    assert cohorts["method"] == "assigned" and cohorts["p_value"] is None
    assert sorted(r["description"] for r in cohorts["train_table"].values()) == ["embedding = 0", "embedding = 1"]
    assert sum(cohorts["excluded_train_speakers"].values()) == int(families.index[0] in set(frame[frame.split == "train"].speaker_id))
    worst = max(cohorts["train_table"].values(), key=lambda r: r["wer"])
    assert cohorts["train_table"][cohorts["targets"][0]] == worst


def test_assigned_cohorts_name_the_file_on_bad_input(tmp_path):
    from fairspeech.cohorts.assigned import AssignedCohorts

    path = tmp_path / "cohorts.parquet"
    pd.DataFrame({"speaker_id": ["a", "b", "a"], "embedding": [0, 1, 1]}).to_parquet(path)
    speakers = pd.DataFrame({"errors": [1, 2], "ref_words": [10, 10], "utterances": [1, 1]}, index=pd.Index(["a", "b"], name="speaker_id"))
    with pytest.raises(ValueError, match=r"cohorts.parquet: speaker 'a' appears more than once \(row 2\)"):
        AssignedCohorts(path, min_speakers=1).fit(speakers)
    with pytest.raises(KeyError, match=r"cohorts.parquet: no column\(s\) \['geo'\]"):
        AssignedCohorts(path, column="geo", min_speakers=1).fit(speakers)


def test_base_trained_without_the_adaptation_pool(base, tmp_path):
    """base_training: the deployed model learns from the train speakers outside a seeded pool; cohorts are found
    on the pool and the fine-tunings learn only from the pool's target-cohort utterances."""
    from fairspeech.asr.synthetic import tiny_overrides

    manifest = base / "tones" / "manifest.parquet"
    overrides = _overrides(base, "pooled") + [
        "base_training.enabled=true", "base_training.adaptation_share=0.5", f"base_training.overrides={json.dumps(tiny_overrides(manifest, base / 'feats', epochs=2))}",
        'variants=["none", "finetune"]', "cohorts.min_speakers=1"]
    report = finetune.run_comparison(finetune.load_settings(None, overrides, seed=0))
    frame = pd.read_parquet(manifest)
    train_speakers = frame[frame.split == "train"].speaker_id.unique()
    pool = report["cohorts"]["adaptation_pool"]
    assert pool["speakers"] == round(0.5 * len(train_speakers))
    assert report["base_model"] == str(base / "pooled" / "base" / "model.safetensors")
    assert report["base_train"]["train_utterances"] == (frame.split == "train").sum() - pool["utterances"]
    assert 0 < report["variants"]["finetune"]["train"]["train_utterances"] <= pool["utterances"]
    assert report["variants"]["finetune"]["train"]["train_utterances"] == report["cohorts"]["target_train_utterances"]


def test_changed_settings_retrain_the_variant(base):
    """A rerun with other training settings must not reuse the old variant's model (nor its checkpoints)."""
    overrides = _overrides(base, "changed") + ['variants=["none", "finetune"]']
    first = finetune.run_comparison(finetune.load_settings(None, overrides, seed=0))
    again = finetune.run_comparison(finetune.load_settings(None, overrides + ["train.epochs=5"], seed=0))
    assert first["variants"]["finetune"]["train"]["epochs_completed"] == 3
    assert again["variants"]["finetune"]["train"]["epochs_completed"] == 5


def _comparison_rank(rank: int, world: int, port: int, root: str) -> None:
    import os

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from pathlib import Path

    report = finetune.run_comparison(finetune.load_settings(None, _overrides(Path(root), out="ddp") + ["lambdas=[1.0]"], seed=0))
    (Path(root) / f"ddp_rank{rank}.json").write_text(json.dumps(report["variants"], sort_keys=True))
    torch.distributed.destroy_process_group()


def test_comparison_under_two_ranks(base):
    """What `torchrun --nproc_per_node 2 ... finetune` runs: both ranks train each variant together (its folder
    reset and recorded once), read what rank 0 wrote, and hold the same report; the result file is written once."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_comparison_rank, args=(2, port, str(base)), nprocs=2, join=True)
    rank0, rank1 = (json.loads((base / f"ddp_rank{r}.json").read_text()) for r in range(2))
    for report in (rank0, rank1):  # each rank's own decoding time aside, the reports agree
        for record in report.values():
            record.pop("decode_s", None)
    assert rank0 == rank1
    written = json.loads((base / "ddp" / "result.json").read_text())["variants"]
    assert written.keys() == rank0.keys() and written["ewc_1"]["splits"] == rank0["ewc_1"]["splits"]
    assert json.loads((base / "ddp" / "variants" / "finetune" / "train_summary.json").read_text())["world_size"] == 2


def test_library_verb_is_for_the_users_model(capsys):
    """The comparison is the recipe's (local/compare.py); `fairspeech finetune` without --model says what it needs."""
    from fairspeech.cli import main

    assert main(["finetune"]) == 2
    err = capsys.readouterr().err
    assert "--model" in err and "recipes/ewc_finetune/run.sh" in err
