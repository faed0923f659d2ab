"""Backlog simulation, amortization loss, accelerator profiles, annealed routing, the branched encoder."""

import pytest
import torch

from fairspeech.asr.amortized import AmortizedCTCModel, AmortizedConfig, mix
from fairspeech.asr.backlog import amortization_loss, simulate_backlog
from fairspeech.asr.ctc_model import CTCModel
from fairspeech.asr.encoder import EncoderConfig
from fairspeech.asr.routing import TemperatureSchedule, binary_fraction, gumbel_sigmoid
from fairspeech.accelerator import AcceleratorProfile, load_profile

TINY = EncoderConfig(n_mels=80, dim=32, heads=2, ff_dim=64, layers=2, subsampling_channels=8, chunk_size=4, left_chunks=2, conv_kernel=5)


def test_backlog_hand_computed():
    # rate 1000 FLOP/s, shift 0.04 s: a frame of 60 FLOPs takes 0.06 s (+0.02 backlog), of 20 FLOPs 0.02 s (-0.02).
    trace, latency = simulate_backlog(torch.tensor([60.0, 60.0, 20.0, 20.0, 20.0, 60.0]), None, rate=1000.0, frame_shift=0.04)
    assert trace[0].tolist() == pytest.approx([0.02, 0.04, 0.02, 0.0, 0.0, 0.02])
    assert latency.tolist() == pytest.approx([0.02])


def test_backlog_of_a_model_slower_than_real_time_grows_linearly_and_respects_lengths():
    costs = torch.full((2, 100), 80.0)  # 0.08 s of work per 0.04 s frame
    _, latency = simulate_backlog(costs, torch.tensor([100, 10]), rate=1000.0, frame_shift=0.04)
    assert latency.tolist() == pytest.approx([100 * 0.04, 10 * 0.04])
    _, fast = simulate_backlog(torch.full((1, 100), 39.0), None, rate=1000.0, frame_shift=0.04)
    assert fast.item() == 0.0


def test_default_profile_is_650_mflops_and_bad_profiles_fail(tmp_path):
    profile = load_profile()
    assert profile.peak_flops == 650e6 and profile.parallelism == 1
    assert profile.seconds_for(26e6) == pytest.approx(0.04)
    (tmp_path / "bad.toml").write_text('name = "bad"\npeak_flops = 0\n')
    with pytest.raises(ValueError, match="peak_flops"):
        load_profile(tmp_path / "bad.toml")
    with pytest.raises(FileNotFoundError, match="single_thread_650mflops"):
        load_profile("no_such_device")
    assert AcceleratorProfile("x", 1e9).to_dict()["precisions"] == ["fp32"]


def test_amortization_loss_hand_computed():
    gates = torch.tensor([[1.0, 0.0, 0.25, 1.0]])  # slow-branch gates
    backlog = torch.tensor([[0.0, 0.0, 0.02, 0.04]])  # seconds, seen by each frame
    mask = torch.tensor([[True, True, True, False]])
    loss, idle = amortization_loss(gates, backlog, mask, frame_shift=0.04, idle_weight=2.0, busy_weight=1.0)
    # idle: frame 1 is fast with no backlog (1); busy: frame 2 is 0.25 slow with half a shift of backlog.
    assert idle.item() == pytest.approx(1 / 3)
    assert loss.item() == pytest.approx(2.0 * 1 / 3 + 1.0 * (0.25 * 0.5) / 3)


def test_annealed_routing_becomes_binary():
    torch.manual_seed(0)
    logits = torch.randn(4000) * 2
    schedule = TemperatureSchedule(start=2.0, end=0.01, anneal_fraction=0.5)
    assert schedule(0, 100) == pytest.approx(2.0) and schedule(50, 100) == pytest.approx(0.01) == schedule(90, 100)
    hot = binary_fraction(gumbel_sigmoid(logits, schedule(0, 100)))
    cold = binary_fraction(gumbel_sigmoid(logits, schedule(60, 100)))
    assert hot < 0.2 and cold > 0.97
    # The relaxed gate is a Bernoulli(sigmoid(logit)) sample as it cools.
    ones = gumbel_sigmoid(torch.full((20000,), 1.0), 0.01).round().mean().item()
    assert ones == pytest.approx(torch.sigmoid(torch.tensor(1.0)).item(), abs=0.02)


def test_mix_hard_routing_equals_relaxation_at_binary_gates():
    x = torch.randn(2, 5, 3)
    route = torch.tensor([[True, False, True, True, False], [False, False, True, False, True]])
    slow, fast = torch.nn.Linear(3, 4), torch.nn.Linear(3, 4)
    assert torch.allclose(mix(route, slow, fast, x), mix(route.float(), slow, fast, x), atol=1e-6)
    assert torch.allclose(mix(torch.ones(2, 5, dtype=torch.bool), slow, fast, x), slow(x))


def _amortized(**kw):
    torch.manual_seed(0)
    model = AmortizedCTCModel(TINY, 10, AmortizedConfig(fast_rank=4, **kw))
    model.branch_flops.copy_(torch.tensor([10e6, 40e6], dtype=torch.float64))  # set, not measured: no FLOP counter here
    return model


def test_branched_encoder_routes_by_backlog_and_trains_end_to_end():
    model = _amortized(profile="single_thread_650mflops")
    features, lengths = torch.randn(2, 200, 80), torch.tensor([200, 150])
    model.train()
    out = model(features, lengths)
    assert out.penalty is not None and out.penalty.item() > 0
    (out.log_probs.mean() + out.penalty).backward()
    assert model.arbitrator.frame.weight.grad.abs().sum() > 0  # the arbitrator learns from both losses
    assert model.fast.layers[0].ff.up[0].weight.grad.abs().sum() > 0 and model.slow.layers[0].ff.up.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model(features, lengths)
    assert out.routing.dtype == torch.bool and out.routing.shape == out.log_probs.shape[:2]
    # A 40 MFLOP frame on a 650 MFLOP/s device takes 62 ms per 40 ms: after a slow frame the backlog is positive.
    model.arbitrator.out.bias.data.fill_(50.0)  # always slow
    with torch.no_grad():
        always_slow = model(features, lengths).routing
    assert always_slow[0].all()


def test_forced_routes_are_the_single_encoder_baselines():
    model = _amortized().eval()
    features, lengths = torch.randn(1, 120, 80), torch.tensor([120])
    model.force_route = "slow"
    with torch.no_grad():
        slow = model(features, lengths)
    baseline = CTCModel(TINY, 10).eval()
    state = {k.replace("encoder.", "slow.", 1): v for k, v in baseline.state_dict().items()}
    model.load_state_dict(state, strict=False)
    with torch.no_grad():
        assert torch.allclose(model(features, lengths).log_probs, baseline(features, lengths).log_probs, atol=1e-5)
    assert slow.routing.all()


def test_full_rank_svd_initialization_copies_the_slow_branch():
    baseline = CTCModel(TINY, 10)
    model = AmortizedCTCModel(TINY, 10, AmortizedConfig(fast_rank=32))  # rank = dim: a plain Linear, copied
    report = model.init_from_state(baseline.state_dict())
    assert report["fresh"] == ["arbitrator.backlog.weight", "arbitrator.frame.bias", "arbitrator.frame.weight", "arbitrator.out.bias", "arbitrator.out.weight", "branch_flops"]
    lean = AmortizedCTCModel(TINY, 10, AmortizedConfig(fast_rank=8))
    lean.init_from_state(baseline.state_dict())
    w = baseline.encoder.layers[0].qkv.weight
    approx = lean.fast.layers[0].qkv[1].weight @ lean.fast.layers[0].qkv[0].weight
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    best = (u[:, :8] * s[:8]) @ vh[:8]
    assert torch.allclose(approx, best, atol=1e-5)  # the best rank-8 approximation (Eckart-Young)


def test_measured_latency_of_a_model_slower_than_the_device():
    from fairspeech.asr.data import FeatureCache, SplitData
    from fairspeech.asr.efficiency import measure, summarize
    from fairspeech.asr.flops import flops_per_frame

    model = CTCModel(TINY, 10).eval()
    cache = FeatureCache(["a", "b"], torch.randn(300, 80).half(), torch.tensor([0, 120, 300]))
    data = SplitData(cache)
    per_frame = flops_per_frame(model, *[t for t in (data.batch([0]).features, data.batch([0]).lengths)])
    profile = AcceleratorProfile("tiny_device", peak_flops=per_frame / 0.1)  # 0.1 s of work per 0.04 s frame
    per_utt = measure(model, data, profile)
    frames = per_utt["encoder_frames"].tolist()
    assert frames == [29, 44]
    assert per_utt["latency_s"].tolist()[0] == pytest.approx(29 * 0.06, rel=1e-6)
    # The longer utterance attends over more keys, so its frames cost a little more: latency at least as long.
    assert per_utt["latency_s"].tolist()[1] >= 44 * 0.06 * 0.999
    summary = summarize(per_utt, profile)
    assert summary["real_time_factor_on_profile"] == pytest.approx(2.5, rel=0.05)
    assert summary["latency_ms"]["share_under_10ms"] == 0.0


def test_latency_term_is_the_relaxed_backlog_at_the_end():
    model = _amortized(idle_weight=0.0, busy_weight=0.0, latency_weight=1.0)
    model.train()
    with torch.no_grad():
        model.arbitrator.out.bias.fill_(50.0)  # every frame slow: 40 MFLOP at 650 MFLOP/s, 61.5 ms per 40 ms frame
    features, lengths = torch.randn(2, 200, 80), torch.tensor([200, 120])
    out = model(features, lengths)
    frames = out.lengths.double()
    expected = (frames * (40e6 / 650e6 - 0.04)).mean() / 0.04
    assert out.penalty.item() == pytest.approx(expected.item(), rel=1e-4)
    with torch.no_grad():
        model.arbitrator.out.bias.fill_(-50.0)  # every frame fast: 15 ms per frame, no backlog
    assert model(features, lengths).penalty.item() == pytest.approx(0.0, abs=1e-6)
