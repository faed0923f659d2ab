"""Diff files: round trip, safety (wrong base, truncated, malformed), pruning density, hashed reconstruction."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from fairspeech.updates import format as fmt
from fairspeech.updates.hashed import budget_bucket_ratio, hash_layout, hashed_delta
from fairspeech.updates.sparse import SparseDelta, density_at, prune_to
from fairspeech.updates.train import DiffTrainer


def _trained_diff(diff_type: str, seed: int = 0, **params):
    """A small model trained a few steps through the diff's own methods: (base state, trained model, trainer)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 12), nn.LayerNorm(12), nn.Linear(12, 3))
    base = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = DiffTrainer(diff_type, prune_every=2, **params)
    trainer.prepare_model(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x, y = torch.randn(16, 6), torch.randn(16, 3)
    for step in range(12):
        loss = ((model(x) - y) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        trainer.prune_step(model, step + 1, 12)
    trainer.finalize(model)
    return base, model, trainer


@pytest.mark.parametrize("diff_type", ["sparse", "hashed"])
def test_round_trip_applies_to_exactly_the_trained_weights(diff_type, tmp_path):
    base, model, trainer = _trained_diff(diff_type, density=0.2, bucket_ratio=0.25)
    path = fmt.write_diff(tmp_path / "u.diff.safetensors", trainer.diff_)
    diff = fmt.read_diff(path)
    header = diff.header
    assert header["format_version"] == fmt.FORMAT_VERSION and header["diff_type"] == diff_type
    assert header["base_sha256"] == fmt.weights_sha256(base)
    updated = fmt.apply_diff(base, diff)
    trained = model.state_dict()
    assert updated.keys() == trained.keys() and all(torch.equal(updated[k], trained[k]) for k in trained)
    assert not all(torch.equal(updated[k], base[k]) for k in base)  # it did learn something
    assert sorted(model.state_dict()) == sorted(base)  # folded: plain weights again, no parametrizations
    assert all(p.requires_grad for p in model.parameters())


def test_sparse_density_after_pruning_is_the_target():
    base, model, trainer = _trained_diff("sparse", density=0.1)
    total = sum(v.numel() for v in base.values())
    assert trainer.diff_.header["entries"] == -(-total // 10)  # ceil(0.1 * total), over all weights together
    assert trainer.diff_.header["density"] == pytest.approx(0.1, abs=1 / total)
    changed = sum(int((model.state_dict()[k] != base[k]).sum()) for k in base)
    assert changed <= trainer.diff_.header["entries"]


def test_prune_to_keeps_largest_and_never_revives():
    deltas = [SparseDelta((4, 5)), SparseDelta((10,))]
    with torch.no_grad():
        deltas[0].diff.copy_(torch.arange(20.0).view(4, 5))
        deltas[1].diff.copy_(-torch.arange(10.0) - 100)
    assert prune_to(deltas, 0.5) == 15
    assert deltas[1].mask.all() and int(deltas[0].mask.sum()) == 5 and deltas[0].mask.view(-1)[15:].all()
    with torch.no_grad():
        deltas[0].diff.fill_(1000.0)  # pruned entries grow again, but stay pruned
    prune_to(deltas, 0.2)
    assert int(deltas[0].mask.sum()) <= 5 and float(deltas[0].effective().view(-1)[:15].abs().sum()) == 0.0
    assert density_at(0, 100, 0.1) == 1.0 and density_at(70, 100, 0.1) == pytest.approx(0.1)
    assert density_at(40, 100, 0.1) < density_at(30, 100, 0.1) < 1.0


def test_fisher_criterion_keeps_what_the_loss_needs_not_the_largest():
    """criterion="fisher" ranks by D^2 * mean squared gradient: a large change along a flat direction goes first."""
    delta = SparseDelta((4,), track_fisher=True)
    with torch.no_grad():
        delta.diff.copy_(torch.tensor([3.0, 1.0, 2.0, 0.5]))
    for grad in (torch.tensor([0.0, 2.0, 1.0, 4.0]), torch.tensor([0.0, 2.0, -1.0, -4.0])):
        delta.diff.grad = grad
        delta.observe()
    assert int(delta.observed) == 2 and torch.equal(delta.grad_sq, torch.tensor([0.0, 8.0, 2.0, 32.0]))
    # D^2 * F = [0, 4, 4, 4]: the largest entry (3.0) has had no gradient at all, so dropping it costs nothing
    assert torch.equal(delta.score("fisher"), torch.tensor([0.0, 4.0, 4.0, 4.0]))
    prune_to([delta], 0.75, "fisher")
    assert delta.mask.tolist() == [False, True, True, True]
    magnitude = SparseDelta((4,))
    with torch.no_grad():
        magnitude.diff.copy_(torch.tensor([3.0, 1.0, 2.0, 0.5]))
    prune_to([magnitude], 0.75)
    assert magnitude.mask.tolist() == [True, True, True, False]
    with pytest.raises(ValueError, match="criterion"):
        delta.score("movement")


def test_hashed_reconstruction_matches_the_hash():
    buckets = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float16)
    index, sign = hash_layout("layer.weight", 12, 3, seed=7)
    assert index.min() >= 0 and index.max() <= 2 and set(sign.tolist()) <= {-1.0, 1.0}
    expected = torch.tensor([sign[p] * float(buckets[index[p]]) for p in range(12)]).view(3, 4)
    assert torch.equal(hashed_delta(buckets, [3, 4], "layer.weight", 7), expected)
    again, _ = hash_layout("layer.weight", 12, 3, seed=7)
    other, _ = hash_layout("layer.weight", 12, 3, seed=8)
    assert torch.equal(index, again) and not torch.equal(index, other)
    big, _ = hash_layout("w", 40000, 4, seed=0)
    assert torch.bincount(big).min() > 9000  # roughly uniform
    assert budget_bucket_ratio(0.1, value_bytes=2) == pytest.approx(0.3)


def test_wrong_base_fails_and_leaves_the_model_untouched(tmp_path):
    base, _, trainer = _trained_diff("sparse", density=0.2)
    diff = fmt.read_diff(fmt.write_diff(tmp_path / "u.diff.safetensors", trainer.diff_))
    other = {k: v.clone() for k, v in base.items()}
    other["0.bias"][0] += 1e-3
    snapshot = {k: v.clone() for k, v in other.items()}
    with pytest.raises(fmt.DiffError, match="made for base weights"):
        fmt.apply_diff(other, diff)
    assert all(torch.equal(other[k], snapshot[k]) for k in other)


def test_apply_file_to_wrong_base_leaves_the_deployed_file_untouched(tmp_path):
    base, _, trainer = _trained_diff("hashed", bucket_ratio=0.3)
    diff_path = fmt.write_diff(tmp_path / "u.diff.safetensors", trainer.diff_)
    deployed = tmp_path / "model.safetensors"
    other = {k: v + 0.5 for k, v in base.items()}
    save_file(other, str(deployed))
    deployed.with_suffix(".json").write_text(json.dumps({"config": {}}))
    before = deployed.read_bytes()
    with pytest.raises(fmt.DiffError, match="nothing was changed"):
        fmt.apply_diff_file(deployed, diff_path, deployed)
    assert deployed.read_bytes() == before
    save_file(base, str(deployed))
    fmt.apply_diff_file(deployed, diff_path, deployed)  # the right base: replaced by the update
    assert load_file(str(deployed)).keys() == base.keys()


def test_truncated_and_malformed_files_are_clear_errors(tmp_path):
    _, _, trainer = _trained_diff("sparse", density=0.2)
    good = fmt.write_diff(tmp_path / "good.safetensors", trainer.diff_)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) - 40])
    with pytest.raises(fmt.DiffError, match="truncated"):
        fmt.read_diff(truncated)

    def rewrite(name, header=None, tensors=None, metadata=None):
        path = tmp_path / name
        meta = metadata if metadata is not None else {fmt.HEADER_KEY: json.dumps(header)}
        save_file(tensors or trainer.diff_.tensors, str(path), metadata=meta)
        return path

    header = trainer.diff_.header
    with pytest.raises(fmt.DiffError, match="malformed header"):
        fmt.read_diff(rewrite("garbled.safetensors", metadata={fmt.HEADER_KEY: "{not json"}))
    with pytest.raises(fmt.DiffError, match="no 'fairspeech_diff' header"):
        fmt.read_diff(rewrite("bare.safetensors", metadata={}))
    with pytest.raises(fmt.DiffError, match="format_version 9"):
        fmt.read_diff(rewrite("future.safetensors", dict(header, format_version=9)))
    with pytest.raises(fmt.DiffError, match="'base_sha256'"):
        fmt.read_diff(rewrite("nobase.safetensors", {k: v for k, v in header.items() if k != "base_sha256"}))
    tampered = {k: v.clone() for k, v in trainer.diff_.tensors.items()}
    name = next(k for k in tampered if k.endswith(".values"))
    tampered[name][0] += 1
    with pytest.raises(fmt.DiffError, match="payload SHA-256"):
        fmt.read_diff(rewrite("tampered.safetensors", header, tampered))
    with pytest.raises(fmt.DiffError, match="no such diff file"):
        fmt.read_diff(tmp_path / "missing.safetensors")
