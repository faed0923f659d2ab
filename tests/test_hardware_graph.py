"""Decomposition: the operators, FLOPs and memory a forward pass is made of."""

import torch
from torch import nn
from torch.nn import functional as F

from fairspeech.asr.ctc_model import CTCModel
from fairspeech.asr.encoder import EncoderConfig
from fairspeech.asr.flops import count_flops, reference_input
from fairspeech.hardware.graph import output_frames, trace


class TinyEncoder(nn.Module):
    """conv1d -> depthwise conv1d -> linear -> layer norm -> attention -> relu, with known shapes."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(8, 16, 3, padding=1)
        self.depthwise = nn.Conv1d(16, 16, 5, padding=2, groups=16)
        self.proj = nn.Linear(16, 32)
        self.norm = nn.LayerNorm(32)

    def forward(self, x):  # x: (1, 8, 20)
        y = self.depthwise(self.conv(x)).transpose(1, 2)  # (1, 20, 16)
        y = self.norm(self.proj(y))  # (1, 20, 32)
        q = y.view(1, 20, 2, 16).transpose(1, 2)  # (1, 2, 20, 16)
        return F.relu(F.scaled_dot_product_attention(q, q, q))


def test_decomposition_finds_the_operators_and_their_flops():
    torch.manual_seed(0)
    model = TinyEncoder().eval()
    graph, out = trace(model, (torch.randn(1, 8, 20),))
    dense = [(c.kind, c.flops) for c in graph.calls if c.flops]
    assert dense == [
        ("conv1d", 2 * 16 * 20 * 8 * 3),
        ("depthwise_conv1d", 2 * 16 * 20 * 1 * 5),
        ("linear", 2 * 20 * 16 * 32),
        ("attention", 2 * (2 * 2 * 20 * 20 * 16)),
    ]
    kinds = [c.kind for c in graph.calls]
    assert kinds.count("layer_norm") == 1 and kinds.count("activation") == 1
    assert {"view"} <= set(kinds)  # transpose/view are recorded as free aliasing calls
    assert graph.flops == count_flops(lambda: model(torch.randn(1, 8, 20)))
    assert graph.param_bytes == 4 * sum(p.numel() for p in model.parameters())
    assert out.shape == (1, 2, 20, 16)


def test_peak_activation_of_a_chain_is_the_largest_adjacent_pair():
    model = nn.Sequential(nn.Linear(10, 100), nn.ReLU(), nn.Linear(100, 5)).eval()
    graph, _ = trace(model, (torch.randn(4, 10),))
    # input 4x10 lives until the first linear; then 4x100 (linear out) and 4x100 (relu out) overlap at the relu.
    assert graph.peak_activation_bytes() == 4 * (4 * 100 + 4 * 100)
    assert graph.peak_activation_bytes(bytes_per_float=2) == 2 * (4 * 100 + 4 * 100)
    assert graph.module_calls == 4  # the Sequential and its three children


def test_asr_model_flops_match_the_flop_counter_and_frames_are_counted():
    torch.manual_seed(0)
    model = CTCModel(EncoderConfig(dim=64, heads=2, ff_dim=128, layers=2), 29).eval()
    features, lengths = reference_input(80, 1.0)
    graph, out = trace(model, (features, lengths))
    assert graph.flops == count_flops(lambda: model(features, lengths))
    assert output_frames(out) == int(out.lengths.sum()) == 24
    counts = graph.kind_counts()
    assert counts["conv2d"] == 2 and counts["attention"] == 2 and counts["linear"] == 2 * 4 + 2
