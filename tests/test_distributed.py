"""Two CPU processes (gloo) train the tiny ASR model for a few steps: both ranks end with identical
weights, and the run is the same one torchrun would start (RANK/WORLD_SIZE from the environment)."""

import hashlib
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from fairspeech.utils import distributed
from fairspeech.asr.synthetic import make_tone_corpus, tiny_config


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _weights_digest(model_state: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(model_state):
        digest.update(name.encode())
        digest.update(model_state[name].detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _rank_main(rank: int, world: int, port: int, manifest: str, workdir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from fairspeech.asr import train as train_module
    from fairspeech.training import Callback

    captured = {}
    original_save = train_module.ckpt.save_checkpoint

    def capture(directory, step, model, optimizer, progress, keep=2, extra=None):  # rank 0 only writes; every rank reports its weights
        captured["digest"] = _weights_digest(model.state_dict())
        return original_save(directory, step, model, optimizer, progress, keep, extra)

    class Digest(Callback):
        def after_step(self, trainer, step):
            captured.update(digest=_weights_digest(trainer.model.state_dict()))

    train_module.ckpt.save_checkpoint = capture
    summary = train_module.train(tiny_config(manifest, f"{workdir}/feats", epochs=2), f"{workdir}/exp", callbacks=[Digest()])
    with open(f"{workdir}/rank{rank}.txt", "w") as handle:
        handle.write(f"{captured['digest']} {summary['steps']} {summary['world_size']}")
    torch.distributed.destroy_process_group()


def test_two_ranks_hold_identical_weights(tmp_path):
    manifest = make_tone_corpus(tmp_path / "tones")
    # Features cached once up front, so the two ranks do not race to write the cache.
    tiny = tiny_config(manifest, tmp_path / "feats", epochs=1)
    from fairspeech.asr.data import load_splits

    load_splits(tiny.data.manifest, ["train"], tiny.data.cache_dir, progress=False)
    mp.spawn(_rank_main, args=(2, _free_port(), str(manifest), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = ((tmp_path / f"rank{r}.txt").read_text().split() for r in range(2))
    assert rank0[2] == rank1[2] == "2"
    assert int(rank0[1]) >= 2 and rank0[1] == rank1[1]  # same number of steps on both ranks
    assert rank0[0] == rank1[0]  # identical weights after the last step
    assert (tmp_path / "exp" / "model.safetensors").exists()


def test_single_process_helpers_are_no_ops():
    assert not distributed.is_distributed() and distributed.rank() == 0 and distributed.world_size() == 1
    assert distributed.shard([1, 2, 3]) == [1, 2, 3]
    module = torch.nn.Linear(2, 2)
    assert distributed.wrap(module) is module and distributed.unwrap(module) is module
    tensor = torch.ones(3)
    assert distributed.all_reduce_sum(tensor) is tensor and float(tensor.sum()) == 3.0
