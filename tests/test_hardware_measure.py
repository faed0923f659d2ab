"""The measurement harness: in-context operator timing, sample statistics, the table's call encoding."""

import math

import pytest
import torch
from torch.nn import functional as F

from fairspeech.hardware.measure import call_from_json, call_to_json, measure_operators, operator_rows, to_reference_seconds


class FixedProbe:
    """A stand-in reference workload that always takes 2 ms."""

    def __call__(self):
        return 2e-3
from fairspeech.hardware.sweep import build_operator, random_spec, sample_operator_specs
from fairspeech.hardware.timing import Samples, measure


def test_samples_median_iqr_and_reference_ratios():
    samples = Samples(cpu=[1.0, 2.0, 3.0, 4.0, 100.0])
    assert samples.median == 3.0
    assert samples.iqr == pytest.approx(4.0 - 2.0)
    assert math.isnan(Samples().median)
    with pytest.raises(ValueError, match="reference"):
        samples.ratio_median
    # a machine twice as slow for the last three samples: the ratio to the paired reference does not move
    paired = Samples(cpu=[1.0, 1.0, 2.0, 2.0, 2.0], reference=[0.5, 0.5, 1.0, 1.0, 1.0])
    assert paired.median == 2.0 and paired.ratio_median == 2.0 and paired.ratio_iqr == 0.0


def test_measure_counts_calls_and_repeats():
    calls = []
    samples = measure(lambda: calls.append(1), repeats=4, calls=3, warmup=2)
    assert len(calls) == 2 + 4 * 3
    assert len(samples.cpu) == len(samples.wall) == 4 and all(s >= 0 for s in samples.cpu)


def test_every_operator_of_a_pass_is_timed_in_every_round():
    x, w = torch.randn(1, 50, 64), torch.randn(128, 64)
    timings = measure_operators(lambda: F.relu(F.linear(x, w)).transpose(1, 2), {w.untyped_storage().data_ptr()}, rounds=5, probe=FixedProbe())
    rows = to_reference_seconds(operator_rows(timings, "test", context_bytes=123), reference_s=1e-3)
    assert {r["kind"] for r in rows} == {"linear", "activation", "view"}
    linear = next(r for r in rows if r["kind"] == "linear")
    assert linear["samples"] == 5 and linear["occurrences"] == 1 and linear["raw_median_s"] > 0
    # in reference units: raw seconds over the probe's 2 ms, converted back with a 1 ms reference
    assert linear["ratio_median"] == pytest.approx(linear["raw_median_s"] / 2e-3)
    assert linear["median_s"] == pytest.approx(linear["raw_median_s"] / 2)
    assert linear["flops"] == 2 * 50 * 64 * 128 and linear["context_bytes"] == 123


def test_in_place_operators_are_recorded_once_per_call():
    def run():
        y = torch.zeros(10)
        y.add_(1.0)
        return y

    timings = measure_operators(run, set(), rounds=3, probe=FixedProbe())
    rows = operator_rows(timings, "test", 0)
    assert any(r["op"] == "aten.add_.Tensor" and r["samples"] == 3 for r in rows)


def test_call_json_round_trip_keeps_signature_and_features():
    x, w, b = torch.randn(1, 20, 16), torch.randn(8, 16, 3), torch.randn(8)
    timings = measure_operators(lambda: F.conv1d(x.transpose(1, 2), w, b, stride=2), {w.untyped_storage().data_ptr()}, rounds=1, probe=FixedProbe())
    call = next(c for c in timings.examples.values() if c.kind == "conv1d")
    again = call_from_json(call_to_json(call))
    assert again.signature == call.signature and again.features == call.features and again.flops == call.flops
    assert again.features["stride"] == 2.0


def test_sweep_specs_are_seeded_and_build():
    assert sample_operator_specs(3, {"linear": 4}) == sample_operator_specs(3, {"linear": 4})
    generator = torch.Generator().manual_seed(0)
    import numpy as np

    rng = np.random.default_rng(0)
    for kind in ("linear", "conv1d", "depthwise_conv1d", "attention", "layer_norm", "activation", "batch_norm", "copy", "factory"):
        fn, _, touched = build_operator(random_spec(rng, kind), generator)
        fn()
        assert touched >= 0
