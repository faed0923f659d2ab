"""The training layer on fairspeech's own CTC model: callbacks compose, ASR reweighting, every tensor on the model's device."""

import numpy as np
import pytest
import torch

from fairspeech.asr.ctc_model import CTCModel
from fairspeech.asr.data import UtteranceData
from fairspeech.asr.encoder import EncoderConfig
from fairspeech.mitigation.ewc import DiagonalFisher, OnlineEWC
from fairspeech.training import AdversarialReweighter, CTCObjective, Trainer, TrainerConfig
from fairspeech.updates.train import DiffTrainer

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def tiny_model(seed: int = 0) -> CTCModel:
    torch.manual_seed(seed)
    return CTCModel(EncoderConfig(n_mels=8, dim=16, heads=2, ff_dim=32, layers=1, subsampling_channels=4), vocab_size=6)


def logmels(n: int = 10, seed: int = 0) -> UtteranceData:
    rng = np.random.default_rng(seed)
    return UtteranceData([torch.from_numpy(rng.standard_normal((int(rng.integers(40, 60)), 8)).astype(np.float32)) for _ in range(n)],
                         [rng.integers(1, 6, 3).tolist() for _ in range(n)])


@pytest.mark.parametrize("device", DEVICES)
def test_ewc_diff_and_reweighter_together_on_our_model(device):
    model = tiny_model().to(device)
    data = logmels()
    objective = CTCObjective(0)
    fisher = DiagonalFisher(progress=False).fit(model, data, objective=objective)
    ewc = OnlineEWC().consolidate(model, fisher.fisher_)
    diff = DiffTrainer("sparse", density=0.2, prune_every=1, value_dtype="float32")
    reweighter = AdversarialReweighter(16, len(data), n_clusters=2, hidden=8, start_step=1, recluster_every=2)
    trainer = Trainer(model, objective, TrainerConfig(lr=1e-2, warmup_steps=1, progress=False), [ewc.callback(10.0), diff, reweighter])
    summary = trainer.fit(lambda epoch: data.batches(150, shuffle_seed=[0, epoch]), 3, make_batch=data.batch)
    assert summary["steps"] >= 6
    assert all("ewc_distance" in r and "weight_max" in r for r in summary["log"][1:])
    assert diff.diff_.header["density"] == pytest.approx(0.2, abs=0.01)
    assert all(p.device.type == device for p in model.parameters())
    assert reweighter.state_.bank.device.type == device and bool(reweighter.state_.seen.all())


def test_reweighter_waits_for_start_step_and_needs_embeddings():
    model = tiny_model()
    data = logmels(6)
    reweighter = AdversarialReweighter(16, len(data), n_clusters=2, hidden=8, start_step=100)
    trainer = Trainer(model, CTCObjective(0), TrainerConfig(lr=1e-2, warmup_steps=1, progress=False), [reweighter])
    summary = trainer.fit(lambda epoch: data.batches(150, shuffle_seed=[0, epoch]), 1, make_batch=data.batch)
    assert not any("weight_max" in r for r in summary["log"])  # never active before start_step

    class NoEmbeddings(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = tiny_model()

        def forward(self, features, lengths):
            out = self.inner(features, lengths)
            return out.log_probs, out.lengths  # the bare protocol: no embeddings

    trainer = Trainer(NoEmbeddings(), CTCObjective(0), TrainerConfig(progress=False), [AdversarialReweighter(16, len(data), 2, 8)])
    with pytest.raises(ValueError, match="embeddings"):
        trainer.fit(lambda epoch: data.batches(150), 1, make_batch=data.batch)
