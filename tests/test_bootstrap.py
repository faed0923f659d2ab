import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fairspeech.metrics import bootstrap as bs
from fairspeech.metrics.cohort_frame import CohortFrame


def simulate_speakers(rng, n_speakers, mean_rate=0.15, words=(3, 20), utts=(2, 12)):
    """Speakers with their own error rates (Beta), several utterances each: correlated within speaker."""
    rates = rng.beta(2.0, 2.0 * (1 - mean_rate) / mean_rate, n_speakers)
    rows = []
    for s, rate in enumerate(rates):
        for _ in range(rng.integers(*utts)):
            w = int(rng.integers(*words))
            rows.append((f"s{s}", int(rng.binomial(w, rate)), w))
    return pd.DataFrame(rows, columns=["speaker_id", "errors", "ref_words"])


def test_speaker_bootstrap_interval_covers_true_wer_at_nominal_rate():
    rng = np.random.default_rng(0)
    # True population WER: E[errors]/E[words] = E[rate] because words are independent of rate.
    true_wer = 0.15
    covered = 0
    trials = 300
    for trial in range(trials):
        frame = simulate_speakers(rng, n_speakers=60)
        cf = CohortFrame(frame, None, n_boot=500, n_permutations=0, seed=trial)
        covered += cf.overall["wer_low"] <= true_wer <= cf.overall["wer_high"]
    coverage = covered / trials
    # Percentile bootstrap with 60 clusters slightly under-covers; nominal 0.95.
    assert 0.88 <= coverage <= 0.99, coverage


def test_utterance_bootstrap_would_under_cover_so_the_unit_matters():
    """Sanity check on the simulation: resampling utterances ignores the speaker correlation."""
    rng = np.random.default_rng(1)
    covered = 0
    trials = 200
    for trial in range(trials):
        frame = simulate_speakers(rng, n_speakers=60)
        e, w = bs.bootstrap_sums(frame["errors"].to_numpy(), frame["ref_words"].to_numpy(), 400, bs.stream(trial))
        low, high = bs.percentile_interval(e / w)
        covered += low <= 0.15 <= high
    assert covered / trials < 0.85


def test_permutation_pvalues_are_calibrated_under_the_null():
    rng = np.random.default_rng(2)
    pvalues = []
    for trial in range(150):
        frame = simulate_speakers(rng, n_speakers=40, utts=(1, 4))
        sums = frame.groupby("speaker_id")[["errors", "ref_words"]].sum()
        strata = rng.integers(0, 2, len(sums))
        p = bs.permutation_pvalues(sums["errors"].to_numpy(), sums["ref_words"].to_numpy(), strata, 2, 199, trial)
        pvalues.append(p[0])
    rejection = np.mean(np.array(pvalues) < 0.05)
    assert rejection < 0.1


def test_permutation_detects_a_real_difference():
    rng = np.random.default_rng(3)
    errors = np.concatenate([rng.binomial(100, 0.10, 30), rng.binomial(100, 0.25, 30)]).astype(float)
    words = np.full(60, 100.0)
    strata = np.repeat([0, 1], 30)
    p = bs.permutation_pvalues(errors, words, strata, 2, 999, seed=0)
    assert p.max() == pytest.approx(1 / 1000)


def test_benjamini_hochberg_matches_hand_computation():
    p = np.array([0.01, 0.04, 0.03, 0.20, np.nan])
    # sorted 0.01, 0.03, 0.04, 0.20 -> scaled 0.04, 0.06, 0.0533, 0.20 -> monotone 0.04, 0.0533, 0.0533, 0.20
    expected = np.array([0.04, 0.16 / 3, 0.16 / 3, 0.20, np.nan])
    np.testing.assert_allclose(bs.benjamini_hochberg(p), expected, equal_nan=True)


def test_streams_do_not_depend_on_other_labels():
    a = bs.stream(7, "female").integers(0, 10**9, 5)
    b = bs.stream(7, "female").integers(0, 10**9, 5)
    c = bs.stream(7, "male").integers(0, 10**9, 5)
    assert (a == b).all() and not (a == c).all()


def test_cohort_frame_views_suppression_and_gap():
    rng = np.random.default_rng(4)
    frame = simulate_speakers(rng, n_speakers=80)
    speakers = frame["speaker_id"].unique()
    gender = dict(zip(speakers, rng.choice(["f", "m"], len(speakers))))
    frame["gender"] = frame["speaker_id"].map(gender)
    frame["age"] = frame["speaker_id"].map(dict(zip(speakers, ["young"] * 40 + ["old"] * 37 + ["rare"] * 3)))
    cf = CohortFrame(frame, ["gender", "age"], n_boot=300, n_permutations=99, min_speakers=5, seed=0)
    assert cf.suppressed["cohorts"] >= 1 and cf.suppressed["speakers"] <= 3
    assert "rare" not in cf.by_group.index.get_level_values("age")
    table = cf.by_group
    assert (table["wer_low"] <= table["wer"]).all() and (table["wer"] <= table["wer_high"]).all()
    assert cf.difference() == pytest.approx(table["wer"].max() - table["wer"].min())
    assert cf.ratio() == pytest.approx(table["wer"].min() / table["wer"].max())
    assert cf.gap["difference_low"] <= cf.gap["difference"] <= cf.gap["difference_high"]
    # Cohort WER is a ratio of sums, checked against the raw data.
    sub = frame[(frame.gender == "f") & (frame.age == "young")]
    assert table.loc[("f", "young"), "wer"] == pytest.approx(sub.errors.sum() / sub.ref_words.sum())
    # Same seed, same numbers.
    again = CohortFrame(frame, ["gender", "age"], n_boot=300, n_permutations=99, min_speakers=5, seed=0)
    pd.testing.assert_frame_equal(cf.by_group, again.by_group)


def test_max_statistic_pvalue_matches_exact_enumeration():
    """On 8 speakers in cohorts of 3, 3 and 2 every one of the 560 labelings can be listed: the Monte
    Carlo p-values (per cohort and max statistic) must agree with the exact ones within their error."""
    import itertools

    errors = np.array([0.0, 10.0, 0.0, 5.0, 4.0, 12.0, 8.0, 12.0])
    words = np.array([20.0, 25.0, 18.0, 30.0, 22.0, 35.0, 15.0, 28.0])
    strata = np.array([0, 0, 0, 1, 1, 1, 2, 2])

    def statistics(labels):
        e_in = np.bincount(labels, weights=errors, minlength=3)
        w_in = np.bincount(labels, weights=words, minlength=3)
        return np.abs(e_in / w_in - (errors.sum() - e_in) / (words.sum() - w_in))

    labelings = sorted(set(itertools.permutations(strata)))
    assert len(labelings) == 560
    every = np.array([statistics(np.array(lab)) for lab in labelings])
    observed = statistics(strata)
    exact_per_cohort = (every >= observed - 1e-12).mean(axis=0)
    sd = every.std(axis=0)
    def max_p(scale):
        return ((every / scale).max(axis=1) >= (observed / scale).max() - 1e-12).mean()

    exact_max = max_p(sd)
    # The statistic takes few values, so an example was picked whose exact p does not move when the
    # standardizing SDs (estimated from the sampled labelings in the Monte Carlo test) move by 5%.
    assert all(max_p(sd * np.array(f)) == exact_max for f in itertools.product([0.95, 1.05], repeat=3))

    n = 20_000
    tests = bs.permutation_tests(errors, words, strata, 3, n, seed=5)
    for mc, exact in [(tests.max_pvalue, exact_max), *zip(tests.pvalues, exact_per_cohort)]:
        assert abs(mc - exact) < 4 * np.sqrt(exact * (1 - exact) / n) + 1 / n, (mc, exact)
    # The standardized max is not the per-cohort minimum p: the test really is a joint one.
    assert exact_max > exact_per_cohort.min()


def test_jackknife_t_interval_matches_hand_computation():
    errors, words = np.array([1.0, 2.0, 6.0]), np.array([10.0, 10.0, 20.0])
    se, se_log = bs.jackknife_se(errors, words, np.zeros(3, np.int64), 1)
    left_out = np.array([8 / 30, 7 / 30, 3 / 20])  # WER without speaker 1, 2, 3
    logs = np.log(left_out)
    assert se[0] == pytest.approx(np.sqrt(2 / 3 * ((left_out - left_out.mean()) ** 2).sum()))
    assert se_log[0] == pytest.approx(np.sqrt(2 / 3 * ((logs - logs.mean()) ** 2).sum()))
    # Effective speakers (100 + 100 + 400)^2 / (10^4 + 10^4 + 16 * 10^4) = 2, times (3 - 1) / 3.
    df = bs.effective_df(words, np.zeros(3, np.int64), 1)
    assert df[0] == pytest.approx(4 / 3)
    t2 = stats.t.ppf(0.975, 4 / 3)
    low, high = bs.t_interval(np.array([9 / 40]), se, se_log, df)
    assert (low[0], high[0]) == pytest.approx((9 / 40 * np.exp(-t2 * se_log[0]), 9 / 40 * np.exp(t2 * se_log[0])))
    # Only one speaker has errors: without it the WER is 0, the log scale is undefined, so the WER-scale
    # interval, floored at 0.
    errors = np.array([0.0, 0.0, 3.0])
    se, se_log = bs.jackknife_se(errors, words, np.zeros(3, np.int64), 1)
    left_out = np.array([3 / 30, 3 / 30, 0.0])
    assert se[0] == pytest.approx(np.sqrt(2 / 3 * ((left_out - left_out.mean()) ** 2).sum()))
    low, high = bs.t_interval(np.array([3 / 40]), se, se_log, df)
    assert low[0] == 0.0 and high[0] == pytest.approx(3 / 40 + t2 * se[0])
    # One speaker: no spread to estimate.
    one = np.zeros(1, np.int64)
    low, high = bs.t_interval(np.array([0.1]), *bs.jackknife_se(np.array([1.0]), np.array([10.0]), one, 1), bs.effective_df(np.array([10.0]), one, 1))
    assert np.isnan(low[0]) and np.isnan(high[0])


def test_five_speaker_cohorts_keep_coverage_where_the_percentile_bootstrap_does_not():
    rng = np.random.default_rng(6)
    cohorts, size, true_wer = 2000, 5, 0.15
    rate = rng.beta(2.0, 2.0 * (1 - true_wer) / true_wer, cohorts * size)
    words = rng.integers(10, 200, cohorts * size).astype(float)
    errors = rng.binomial(words.astype(int), rate).astype(float)
    strata = np.repeat(np.arange(cohorts), size)
    wer = np.bincount(strata, weights=errors) / np.bincount(strata, weights=words)
    low, high = bs.t_interval(wer, *bs.jackknife_se(errors, words, strata, cohorts), bs.effective_df(words, strata, cohorts))
    coverage = np.mean((low <= true_wer) & (true_wer <= high))
    rep_e, rep_w = bs.stratified_bootstrap(errors, words, strata, list(range(cohorts)), 300, seed=0)
    p_low, p_high = bs.percentile_interval(bs.ratio(rep_e, rep_w))
    percentile = np.mean((p_low <= true_wer) & (true_wer <= p_high))
    assert coverage >= 0.93 and percentile < 0.87, (coverage, percentile)


def test_simultaneous_critical_value_reduces_to_known_quantiles():
    rng = bs.stream(0, "test")
    # One pair with (nearly) known variances: |N(0, 1)|, whose 97.5% point is 1.96.
    assert bs.simultaneous_critical(np.array([0.01, 0.02]), np.array([10**6, 10**6]), 0.05, 40_000, rng) == pytest.approx(1.96, abs=0.04)
    # Few speakers: heavier tails than the normal; more cohorts: a larger max.
    small = bs.simultaneous_critical(np.array([0.01, 0.01]), np.array([4, 4]), 0.05, 40_000, rng)
    many = bs.simultaneous_critical(np.full(8, 0.01), np.full(8, 10**6), 0.05, 40_000, rng)
    assert 2.2 < small < 2.5 and many > 2.8
    assert np.isnan(bs.simultaneous_critical(np.array([0.01]), np.array([4]), 0.05, 100, rng))


def test_on_null_data_the_adjusted_gap_and_max_test_hold_their_level_and_the_naive_gap_does_not():
    rng = np.random.default_rng(7)
    naive, adjusted, max_test = [], [], []
    for trial in range(60):
        frame = simulate_speakers(rng, n_speakers=48, utts=(1, 6))
        frame["cohort"] = frame["speaker_id"].map(lambda s: f"c{int(s[1:]) % 8}")  # 8 cohorts of 6, no true difference
        cf = CohortFrame(frame, "cohort", n_boot=400, n_permutations=199, seed=trial)
        naive.append(cf.gap["naive_difference_low"] > 0)
        adjusted.append(cf.gap["difference_low"] > 0)
        max_test.append(cf.global_test["p_value"] < 0.05)
    assert np.mean(naive) > 0.3 and np.mean(adjusted) <= 0.1 and np.mean(max_test) <= 0.12, (np.mean(naive), np.mean(adjusted), np.mean(max_test))
    assert "not a test" in cf.gap["naive"] and cf.gap["difference_low"] <= cf.gap["difference"] <= cf.gap["difference_high"]


def test_difference_to_overall_jackknife_matches_a_brute_force_loop():
    """Every unit left out in turn, WER(cohort) - WER(overall) (and its log ratio) recomputed from scratch;
    the variance is the sum over cohorts of (n_k - 1) / n_k times the squared deviations inside cohort k."""
    errors = np.array([1.0, 2.0, 6.0, 3.0, 5.0, 1.0, 4.0])
    words = np.array([10.0, 10.0, 20.0, 15.0, 25.0, 12.0, 30.0])
    strata = np.array([0, 0, 0, 1, 1, 2, 2])
    k = 3

    def statistic(keep, log):
        e, w, s = errors[keep], words[keep], strata[keep]
        wer = np.bincount(s, weights=e, minlength=k) / np.bincount(s, weights=w, minlength=k)
        return np.log(wer / (e.sum() / w.sum())) if log else wer - e.sum() / w.sum()

    sizes = np.bincount(strata).astype(float)
    df_strata = bs.effective_df(words, strata, k)
    for log in (False, True):
        left_out = np.array([statistic(np.arange(len(errors)) != i, log) for i in range(len(errors))])  # (units, cohorts)
        parts = np.array([
            (sizes[g] - 1) / sizes[g] * ((left_out[strata == g] - left_out[strata == g].mean(axis=0)) ** 2).sum(axis=0) for g in range(k)
        ])  # (stratum of the unit left out, cohort)
        variance = parts.sum(axis=0)
        df = variance**2 / (parts**2 / df_strata[:, None]).sum(axis=0)
        se, got_df = bs.jackknife_difference_to_overall(errors, words, strata, k, log=log)
        np.testing.assert_allclose(se, np.sqrt(variance), rtol=1e-10)
        np.testing.assert_allclose(got_df, df, rtol=1e-10)
        if log:
            se_log, df_log = se, df
    # The intervals: log ratio +- t * se, mapped to the ratio and to WER(overall) (ratio - 1).
    overall = errors.sum() / words.sum()
    wer = np.bincount(strata, weights=errors) / np.bincount(strata, weights=words)
    t = stats.t.ppf(0.975, df_log)
    intervals = bs.to_overall_intervals(errors, words, strata, k)
    ratio_low, ratio_high = wer / overall * np.exp(-t * se_log), wer / overall * np.exp(t * se_log)
    np.testing.assert_allclose(intervals.ratio_low, ratio_low, rtol=1e-10)
    np.testing.assert_allclose(intervals.ratio_high, ratio_high, rtol=1e-10)
    np.testing.assert_allclose(intervals.diff_low, overall * (ratio_low - 1), rtol=1e-10)
    np.testing.assert_allclose(intervals.diff_high, overall * (ratio_high - 1), rtol=1e-10)


def test_difference_to_overall_falls_back_to_the_wer_scale_without_errors_to_log():
    errors = np.array([0.0, 0.0, 0.0, 3.0, 5.0, 2.0])
    words = np.array([10.0, 10.0, 20.0, 15.0, 25.0, 12.0])
    strata = np.array([0, 0, 0, 1, 1, 1])
    se, df = bs.jackknife_difference_to_overall(errors, words, strata, 2)
    intervals = bs.to_overall_intervals(errors, words, strata, 2)
    overall = errors.sum() / words.sum()
    t = stats.t.ppf(0.975, df[0])
    # Cohort 0 has no errors: its log ratio is undefined, so -overall +- t * se, the ratio floored at 0.
    assert intervals.diff_low[0] == pytest.approx(-overall - t * se[0])
    assert intervals.diff_high[0] == pytest.approx(-overall + t * se[0])
    assert intervals.ratio_low[0] == pytest.approx(max(0.0, 1 + intervals.diff_low[0] / overall))
    # One-unit cohort: nothing to estimate.
    one = bs.to_overall_intervals(np.array([1.0, 2.0, 3.0]), np.array([10.0, 10.0, 10.0]), np.array([0, 0, 1]), 2)
    assert np.isnan(one.diff_low[1]) and np.isnan(one.ratio_high[1]) and np.isfinite(one.diff_low[0])


def test_on_null_data_the_difference_to_overall_interval_holds_its_level_and_the_percentile_one_does_not():
    """Cohorts of 5-50 speakers from one population: every interval excluding 0 is a false positive."""
    rng = np.random.default_rng(8)
    sizes = np.array([5, 6, 8, 10, 20, 50])
    strata = np.repeat(np.arange(len(sizes)), sizes)
    jackknife, percentile = [], []
    for trial in range(400):
        rate = rng.beta(2.0, 2.0 * 0.85 / 0.15, len(strata))
        words = rng.integers(10, 200, len(strata)).astype(float)
        errors = rng.binomial(words.astype(int), rate).astype(float)
        intervals = bs.to_overall_intervals(errors, words, strata, len(sizes))
        jackknife.extend((intervals.diff_low > 0) | (intervals.diff_high < 0))
        rep_e, rep_w = bs.stratified_bootstrap(errors, words, strata, list(range(len(sizes))), 200, seed=trial)
        low, high = bs.percentile_interval(bs.ratio(rep_e, rep_w) - bs.ratio(rep_e.sum(axis=1), rep_w.sum(axis=1))[:, None])
        percentile.extend((low > 0) | (high < 0))
    # 2,400 cohorts: a Monte Carlo SE of ~0.45 points at 5%.
    assert np.mean(jackknife) <= 0.06 and np.mean(percentile) >= 0.09, (np.mean(jackknife), np.mean(percentile))
