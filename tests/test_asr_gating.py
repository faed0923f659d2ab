"""Block gating: skipped blocks pass the residual exactly, hard routing matches the relaxation at
binary gates, the compute penalty and FLOP counts follow the gates."""

import pytest
import torch

from fairspeech.asr.block_gating import GatedCTCModel, GatingConfig, gated_attention, gated_conv, gated_residual
from fairspeech.asr.ctc_model import CTCModel
from fairspeech.asr.encoder import EncoderConfig
from fairspeech.asr.flops import count_flops, flops_per_frame

TINY = EncoderConfig(n_mels=80, dim=32, heads=2, ff_dim=64, layers=2, subsampling_channels=8, chunk_size=4, left_chunks=2, conv_kernel=5)


def _model(**kw):
    torch.manual_seed(0)
    model = GatedCTCModel(TINY, 10, GatingConfig(**kw))
    model.block_flops.copy_(torch.tensor([1000.0, 2000.0, 500.0], dtype=torch.float64))  # set, not measured: no FLOP counter here
    return model


def _set_gates(model, bias):
    with torch.no_grad():
        for arbitrator in [*model.attention_gates, *model.ff_gates, *(model.conv_gates or [])]:
            arbitrator.weight.zero_()
            arbitrator.bias.fill_(bias)


def test_skipped_blocks_pass_the_residual_exactly():
    layer = _model().encoder.layers[0].eval()
    x = torch.randn(2, 9, 32)
    off = torch.zeros(2, 9, dtype=torch.bool)
    bias = torch.zeros(2, 1, 9, 9)
    assert torch.equal(gated_residual(off, layer.feed_forward, x), x)
    assert torch.equal(gated_attention(layer, x, off, bias, _model().encoder.rope), x)
    some = off.clone()
    some[0, 3] = True
    out = gated_residual(some, layer.feed_forward, x)
    assert torch.equal(out[~some], x[~some]) and not torch.equal(out[0, 3], x[0, 3])


@pytest.mark.parametrize("gate_conv", [True, False])
def test_all_blocks_off_leaves_only_the_ungated_parts(gate_conv):
    model = _model(gate_conv=gate_conv).eval()
    _set_gates(model, -50.0)
    features, lengths = torch.randn(2, 120, 80), torch.tensor([120, 90])
    with torch.no_grad():
        out = model(features, lengths)
        x, _ = model.frontend(features, lengths)
        if not gate_conv:
            for layer in model.encoder.layers:  # the ungated convolution modules
                x = x + layer.conv(x)
        expected = torch.log_softmax(model.head(model.encoder.norm(x)), dim=-1)
    assert torch.equal(out.log_probs, expected)
    assert float(out.routing.max()) == 0.0


def test_gated_conv_off_frames_pass_and_feed_their_neighbours_zeros():
    conv = _model().encoder.layers[0].conv.eval()
    x = torch.randn(2, 10, 32)
    route = torch.rand(2, 10) > 0.5
    route[:, 4] = False
    with torch.no_grad():
        hard = gated_conv(conv, x, route)
        soft = gated_conv(conv, x, route.float())
        assert torch.allclose(hard, soft, atol=1e-5)  # the relaxation at binary gates is the hard computation
        assert torch.equal(hard[~route], x[~route])
        changed = x.clone()
        changed[:, 4] += 10.0  # an off frame's input reaches no other frame
        assert torch.equal(gated_conv(conv, changed, route)[route], hard[route])


def test_hard_gates_match_the_relaxation_at_binary_values():
    model = _model().eval()
    layer, rope = model.encoder.layers[0], model.encoder.rope
    x = torch.randn(2, 12, 32)
    route = torch.rand(2, 12) > 0.4
    route[:, 0] = True
    bias = model.encoder.attention_bias(torch.tensor([12, 12]), 12)
    hard = gated_attention(layer, x, route, bias, rope)
    soft = gated_attention(layer, x, route.float(), bias, rope)
    assert torch.allclose(hard, soft, atol=1e-5)


def test_all_on_equals_the_baseline_and_penalty_tracks_compute():
    baseline = CTCModel(TINY, 10).eval()
    model = _model(compute_weight=0.5)
    model.load_state_dict(baseline.state_dict(), strict=False)
    model.eval()
    _set_gates(model, 50.0)
    features, lengths = torch.randn(1, 100, 80), torch.tensor([100])
    with torch.no_grad():
        assert torch.allclose(model(features, lengths).log_probs, baseline(features, lengths).log_probs, atol=1e-5)
    model.train()
    for bias, expected in ((50.0, 1.0), (-50.0, 0.0)):
        _set_gates(model, bias)
        out = model(features, lengths)
        assert out.stats["compute_share"] == pytest.approx(expected, abs=1e-4)
        assert out.penalty.item() == pytest.approx(0.5 * expected, abs=1e-4)
    _set_gates(model, 0.0)
    out = model(features, lengths)
    out.penalty.backward()
    assert model.ff_gates[0].bias.grad.item() > 0  # the penalty pushes gates towards "off"


def test_flop_counter_sees_attention_and_gating_saves_compute():
    model = _model().eval()
    model.measure_block_flops(frames=40)
    attention, feed_forward, conv = model.block_flops.tolist()
    d, ff = TINY.dim, TINY.ff_dim
    # conv module: pointwise d -> 2d and d -> d, and the depthwise kernel (norms and GLU are not FLOP-counted)
    assert conv == pytest.approx(2 * (3 * d * d + d * TINY.conv_kernel))
    # q, k, v and output projections (4 d^2 MACs) plus scores and weighted values over 40 keys, 2 FLOPs per MAC.
    assert attention == pytest.approx(2 * (4 * d * d + 2 * 40 * d))
    assert feed_forward == pytest.approx(2 * 2 * d * ff)
    features, lengths = torch.randn(1, 300, 80), torch.tensor([300])
    _set_gates(model, 50.0)
    full = flops_per_frame(model, features, lengths)
    _set_gates(model, -50.0)
    none = flops_per_frame(model, features, lengths)
    # Gated-off frames save their projections, feed-forward and the conv module's pointwise layers; attention
    # scores are counted dense either way, and the depthwise convolution runs unless every frame is off (here).
    assert full - none == pytest.approx(TINY.layers * 2 * (4 * d * d + 2 * d * ff + 3 * d * d + d * TINY.conv_kernel))
    assert count_flops(lambda: torch.ones(3, 3) @ torch.ones(3, 3)) == 54
