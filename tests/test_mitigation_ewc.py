"""EWC: per-sample diagonal Fisher (empirical and sampled), normalization, penalty by hand, online accumulation,
save/load, and the Fisher summed over two gloo ranks equal to the single-process one."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch.nn import functional as F

from fairspeech.asr.config import build_model
from fairspeech.asr.data import SplitData, load_splits
from fairspeech.asr.synthetic import make_tone_corpus, tiny_config
from fairspeech.asr.tokenizer import train_tokenizer
from fairspeech.mitigation.ewc import DiagonalFisher, OnlineEWC, sample_ctc_labels


def _setup(root):
    existing = root / "tones" / "manifest.parquet"  # ranks reuse the parent's corpus: rewriting it races their reads
    manifest = existing if existing.exists() else make_tone_corpus(root / "tones", n_speakers=4, utterances_per_speaker=3)
    config = tiny_config(manifest, root / "feats")
    frame, cache = load_splits(config.data.manifest, ["train"], config.data.cache_dir, progress=False)["train"]
    tokenizer = train_tokenizer("char", frame["reference"].tolist())
    torch.manual_seed(0)
    model = build_model(config, tokenizer.vocab_size)
    return config, SplitData(cache, frame["reference"].tolist(), tokenizer), tokenizer, model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    return _setup(tmp_path_factory.mktemp("ewc"))


def _manual_fisher(model, data, indices):
    """Squared gradients of -log p(reference) one utterance at a time with plain autograd."""
    model.eval()
    sums = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in indices:
        batch = data.batch([i])
        out = model(batch.features, batch.lengths)
        loss = F.ctc_loss(out.log_probs.transpose(0, 1), batch.targets, out.lengths, batch.target_lengths, blank=0, reduction="sum", zero_infinity=True)
        model.zero_grad()
        loss.backward()
        for n, p in model.named_parameters():
            sums[n] += p.grad ** 2
    model.zero_grad()
    return {n: s / len(indices) for n, s in sums.items()}


def test_fisher_is_mean_of_per_sample_squared_gradients(tiny):
    _, data, _, model = tiny
    indices = list(range(len(data)))
    fisher = DiagonalFisher("empirical", normalize=False, progress=False).fit(model, data, indices)
    manual = _manual_fisher(model, data, indices)
    assert fisher.n_samples_ == len(indices) and fisher.scale_ == 1.0
    for name, value in manual.items():
        assert fisher.fisher_[name].dtype == torch.float32
        torch.testing.assert_close(fisher.fisher_[name], value, rtol=1e-4, atol=1e-10)
    # Batch-size invariance: the estimate over all utterances is the size-weighted mean of the estimates
    # over any partition (no batch enters it), whereas a squared mini-batch gradient shrinks with batch size.
    half = len(indices) // 2
    first = DiagonalFisher("empirical", normalize=False, progress=False).fit(model, data, indices[:half]).fisher_
    second = DiagonalFisher("empirical", normalize=False, progress=False).fit(model, data, indices[half:]).fisher_
    for name in manual:
        combined = (half * first[name] + (len(indices) - half) * second[name]) / len(indices)
        torch.testing.assert_close(combined, fisher.fisher_[name], rtol=1e-4, atol=1e-10)
    batch = data.batch(indices)
    out = model(batch.features, batch.lengths)
    loss = F.ctc_loss(out.log_probs.transpose(0, 1), batch.targets, out.lengths, batch.target_lengths, blank=0, reduction="sum", zero_infinity=True) / len(indices)
    model.zero_grad()
    loss.backward()
    batch_squared = sum(float((p.grad ** 2).sum()) for p in model.parameters())
    model.zero_grad()
    assert batch_squared < 0.9 * sum(float(v.sum()) for v in fisher.fisher_.values())


def test_normalization_and_kinds(tiny):
    _, data, _, model = tiny
    raw = DiagonalFisher("empirical", normalize=False, progress=False).fit(model, data)
    norm = DiagonalFisher("empirical", normalize=True, progress=False).fit(model, data)
    numel = sum(v.numel() for v in norm.fisher_.values())
    assert abs(float(sum(v.double().sum() for v in norm.fisher_.values())) / numel - 1.0) < 1e-5
    assert norm.scale_ == pytest.approx(1 / raw.raw_mean_)
    for name in raw.fisher_:
        torch.testing.assert_close(norm.fisher_[name], raw.fisher_[name] * norm.scale_)
    sampled = DiagonalFisher("sampled", normalize=False, seed=3, progress=False).fit(model, data)
    again = DiagonalFisher("sampled", normalize=False, seed=3, progress=False).fit(model, data)
    other = DiagonalFisher("sampled", normalize=False, seed=4, progress=False).fit(model, data)
    name = next(iter(raw.fisher_))
    torch.testing.assert_close(sampled.fisher_[name], again.fisher_[name])  # same seed, same draws
    assert not torch.equal(sampled.fisher_[name], raw.fisher_[name])
    assert not torch.equal(sampled.fisher_[name], other.fisher_[name])
    with pytest.raises(ValueError, match="kind"):
        DiagonalFisher("diagonal", progress=False).fit(model, data)


def test_sampled_labels_collapse_paths():
    blank = 0
    # one-hot frames: path 1 1 0 1 2 2 0 0 3 -> labels 1 1 2 3
    path = torch.tensor([1, 1, 0, 1, 2, 2, 0, 0, 3])
    log_probs = torch.log(F.one_hot(path, 4).float().clamp(min=1e-12))
    labels = sample_ctc_labels(log_probs, blank, torch.Generator().manual_seed(0))
    assert labels.tolist() == [1, 1, 2, 3]


def test_penalty_by_hand_and_online_accumulation(tmp_path):
    model = torch.nn.Linear(2, 1, bias=True)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0]]))
        model.bias.fill_(0.5)
    fisher1 = {"weight": torch.tensor([[2.0, 0.5]]), "bias": torch.tensor([4.0])}
    ewc = OnlineEWC(gamma=0.5).consolidate(model, fisher1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.5, 1.0]]))  # moved by +0.5, -1.0
        model.bias.fill_(0.0)  # moved by -0.5
    by_hand = 2.0 * 0.25 + 0.5 * 1.0 + 4.0 * 0.25  # 2.0
    assert float(ewc.distance(model).detach()) == pytest.approx(by_hand)
    assert float(ewc.penalty(model, lam=3.0).detach()) == pytest.approx(1.5 * by_hand)
    loss, stats = ewc.regularizer(3.0)(model, None, None)
    loss.backward()
    assert stats["ewc_distance"] == pytest.approx(by_hand)
    torch.testing.assert_close(model.weight.grad, 3.0 * torch.tensor([[2.0 * 0.5, 0.5 * -1.0]]))  # lam * F * (theta - theta*)
    # online: F <- gamma F_old + F_new, anchored at the newest weights
    fisher2 = {"weight": torch.tensor([[1.0, 1.0]]), "bias": torch.tensor([0.0])}
    ewc.consolidate(model, fisher2)
    assert ewc.n_updates_ == 2
    torch.testing.assert_close(ewc.fisher_["weight"], torch.tensor([[2.0, 1.25]]))
    torch.testing.assert_close(ewc.fisher_["bias"], torch.tensor([2.0]))
    torch.testing.assert_close(ewc.anchor_["weight"], torch.tensor([[1.5, 1.0]]))
    assert float(ewc.distance(model).detach()) == 0.0
    ewc.save(tmp_path / "ewc.safetensors", {"note": "x"})
    loaded = OnlineEWC.load(tmp_path / "ewc.safetensors")
    assert loaded.gamma == 0.5 and loaded.n_updates_ == 2 and loaded.meta_["note"] == "x"
    torch.testing.assert_close(loaded.fisher_["weight"], ewc.fisher_["weight"])
    with pytest.raises(KeyError, match="not trainable"):
        OnlineEWC().consolidate(model, {"nope": torch.zeros(1)})
    with pytest.raises(ValueError, match="shape"):
        OnlineEWC().consolidate(model, {"bias": torch.zeros(3)})
    with pytest.raises(FileNotFoundError):
        OnlineEWC.load(tmp_path / "missing.safetensors")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, root: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from pathlib import Path

    from fairspeech.utils import distributed

    torch.set_num_threads(1)
    distributed.init_from_env("gloo")
    _, data, _, model = _setup(Path(root))
    fisher = DiagonalFisher("sampled", normalize=True, seed=1, progress=False).fit(model, data)
    if rank == 0:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in fisher.fisher_.items()}, f"{root}/fisher_ranks.safetensors")
        (Path(root) / "n_samples.txt").write_text(str(fisher.n_samples_))
    torch.distributed.destroy_process_group()


def test_two_ranks_sum_to_the_single_process_fisher(tmp_path):
    from safetensors.torch import load_file

    _, data, _, model = _setup(tmp_path)  # builds the feature cache before the ranks read it
    single = DiagonalFisher("sampled", normalize=True, seed=1, progress=False).fit(model, data)
    mp.spawn(_rank_main, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = load_file(str(tmp_path / "fisher_ranks.safetensors"))
    assert int((tmp_path / "n_samples.txt").read_text()) == single.n_samples_ == len(data)
    for name, value in single.fisher_.items():
        torch.testing.assert_close(ranks[name], value, rtol=1e-4, atol=1e-8)
