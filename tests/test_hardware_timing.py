"""Clocks of the measurement harness: the host's thread clock, and CUDA events where a GPU is present."""

import pytest
import torch
from torch.nn import functional as F

from fairspeech.hardware.measure import ReferenceProbe, measure_model, measure_operators, operator_rows
from fairspeech.hardware.timing import THREAD_CLOCK, CudaEventClock, clock_for, measure


def test_thread_clock_counts_work_not_sleep():
    import time

    busy, _ = THREAD_CLOCK.interval(lambda: sum(range(200_000)))
    asleep, wall = THREAD_CLOCK.interval(lambda: time.sleep(0.05))
    assert busy > 0 and asleep < busy + 0.01 and wall >= 0.05
    assert 0 < THREAD_CLOCK.overhead_s() < 1e-4


def test_clock_for_names_the_device():
    assert clock_for("cpu") is THREAD_CLOCK
    with pytest.raises(ValueError, match="meta"):
        clock_for("meta")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            clock_for("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_clock_times_operators_models_and_the_probe_on_the_device():
    clock = clock_for("cuda")
    assert isinstance(clock, CudaEventClock)
    a = torch.randn(2048, 2048, device="cuda")
    small = measure(lambda: a[:256, :256] @ a[:256, :256], repeats=5, clock=clock).median
    large = measure(lambda: a @ a, repeats=5, clock=clock).median
    assert 0 < small < large
    probe = ReferenceProbe(clock)
    x, w = torch.randn(1, 50, 64, device="cuda"), torch.randn(128, 64, device="cuda")
    timings = measure_operators(lambda: F.relu(F.linear(x, w)), {w.untyped_storage().data_ptr()}, rounds=3, probe=probe, clock=clock)
    rows = operator_rows(timings, "test", 0)
    assert {r["kind"] for r in rows} >= {"linear", "activation"} and all(r["raw_median_s"] > 0 for r in rows)
    model = torch.nn.Linear(64, 64).cuda()
    assert measure_model(model, (x,), probe, repeats=3, clock=clock).median > 0
