"""Cost across profiles as a table, joined with per-cohort WER."""

import pandas as pd
import pytest

from fairspeech.hardware import zoo
from fairspeech.hardware.costs import COST_COLUMNS, cost_table, join_wer_and_cost


def test_cost_table_has_one_row_per_profile_and_a_shared_decomposition():
    spec = zoo.BUILTIN["conv_small"]
    model = zoo.build(spec).train()  # the mode is restored afterwards
    table = cost_table(model, zoo.example_input(1.0), ["single_thread_650mflops", "mcu_100mflops"], audio_seconds=1.0)
    assert model.training
    assert list(table.columns) == COST_COLUMNS and list(table["profile"]) == ["single_thread_650mflops", "mcu_100mflops"]
    assert table["flops"].nunique() == 1 and table["output_frames"].nunique() == 1
    slow, fast = table.set_index("profile").loc["mcu_100mflops"], table.set_index("profile").loc["single_thread_650mflops"]
    assert slow["latency_s"] > 5 * fast["latency_s"]  # 100 vs 650 MFLOP/s on a compute-bound model
    assert table["real_time_factor"].tolist() == pytest.approx(table["latency_s"].tolist())


def test_join_repeats_each_cohort_row_per_profile():
    wer = pd.DataFrame({"model": ["a", "a", "b"], "cohort": ["x", "y", "x"], "wer": [0.1, 0.2, 0.15]})
    costs = pd.DataFrame({"model": ["a", "a", "b"], "profile": ["p", "q", "p"], "latency_s": [1.0, 2.0, 3.0]})
    joined = join_wer_and_cost(wer, costs)
    assert len(joined) == 2 * 2 + 1
    assert set(joined.loc[joined["model"] == "b", "latency_s"]) == {3.0}
    with pytest.raises(KeyError, match="model"):
        join_wer_and_cost(wer.drop(columns="model"), costs)
