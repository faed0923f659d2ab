"""The learned estimator: per-operator regression, composition, and the cost report."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fairspeech.asr.flops import count_flops
from fairspeech.hardware import zoo
from fairspeech.hardware.estimator import Composition, LatencyModel, estimate, fit_composition, latency_model_for
from fairspeech.hardware.graph import trace
from fairspeech.hardware.measure import MEASUREMENTS_DIR, ReferenceProbe, call_from_json, measure_model, read_operator_table
from fairspeech.accelerator import load_profile
from fairspeech.hardware.roofline import roofline_latencies


@pytest.fixture(scope="module")
def host_table() -> pd.DataFrame:
    table = read_operator_table("cpu_host")
    if table is None:
        pytest.skip("no measurement table for cpu_host (run python -m fairspeech.hardware.calibrate)")
    return table


def test_prediction_on_training_shapes_is_close(host_table):
    dense = host_table[host_table["kind"].isin(["linear", "attention"]) & (host_table["median_s"] > 2e-5)]
    model = LatencyModel.fit(dense, load_profile("cpu_host"), iterations=60)
    sample = dense.sample(20, random_state=0)
    calls = [call_from_json(c) for c in sample["call"]]
    predicted = np.array([model.predict_operators([c], ctx)[0] for c, ctx in zip(calls, sample["context_bytes"])])
    ratio = predicted / sample["median_s"].to_numpy()
    assert np.median(np.abs(ratio - 1)) < 0.10
    assert np.all(np.abs(ratio - 1) < 0.5)


def test_bigger_operators_are_predicted_slower(host_table):
    model = LatencyModel.fit(host_table[host_table["kind"] == "linear"], load_profile("cpu_host"), iterations=60)
    small, large = (call_from_json(host_table[host_table["kind"] == "linear"].sort_values("flops")["call"].iloc[i]) for i in (0, -1))
    assert model.predict_operators([large], 1e6)[0] > 10 * model.predict_operators([small], 1e6)[0]


@pytest.mark.parametrize("per_operator", [1e-6, -3e-6])
def test_composition_recovers_known_overheads(per_operator):
    rng = np.random.default_rng(0)
    ops_sum = rng.uniform(1e-2, 5e-2, 30)
    modules, n_ops = rng.integers(20, 400, 30), rng.integers(50, 2000, 30)
    measured = 1.05 * ops_sum + 4e-6 * modules + per_operator * n_ops
    fitted = fit_composition(pd.DataFrame({"median_s": measured, "ops_sum_s": ops_sum, "module_calls": modules, "n_ops": n_ops}))
    assert (fitted.scale, fitted.per_module_s, fitted.per_operator_s) == pytest.approx((1.05, 4e-6, per_operator), rel=1e-6)
    assert Composition(2.0, 1.0, 0.5)(3.0, 4, 6) == 2.0 * 3.0 + 4 + 3.0


def test_roofline_report_for_a_profile_without_measurements():
    profile = load_profile("single_thread_650mflops")
    assert latency_model_for(profile.name) is None
    spec = zoo.BUILTIN["conv_small"]
    model, inputs = zoo.build(spec), zoo.example_input(1.0)
    report = estimate(model, inputs, profile, audio_seconds=1.0)
    graph, _ = trace(model, inputs)
    assert report.method == "roofline"
    assert report.latency_s == pytest.approx(sum(roofline_latencies(graph, profile)))
    assert report.flops == count_flops(lambda: model(*inputs))
    tensors = [*model.parameters(), *model.buffers()]
    assert report.params_bytes == sum(t.numel() * t.element_size() for t in tensors)
    assert report.output_frames == 50 and report.flops_per_frame == report.flops / 50
    assert report.real_time_factor == pytest.approx(report.latency_s)
    # a 650 MFLOP/s core is compute bound on this model: latency at least FLOPs over the peak rate
    assert report.latency_s >= report.flops / profile.peak_flops


def test_half_precision_profile_halves_memory():
    spec = zoo.BUILTIN["conv_small"]
    model, inputs = zoo.build(spec), zoo.example_input(1.0)
    fp32 = estimate(model, inputs, load_profile("single_thread_650mflops"))
    fp16 = estimate(model, inputs, load_profile("neural_engine_like"))
    assert fp16.peak_activation_bytes == pytest.approx(fp32.peak_activation_bytes / 2, rel=0.01)
    assert fp16.params_bytes < 0.51 * fp32.params_bytes


@pytest.mark.slow
def test_measured_profile_estimate_is_near_a_fresh_measurement():
    """The whole path on this CPU's table (refits it: several seconds). A factor-of-1.5 band catches
    unit and composition mistakes while allowing for a machine whose load differs from calibration."""
    profile = load_profile("cpu_host")
    if latency_model_for(profile.name) is None:
        pytest.skip("no measurement table for cpu_host")
    spec = zoo.BUILTIN["asr_small"]
    model, inputs = zoo.build(spec), zoo.example_input(spec.seconds)
    report = estimate(model, inputs, profile)
    assert report.method == "measured regression"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        probe = ReferenceProbe()
        ratio = measure_model(model, inputs, probe, repeats=15).ratio_median
    finally:
        torch.set_num_threads(threads)
    reference_s = json.loads((MEASUREMENTS_DIR / "cpu_host_meta.json").read_text())["reference"]["median_s"]
    assert 1 / 1.5 < report.latency_s / (ratio * reference_s) < 1.5
