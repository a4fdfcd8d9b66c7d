"""The 40 MHz trigger model: hand-computed rates, brute-force curves, streaming counts, timing and bad inputs."""

import json

import numpy as np
import pytest
from scipy.stats import binom

from l1forge.emulation.lhc import AlgorithmBudget, clocks_per_crossing, zero_bias_rate_khz
from l1forge.emulation.trigger import (
    ONE_SIGMA_CL,
    StreamingRateCounter,
    check_timing,
    clopper_pearson,
    plot_rate_curve,
    rate_curve,
    rate_khz,
    rate_reduction,
    signal_efficiency,
    threshold_for_rate,
    trigger_summary,
)

ZB = 2760 * 11.2456  # kHz


def _brute_force(scores, thresholds, weights):
    w = np.ones_like(scores) if weights is None else weights
    fire = scores[None, :] > np.asarray(thresholds)[:, None]
    return (fire * w).sum(axis=1) / w.sum() * ZB, np.sqrt((fire * w * w).sum(axis=1)) / w.sum() * ZB


# ---- constants and timing -------------------------------------------------------------------------------------------
def test_lhc_constants():
    assert zero_bias_rate_khz(2760) == pytest.approx(31_037.856)
    assert zero_bias_rate_khz(2544) == pytest.approx(2544 * 11.2456)
    assert [clocks_per_crossing(c) for c in (40, 240, 360, 6 * 40.079, 9 * 40.079)] == [1, 6, 9, 6, 9]
    assert AlgorithmBudget("x").ii_max == 6 and AlgorithmBudget("x", clock_mhz=360).ii_max == 9


def test_timing_boundaries():
    assert check_timing(900, 6, 240, 1000)["ii_ok"]
    assert not check_timing(900, 7, 240, 1000)["ii_ok"]
    assert check_timing(900, 9, 360, 1000)["ii_ok"] and not check_timing(900, 10, 360, 1000)["ii_ok"]
    at_budget = check_timing(1000, 1, 240, 1000)
    assert at_budget["latency_ok"] and at_budget["latency_margin_ns"] == 0
    over = check_timing(1000.5, 1, 240, 1000)
    assert not over["latency_ok"] and over["latency_margin_ns"] == -0.5
    assert set(over) == {"clock_mhz", "budget_ns", "latency_ns", "latency_ok", "latency_margin_ns", "ii_cycles",
                         "ii_max", "ii_ok"}


# ---- hand-computed rates --------------------------------------------------------------------------------------------
def test_ten_crossings_by_hand():
    scores = np.arange(10.0)
    rate, err = rate_khz(scores, 6.5)
    assert rate == pytest.approx(0.3 * 2760 * 11.2456)
    assert rate_khz(scores, 7.0)[0] == pytest.approx(0.2 * ZB)  # strictly greater: a score equal to t does not fire
    # Clopper-Pearson bounds solve P(X >= 3 | p_low) = P(X <= 3 | p_high) = (1 - 0.6827) / 2.
    low, high = 0.3 - err[0] / ZB, 0.3 + err[1] / ZB
    assert binom.sf(2, 10, low) == pytest.approx((1 - ONE_SIGMA_CL) / 2, rel=1e-9)
    assert binom.cdf(3, 10, high) == pytest.approx((1 - ONE_SIGMA_CL) / 2, rel=1e-9)
    assert rate_khz(scores, 1.0, n_bunches=2544)[0] == pytest.approx(0.8 * 2544 * 11.2456)


def test_weighted_mixture_by_hand():
    # Two samples mixed: minimum bias (weight 3 per event) and a hard tail (weight 1): fraction = sum w fired / sum w.
    scores = np.array([0.1, 0.2, 0.9, 0.5, 0.95])
    weights = np.array([3.0, 3.0, 3.0, 1.0, 1.0])
    rate, err = rate_khz(scores, 0.4, weights)
    assert rate == pytest.approx((3 + 1 + 1) / 11 * ZB)
    np.testing.assert_allclose(err, [np.sqrt(9 + 1 + 1) / 11 * ZB] * 2)
    # Scaling all weights (e.g. cross-section units) changes nothing.
    assert rate_khz(scores, 0.4, weights * 1e-9)[0] == pytest.approx(rate)


def test_threshold_for_rate_discrete():
    scores = np.arange(10.0)
    assert threshold_for_rate(scores, 0.3 * ZB)[:2] == (6.0, pytest.approx(0.3 * ZB))
    assert threshold_for_rate(scores, 0.3 * ZB * (1 - 1e-9))[:2] == (7.0, pytest.approx(0.2 * ZB))
    assert threshold_for_rate(scores, 0.0)[:2] == (9.0, 0.0)
    ties = np.array([0.0, 1.0, 1.0, 1.0, 2.0])
    assert threshold_for_rate(ties, 0.2 * ZB)[0] == 1.0  # rate(1) = 1/5; rate(0) = 4/5
    assert threshold_for_rate(ties, 0.19 * ZB)[0] == 2.0


def test_threshold_for_rate_is_lowest_over_all_reals():
    rng = np.random.default_rng(1)
    scores, weights = rng.normal(size=2000).round(2), rng.exponential(size=2000)
    for w in (None, weights):
        t, rate, _ = threshold_for_rate(scores, 500.0, w)
        assert rate <= 500.0 and rate == rate_khz(scores, t, w)[0]
        assert rate_khz(scores, np.nextafter(t, -np.inf), w)[0] > 500.0


# ---- curves against brute force ------------------------------------------------------------------------------------
@pytest.mark.parametrize("weighted", [False, True])
def test_rate_curve_matches_brute_force(weighted):
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 50, size=3000).astype(float)  # many ties
    weights = rng.exponential(size=3000) if weighted else None
    thresholds, rate, err = rate_curve(scores, weights)
    np.testing.assert_array_equal(thresholds, np.unique(scores))
    expected, expected_err = _brute_force(scores, thresholds, weights)
    np.testing.assert_allclose(rate, expected, rtol=1e-12, atol=1e-9)
    if weighted:
        np.testing.assert_allclose(err, [expected_err, expected_err], rtol=1e-12, atol=1e-9)
    else:
        k = np.array([np.count_nonzero(scores > t) for t in thresholds])
        low, high = clopper_pearson(k, scores.size)
        np.testing.assert_allclose(err, [rate - low * ZB, high * ZB - rate], atol=1e-9)
    custom = np.array([-1.0, 10.0, 10.5, 49.0, 60.0, 3.0])  # unsorted, outside and on the scores
    _, rate, _ = rate_curve(scores, weights, thresholds=custom)
    np.testing.assert_allclose(rate, _brute_force(scores, custom, weights)[0], rtol=1e-12, atol=1e-9)


# ---- streaming ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("weighted", [False, True])
def test_streaming_equals_in_memory(weighted):
    rng = np.random.default_rng(3)
    scores = np.concatenate([rng.normal(size=20_000), rng.integers(-3, 4, size=2000)])  # some scores on the grid
    weights = rng.exponential(size=scores.size) if weighted else None
    grid = np.linspace(-3, 3, 61)
    counter = StreamingRateCounter(grid)
    for start in range(0, scores.size, 1700):
        counter.add(scores[start : start + 1700], None if weights is None else weights[start : start + 1700])
    counter.add(np.empty(0), None if weights is None else np.empty(0))
    expected = rate_curve(scores, weights, thresholds=grid)
    got = counter.curve()
    for a, b in zip(got, expected):
        if weighted:
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-9)
        else:
            np.testing.assert_array_equal(a, b)
    assert counter.rate_khz(0.5)[0] == pytest.approx(rate_khz(scores, 0.5, weights)[0], rel=1e-10)
    assert counter.rate_khz(0.52)[0] == counter.rate_khz(0.5)[0]  # off the grid: the grid threshold below
    # The grid answer is conservative: exact threshold in (previous grid threshold, grid threshold].
    t_grid, rate_grid, _ = counter.threshold_for_rate(2000.0)
    t_exact, _, _ = threshold_for_rate(scores, 2000.0, weights)
    assert rate_grid <= 2000.0 and t_grid - 0.1 < t_exact <= t_grid


# ---- efficiency -----------------------------------------------------------------------------------------------------
def test_signal_efficiency_interval():
    eff, err = signal_efficiency(np.r_[np.ones(30), np.zeros(70)], 0.5)
    assert eff == 0.3 and eff - err[0] < 0.3 < eff + err[1]
    assert 0.8 < (err[0] + err[1]) / (2 * np.sqrt(0.3 * 0.7 / 100)) < 1.2  # width of order the binomial sigma
    eff, err = signal_efficiency(np.zeros(100), 0.5)
    assert eff == 0 and err[0] == 0 and err[1] == pytest.approx(1 - ((1 - ONE_SIGMA_CL) / 2) ** (1 / 100))
    # Exact frequentist coverage, summed over every outcome k: Clopper-Pearson covers at least 68.27% for any p.
    k = np.arange(201)
    low, high = clopper_pearson(k, 200)
    for p in (0.01, 0.3, 0.5, 0.77):
        assert binom.pmf(k, 200, p)[(low <= p) & (p <= high)].sum() >= ONE_SIGMA_CL
    eff, err = signal_efficiency([0.1, 0.9, 0.8], 0.5, weights=[2.0, 1.0, 1.0])
    assert eff == 0.5 and err.tolist() == [pytest.approx(np.sqrt(2) / 4)] * 2


# ---- summary and plot -----------------------------------------------------------------------------------------------
def test_trigger_summary():
    rng = np.random.default_rng(5)
    bkg, sig = rng.normal(size=50_000), {"ttbar": rng.normal(3, 1, size=1000), "hh": rng.normal(2, 1, size=500)}
    summary = trigger_summary(bkg, sig, latency_ns=800, ii_cycles=6, clock_mhz=240, budget_ns=1000,
                              target_rate_khz=100.0)
    json.dumps(summary, allow_nan=False)
    assert set(summary) == {"clock_mhz", "budget_ns", "latency_ns", "latency_ok", "ii_cycles", "ii_ok", "n_bunches",
                            "target_rate_khz", "threshold", "rate_khz", "rate_reduction", "signal_efficiency",
                            "signal_efficiency_err", "rate_khz_err", "latency_margin_ns", "ii_max"}
    assert summary["latency_ok"] and summary["ii_ok"] and summary["ii_max"] == 6 and summary["n_bunches"] == 2760
    assert 0 < summary["rate_khz"] <= 100.0
    assert summary["rate_reduction"] == pytest.approx(40_079.0 / summary["rate_khz"])
    assert summary["signal_efficiency"]["ttbar"] == signal_efficiency(sig["ttbar"], summary["threshold"])[0]
    assert rate_reduction(summary["rate_khz"], n_bunches=2760) == pytest.approx(ZB / summary["rate_khz"])


def test_plot_rate_curve():
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    scores = np.random.default_rng(6).normal(size=1000)
    assert plot_rate_curve(ax, *rate_curve(scores), target_khz=100.0) is ax
    assert ax.get_yscale() == "log" and len(ax.lines) == 2


# ---- bad inputs -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: rate_khz([0.1, 0.2], 0.0, weights=[1.0, -1.0]), "weights"),
        (lambda: rate_khz([0.1, 0.2], 0.0, weights=[1.0]), "weights"),
        (lambda: rate_khz([0.1, 0.2], 0.0, weights=[0.0, 0.0]), "weights"),
        (lambda: rate_khz([0.1, np.nan], 0.0), "scores"),
        (lambda: rate_khz([], 0.0), "scores"),
        (lambda: rate_khz([0.1], 0.0, n_bunches=4000), "n_bunches"),
        (lambda: rate_curve([0.1], thresholds=[np.nan]), "thresholds"),
        (lambda: threshold_for_rate([0.1, 0.2], 31_038.0), "target_khz"),
        (lambda: threshold_for_rate([0.1, 0.2], -1.0), "target_khz"),
        (lambda: signal_efficiency([], 0.5), "signal_scores"),
        (lambda: signal_efficiency([np.nan], 0.5), "signal_scores"),
        (lambda: rate_reduction(0.0), "rate_khz"),
        (lambda: check_timing(-1, 6, 240, 1000), "latency_ns"),
        (lambda: check_timing(100, 0, 240, 1000), "ii_cycles"),
        (lambda: check_timing(100, 6, 30, 1000), "clock_mhz"),
        (lambda: StreamingRateCounter([0.0, 0.0]), "thresholds"),
        (lambda: StreamingRateCounter([0.0, 1.0]).add([np.nan]), "scores_chunk"),
        (lambda: StreamingRateCounter([0.0, 1.0]).add([0.5], [-1.0]), "weights_chunk"),
        (lambda: StreamingRateCounter([0.0, 1.0]).curve(), "no scores"),
        (lambda: StreamingRateCounter([0.0, 1.0]).rate_khz(-1.0), "threshold"),
        (lambda: trigger_summary([0.1, 0.2], {}, 100, 6, 240, 1000, 10.0), "signal_scores"),
    ],
)
def test_bad_inputs(call, name):
    with pytest.raises(ValueError, match=name) as info:
        call()
    assert "\n" not in str(info.value)


def test_streaming_rejects_mixed_weighting():
    counter = StreamingRateCounter([0.0, 1.0])
    counter.add([0.5])
    with pytest.raises(ValueError, match="weights_chunk"):
        counter.add([0.5], [1.0])
    with pytest.raises(ValueError, match="target_khz"):
        counter.threshold_for_rate(1e9)


def test_zero_bias_mixture_by_hand():
    """Two rare samples at pileup 200: each crossing fraction is pileup * sigma / sigma_inel, the rest never fires."""
    from l1forge.emulation.trigger import rate_khz, zero_bias_mixture

    scores, weights = zero_bias_mixture({"a": ([1.0, 3.0], 1e-6), "b": ([2.0, 4.0, 5.0, 6.0], 2e-6)}, 200, 80.0)
    pa, pb = 200 * 1e-6 / 80 / 2, 200 * 2e-6 / 80 / 4
    np.testing.assert_allclose(weights[:6], [pa, pa, pb, pb, pb, pb])
    assert scores[-1] < 1.0 and weights[-1] == pytest.approx(1 - 2 * pa - 4 * pb)
    rate, _ = rate_khz(scores, 2.5, weights, n_bunches=2760)  # fires: a=3, b=4, 5, 6
    assert rate == pytest.approx((pa + 3 * pb) * 2760 * 11.2456)
    with pytest.raises(ValueError, match="not rare"):
        zero_bias_mixture({"a": ([1.0], 1.0)}, 200, 80.0)
