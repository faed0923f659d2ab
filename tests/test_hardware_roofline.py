"""Roofline latency on hand-computed cases."""

import math

import pytest
import torch
from torch import nn

from fairspeech.hardware.graph import trace
from fairspeech.hardware.operators import OpCall, TensorInfo, describe
from fairspeech.accelerator import AcceleratorProfile
from fairspeech.hardware.roofline import compute_ops, operator_terms, padding_factor, roofline_latencies


def linear_call(m: int, k: int, n: int) -> OpCall:
    inputs = [TensorInfo((1, m, k), "float32", 4 * m * k), TensorInfo((n, k), "float32", 4 * n * k, is_param=True),
              TensorInfo((n,), "float32", 4 * n, is_param=True)]
    return describe(OpCall("aten.linear.default", "linear", inputs, [TensorInfo((1, m, n), "float32", 4 * m * n)]))


def device(**overrides) -> AcceleratorProfile:
    values = dict(name="test", peak_flops=1e9, parallelism=1, memory_bandwidth=1e9, onchip_memory=0, precisions=("fp32",))
    values.update(overrides)
    return AcceleratorProfile(**values)


def test_padding_factor():
    assert padding_factor(256, 32) == 1.0
    assert padding_factor(250, 32) == pytest.approx(256 / 250)
    assert padding_factor(33, 32) == pytest.approx(64 / 33)
    assert padding_factor(7, 1) == 1.0


def test_compute_bound_linear():
    call = linear_call(100, 256, 256)  # 13.1 MFLOP, 0.5 MB moved
    terms = operator_terms(call, device(memory_bandwidth=1e12), weights_on_chip=False)
    assert terms.compute_s == pytest.approx(2 * 100 * 256 * 256 / 1e9)
    assert terms.seconds == terms.compute_s


def test_memory_bound_linear_streams_its_weights_unless_resident():
    call = linear_call(1, 1024, 1024)  # one frame: 2 MFLOP against 4 MB of weights
    slow_memory = device(peak_flops=1e12)
    weight_bytes = 4 * (1024 * 1024 + 1024)
    activation_bytes = 4 * (1024 + 1024)
    streamed = operator_terms(call, slow_memory, weights_on_chip=False)
    assert streamed.memory_s == pytest.approx((weight_bytes + activation_bytes) / 1e9)
    assert streamed.seconds == streamed.memory_s
    resident = operator_terms(call, device(peak_flops=1e12, onchip_memory=10**6), weights_on_chip=True)
    assert resident.memory_s == 0.0  # activations fit on chip, weights stay there
    assert resident.seconds == pytest.approx(2 * 1024 * 1024 / 1e12)


def test_half_precision_halves_memory_time():
    call = linear_call(1, 512, 512)
    fp32 = operator_terms(call, device(peak_flops=1e15), weights_on_chip=False).memory_s
    fp16 = operator_terms(call, device(peak_flops=1e15, precisions=("fp16",)), weights_on_chip=False).memory_s
    assert fp16 == pytest.approx(fp32 / 2)


def test_misaligned_channels_cost_a_whole_lane_group():
    lanes = device(parallelism=32, memory_bandwidth=1e15)
    aligned = operator_terms(linear_call(10, 64, 256), lanes, True).compute_s
    misaligned = operator_terms(linear_call(10, 64, 250), lanes, True).compute_s
    assert misaligned == pytest.approx(aligned)  # 250 outputs take 8 groups of 32, as 256 do
    assert compute_ops(linear_call(10, 64, 257), lanes.parallelism) == pytest.approx(2 * 10 * 64 * 257 * math.ceil(257 / 32) * 32 / 257)


def test_model_roofline_sums_operators_and_views_are_free():
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU()).eval()
    graph, _ = trace(model, (torch.randn(4, 16),))
    profile = device(memory_bandwidth=1e15)
    latencies = roofline_latencies(graph, profile)
    expected = {"linear": 2 * 4 * 16 * 32 / 1e9, "activation": 4 * 32 / 1e9}
    for call, seconds in zip(graph.calls, latencies):
        assert seconds == pytest.approx(expected.get(call.kind, 0.0))
