"""The neural-diff experiment over seeds: per-update gaps, their mean and t-interval, and refusals."""

import pytest
from scipy import stats

from fairspeech.updates.seeds import across_seeds, markdown_table, mean_interval


def _run(seed, sparse_gaps, lr=1.5e-3, base_wer=0.78, single_gap=None):
    chain = []
    single = [] if single_gap is None else [{"update": 1, "method": "sparse", "density": 0.01, "wer_relative_to_full": single_gap}]
    for k, gap in enumerate(sparse_gaps, start=1):
        chain.append({"update": k, "method": "full", "wer": 0.8})
        chain.append({"update": k, "method": "sparse", "wer": 0.8 * (1 + gap), "wer_relative_to_full": gap})
    return {"seed": seed, "chain": chain, "single_update": single, "eval": {"base_wer": base_wer},
            "settings": {"experiment": {"out_dir": f"runs/s{seed}", "results": f"r{seed}.json", "updates": len(sparse_gaps)},
                         "train": {"lr": lr}}}


def test_gaps_over_seeds():
    runs = [_run(0, [0.02, 0.0]), _run(1, [0.0, -0.01]), _run(2, [0.01, 0.005])]
    summary = across_seeds(runs, tolerance=0.01)
    first = summary["methods"]["sparse"]["update1"]
    assert first["per_seed"] == [0.02, 0.0, 0.01] and first["mean"] == pytest.approx(0.01)
    half = stats.t.ppf(0.975, 2) * 0.01 / 3 ** 0.5  # sd of (0.02, 0, 0.01) is 0.01
    assert first["interval"] == pytest.approx([0.01 - half, 0.01 + half])
    assert first["seeds_within"] == 2 and first["mean_within"]
    assert summary["methods"]["sparse"]["update2"]["seeds_within"] == 3 and list(summary["methods"]) == ["sparse"]
    assert mean_interval([0.3]) == (0.3, 0.3, 0.3)


def test_runs_that_differ_beyond_the_seed_are_refused():
    with pytest.raises(ValueError, match="own seed"):
        across_seeds([_run(0, [0.0]), _run(0, [0.0])])
    with pytest.raises(ValueError, match="settings differ"):
        across_seeds([_run(0, [0.0]), _run(1, [0.0], lr=5e-4)])
    with pytest.raises(ValueError, match="deployed model differs"):
        across_seeds([_run(0, [0.0]), _run(1, [0.0], base_wer=0.7)])


def test_the_single_update_is_summarized_beside_the_chain():
    summary = across_seeds([_run(0, [0.02], single_gap=-0.05), _run(1, [0.0], single_gap=-0.03)])
    assert summary["methods"]["sparse@0.01"]["single"]["mean"] == pytest.approx(-0.04)
    assert summary["methods"]["sparse"]["update1"]["per_seed"] == [0.02, 0.0]
    table = markdown_table(summary)
    assert "| sparse@0.01 | -4.0% [" in table and "(2/2) |" in table
    assert "| sparse | +1.0% [" in table and "(1/2) |" in table  # seed 0's +2% is outside the 1% tolerance
