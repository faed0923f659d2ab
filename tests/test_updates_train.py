"""Diff updates through the ASR training loop on the tiny tone corpus: create, apply, resume, CLI, check."""

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from fairspeech.asr.evaluate import load_trained
from fairspeech.asr.synthetic import make_tone_corpus, tiny_config
from fairspeech.asr.train import train
from fairspeech.cli import main as cli_main
from fairspeech.updates import format as fmt
from fairspeech.updates.check import RegressionGate, paired_wer_change, regression_table
from fairspeech.updates.train import DIFF_FILE, DiffTrainer, train_update, update_config


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffbase")
    manifest = make_tone_corpus(root / "tones")
    train(tiny_config(manifest, root / "feats", epochs=2), root / "base")
    return root / "base" / "model.safetensors"


def _same(a, b):
    a, b = load_file(str(a)), load_file(str(b))
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("diff_type", ["sparse", "hashed"])
def test_created_diff_applied_to_base_equals_the_trained_model(base, tmp_path, diff_type):
    config = update_config(base, ["train.epochs=2", "train.lr=0.01"], seed=0)
    trainer = DiffTrainer(diff_type, density=0.05, bucket_ratio=0.1, prune_every=2)
    summary = train_update(config, tmp_path / "update", trainer, lambda rows: (rows["voice_family"] == "low").to_numpy())
    assert summary["train_utterances"] < 36  # only the selected speakers
    header = fmt.read_diff(tmp_path / "update" / DIFF_FILE).header
    assert header["density"] == pytest.approx(0.05 if diff_type == "sparse" else 0.1, abs=0.01)
    fmt.apply_diff_file(base, tmp_path / "update" / DIFF_FILE, tmp_path / "applied.safetensors")
    assert _same(tmp_path / "applied.safetensors", tmp_path / "update" / "model.safetensors")
    assert not _same(base, tmp_path / "applied.safetensors")
    model, _, _ = load_trained(tmp_path / "applied.safetensors")  # plain weights: loads as any trained model
    assert sum(p.numel() for p in model.parameters()) == header["parameters"]


@pytest.mark.parametrize("criterion", ["magnitude", "fisher"])
def test_killed_diff_training_resumes_to_the_same_diff(base, tmp_path, criterion):
    config = update_config(base, ["train.epochs=2", "train.checkpoint_every=2"], seed=0)
    straight = DiffTrainer("sparse", density=0.1, prune_every=1, criterion=criterion)
    train_update(config, tmp_path / "straight", straight)
    killed = DiffTrainer("sparse", density=0.1, prune_every=1, criterion=criterion)
    assert train(config, tmp_path / "resumed", stop_after_steps=3, callbacks=[killed])["stopped"] == "stop_after_steps"
    saved = load_file(str(tmp_path / "resumed" / "checkpoints" / "step-00000002.safetensors"))
    assert any(k.endswith(".mask") for k in saved)  # pruning masks travel in the checkpoint
    assert any(k.endswith(".grad_sq") for k in saved) == (criterion == "fisher")  # and so does the Fisher estimate
    train_update(config, tmp_path / "resumed", DiffTrainer("sparse", density=0.1, prune_every=1, criterion=criterion))
    assert _same(tmp_path / "straight" / DIFF_FILE, tmp_path / "resumed" / DIFF_FILE)


def test_cli_create_inspect_apply(base, tmp_path, capsys):
    exp = tmp_path / "cli"
    cli_main(["diff", "create", "--base", str(base), "--exp-dir", str(exp), "--type", "sparse", "--density", "0.02",
              "--query", "gender == 'female'", "--set", "train.epochs=1", "--seed", "3"])
    assert "smaller than" in capsys.readouterr().out
    cli_main(["diff", "inspect", str(exp / DIFF_FILE), "--base", str(base), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["base"]["applies"] and report["smaller_than_base"] > 0.8 and report["header"]["diff_type"] == "sparse"
    out = tmp_path / "deployed" / "model.safetensors"
    cli_main(["diff", "apply", str(base), str(exp / DIFF_FILE), "--out", str(out), "--check", "test", "--n-boot", "20", "--force"])
    assert _same(out, exp / "model.safetensors")
    with pytest.raises(SystemExit, match="made for base weights"):  # the diff does not apply to the updated model
        cli_main(["diff", "apply", str(out), str(exp / DIFF_FILE), "--out", str(out)])
    assert _same(out, exp / "model.safetensors")


def test_gate_flags_a_cohort_that_regresses():
    rows = pd.DataFrame({"speaker_id": [f"s{i}" for i in range(12) for _ in range(3)],
                         "voice_family": ["a" if i < 6 else "b" for i in range(12) for _ in range(3)]})
    refs = ["turn on the lights"] * 36
    old = refs[:]
    new = ["turn of the light" if family == "b" else ref for ref, family in zip(refs, rows["voice_family"])]
    table = RegressionGate(min_speakers=5).check(regression_table(rows, refs, old, new, ["voice_family"], n_boot=200, seed=0))
    by = table.set_index(["attribute", "cohort"])
    assert by.loc[("voice_family", "b"), "flagged"] and not by.loc[("voice_family", "a"), "flagged"]
    assert by.loc[("voice_family", "b"), "wer_change"] == pytest.approx(0.5)
    assert by.loc[("voice_family", "a"), "wer_change_high"] == 0.0
    assert "WER increase" in by.loc[("voice_family", "b"), "reasons"]
    assert not RegressionGate().check(regression_table(rows, refs, old, old, ["voice_family"], n_boot=50)).flagged.any()
    # the overall paired change alone (what the neural-diff chain reports against the full update) is the table's overall row
    overall = by.loc[("overall", "(overall)")]
    assert paired_wer_change(rows, refs, old, new, n_boot=200, seed=0) == pytest.approx(
        (overall["wer_change"], overall["wer_change_low"], overall["wer_change_high"]))
    assert paired_wer_change(rows, refs, old, old, n_boot=50) == (0.0, 0.0, 0.0)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_update(rank: int, world: int, port: int, base: str, workdir: str) -> None:
    import os

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    trainer = DiffTrainer("sparse", density=0.1, prune_every=1)
    train_update(update_config(base, ["train.epochs=2"], seed=0), f"{workdir}/exp", trainer)
    with open(f"{workdir}/rank{rank}.txt", "w") as handle:  # every rank's own diff, written or not
        handle.write(trainer.diff_.header["payload_sha256"])
    torch.distributed.destroy_process_group()


@pytest.mark.slow  # two processes with their own torch start-up
def test_two_ranks_train_one_identical_diff(base, tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_rank_update, args=(2, _free_port(), str(base), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = ((tmp_path / f"rank{r}.txt").read_text() for r in range(2))
    assert rank0 == rank1 == fmt.read_diff(tmp_path / "exp" / DIFF_FILE).header["payload_sha256"]
    fmt.apply_diff_file(base, tmp_path / "exp" / DIFF_FILE, tmp_path / "applied.safetensors")
    assert _same(tmp_path / "applied.safetensors", tmp_path / "exp" / "model.safetensors")
