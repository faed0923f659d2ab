"""Verifier training on a tiny tone corpus: exact resume, ARW from a baseline's pretraining equals ARW from
scratch, settings mismatch refused, and the CLI end to end (train, evaluate, eval.json)."""

import json

import pytest
from safetensors.torch import load_file

from fairspeech.asr.synthetic import make_tone_corpus
from fairspeech.verification import cli
from fairspeech.verification.train import load_config, train


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_tone_corpus(tmp_path_factory.mktemp("tones"), n_speakers=12, utterances_per_speaker=4)


def tiny(corpus, feats, *extra):
    return [f'data.manifest="{corpus}"', f'data.cache_dir="{feats}"',
            "model.channels=16", "model.pool_channels=24", "model.embedding_dim=8", "model.layers=[[3, 1], [3, 2]]",
            "train.steps=8", "train.speakers_per_batch=4", "train.utterances_per_speaker=2", "train.crop_frames=40",
            "train.warmup_steps=2", "train.checkpoint_every=2", "train.log_every=1", "train.progress=false",
            "arw.pretrain_steps=3", "arw.recluster_every=2", "arw.n_clusters=2", "arw.hidden=4",
            'eval.groups=["gender", "voice_family"]', "eval.n_boot=20", *extra]


def weights(run_dir):
    return load_file(str(run_dir / "checkpoints" / "step-00000008.safetensors"))


def same(a, b):
    return a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_resume_is_exact(corpus, tmp_path):
    config = load_config(None, tiny(corpus, tmp_path / "f", "arw.enabled=true"))
    train(config, tmp_path / "straight")
    assert train(config, tmp_path / "resumed", stop_after_steps=5)["step"] == 5
    summary = train(config, tmp_path / "resumed")
    assert summary["steps"] == 8 and summary["log"][-1]["weight_max"] > 0
    assert same(weights(tmp_path / "straight"), weights(tmp_path / "resumed"))


def test_arw_from_baseline_pretraining_equals_arw_from_scratch(corpus, tmp_path):
    feats = tmp_path / "f"
    train(load_config(None, tiny(corpus, feats)), tmp_path / "baseline")
    arw = tiny(corpus, feats, "arw.enabled=true", 'arw.pair_weight="pair"')
    train(load_config(None, arw), tmp_path / "scratch")
    shared = train(load_config(None, arw + [f'train.init_pretrained="{tmp_path / "baseline"}"']), tmp_path / "shared")
    assert shared["pretrained_from"].endswith("pretrain")
    assert same(weights(tmp_path / "scratch"), weights(tmp_path / "shared"))
    assert not same(weights(tmp_path / "scratch"), weights(tmp_path / "baseline"))
    other = load_config(None, arw + [f'train.init_pretrained="{tmp_path / "baseline"}"', "train.lr=1e-2"])
    with pytest.raises(ValueError, match="train"):
        train(other, tmp_path / "mismatch")


def test_cli_trains_evaluates_and_skips_done_work(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train-verifier", "--config", "none", "--arw", "--pair-weight", "sum", "--seed", "3", "--out", str(out)]
    argv += [a for s in tiny(corpus, tmp_path / "f") for a in ("--set", s)]
    assert cli.main(argv) == 0
    report = json.loads((out / "eval.json").read_text())
    assert 0 <= report["overall"]["eer"] <= 1
    assert report["trials"]["target"] == 2 * 6  # two held-out speakers, 4 utterances each
    assert json.loads((out / "model.json").read_text())["config"]["train"]["seed"] == 3
    stamp = (out / "eval.json").stat().st_mtime_ns
    assert cli.main(argv) == 0  # finished: no new steps, evaluation reused
    assert (out / "eval.json").stat().st_mtime_ns == stamp
    assert "EER" in capsys.readouterr().out


def _rank_main(rank, world, port, corpus, root):
    """One torchrun-like rank: train 8 ARW steps, record the learner's and adversaries' parameters after each step.
    (Batch-norm running statistics are each rank's own until DDP broadcasts rank 0's at the next forward; rank 0 saves.)"""
    import hashlib
    import os

    import torch

    from fairspeech.training.trainer import Trainer

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    captured = {}
    original = Trainer.training_step

    def step_and_record(self, wrapped, batch):
        record = original(self, wrapped, batch)
        digest = hashlib.sha256()
        for module in [self.model] + [cb.state_module() for cb in self.callbacks if cb.state_module() is not None]:
            for name, value in sorted(module.named_parameters()):  # the learner, then both adversaries
                digest.update(name.encode() + value.detach().contiguous().numpy().tobytes())
        captured["digest"] = digest.hexdigest()
        return record

    Trainer.training_step = step_and_record
    summary = train(load_config(None, tiny(corpus, f"{root}/f", "arw.enabled=true")), f"{root}/exp")
    with open(f"{root}/rank{rank}.txt", "w") as handle:
        handle.write(f"{captured['digest']} {summary['steps']} {summary['world_size']}")
    torch.distributed.destroy_process_group()


def test_two_ranks_hold_identical_weights(corpus, tmp_path):
    """Under torchrun (2 CPU processes, gloo) each rank takes half of every batch's speakers; DDP and the
    adversary's all-reduce keep the learner and the adversaries identical on both ranks."""
    import socket

    import torch.multiprocessing as mp

    from fairspeech.asr.data import load_splits

    load_splits(corpus, ["train"], tmp_path / "f", progress=False)  # the feature cache, built once before the ranks read it
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_rank_main, args=(2, port, str(corpus), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = ((tmp_path / f"rank{r}.txt").read_text().split() for r in range(2))
    assert rank0[2] == rank1[2] == "2" and rank0[1] == rank1[1] == "8"
    assert rank0[0] == rank1[0]
    assert (tmp_path / "exp" / "model.safetensors").exists()
