"""The RTC drift estimator (bench/measure/drift.py) against synthetic clocks whose drift is known."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from bench.measure.drift import (
    PPM,
    DriftResult,
    Edge,
    Sample,
    edge_between,
    estimate_drift,
    find_edges,
    fit_drift,
    hard_bounds,
    judge,
    lsq_bound_half_width,
    two_point_drift,
)
from bench.measure.rtc_polling import next_edge_window, simulate_polling
from bench.measure.student_t import t_quantile, t_sf

MS = 1e-3


def fast_link(rng: random.Random) -> tuple[float, float]:
    """RTT 1-3 ms, the two legs independent."""
    return rng.uniform(0.5 * MS, 1.5 * MS), rng.uniform(0.5 * MS, 1.5 * MS)


def exact_edges(ppm: float, n: int, d0: float = 1_000_000.25, every: int = 1) -> list[Edge]:
    """Rollovers of a clock reading d0 at host 0 and running at 1 + ppm, timed perfectly."""
    rate = 1 + ppm * PPM
    first = math.ceil(d0)
    return [Edge((k - d0) / rate, float(k), 0.0, 0.0) for k in range(first, first + n * every, every)]


# -- Student's t ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "p,dof,expected",
    [
        (0.975, 1, 12.706),
        (0.975, 2, 4.303),
        (0.975, 5, 2.571),
        (0.975, 10, 2.228),
        (0.975, 30, 2.042),
        (0.975, 120, 1.980),
        (0.975, 10_000, 1.960),
        (0.975, 10**7, 1.960),
        (0.95, 20, 1.725),
        (0.995, 5, 4.032),
        (0.9995, 1, 636.619),
        (0.6, 3, 0.277),
    ],
)
def test_t_quantile_matches_the_tables(p, dof, expected):
    assert t_quantile(p, dof) == pytest.approx(expected, abs=1e-3)


def test_t_quantile_is_symmetric_and_inverts_the_tail():
    assert t_quantile(0.5, 7) == 0.0
    assert t_quantile(0.025, 10) == pytest.approx(-t_quantile(0.975, 10), rel=1e-12)
    for dof in (1, 2.5, 9, 40, 500, 50_000):
        for p in (0.6, 0.9, 0.975, 0.999):
            assert t_sf(t_quantile(p, dof), dof) == pytest.approx(1 - p, rel=1e-9)
    # the large-dof expansion joins the exact inverse without a step
    assert t_quantile(0.975, 99_999) == pytest.approx(t_quantile(0.975, 100_001), abs=1e-9)


@pytest.mark.parametrize("p,dof", [(0.0, 5), (1.0, 5), (0.9, 0), (0.9, -1)])
def test_t_quantile_rejects_nonsense(p, dof):
    with pytest.raises(ValueError):
        t_quantile(p, dof)


# -- the fit ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ppm", [0.0, 12.3, -37.5, 500.0])
def test_exact_recovery_with_zero_jitter(ppm):
    result = fit_drift(exact_edges(ppm, 120))
    assert result.ppm == pytest.approx(ppm, abs=1e-6)
    assert result.half_width_ppm < 1e-6
    assert result.residual_sd_s < 1e-9
    assert result.n == 120 and result.method == "lsq-edges"
    assert result.span_s == pytest.approx(119 / (1 + ppm * PPM))


def test_known_slope_intercept_and_residuals():
    """Residuals orthogonal to the line come back exactly, and the interval follows the formula."""
    b, a, delta, n = 1 - 20 * PPM, 5.0, 0.7 * MS, 40  # host s per device s: the device runs ~20 ppm fast
    pattern = [delta, -delta, -delta, delta]  # sums to 0 against 1 and k in every block of four
    points = [(a + b * k + pattern[k % 4], 1000.0 + k) for k in range(n)]
    result = fit_drift(points)
    assert result.ppm == pytest.approx((1 / b - 1) / PPM, abs=1e-7)
    assert [r for _, r in result.residuals] == pytest.approx([pattern[k % 4] for k in range(n)], abs=1e-12)
    assert [h for h, _ in result.residuals] == [h for h, _ in points]
    s = math.sqrt(n * delta**2 / (n - 2))
    assert result.residual_sd_s == pytest.approx(s, rel=1e-9)
    sxx = n * (n * n - 1) / 12
    step = t_quantile(0.975, n - 2) * s / math.sqrt(sxx)
    assert result.ci_low_ppm == pytest.approx((1 / (b + step) - 1) / PPM, rel=1e-9)
    assert result.ci_high_ppm == pytest.approx((1 / (b - step) - 1) / PPM, rel=1e-9)
    assert result.method == "lsq-samples"


def test_a_trend_in_the_residuals_shows_up():
    """A quadratic (temperature) term leaves a bowl in the residuals, not scatter."""
    points = [(k + 2e-8 * (k - 300) ** 2, float(k)) for k in range(601)]
    resid = [r for _, r in fit_drift(points).residuals]
    assert resid[0] > 0 and resid[300] < 0 and resid[-1] > 0


def test_fit_needs_three_distinct_points():
    with pytest.raises(ValueError, match="at least 3"):
        fit_drift(exact_edges(0, 2))
    with pytest.raises(ValueError, match="same device reading"):
        fit_drift([(0.0, 5.0), (1.0, 5.0), (2.0, 5.0)])


def test_sub_second_readout_is_fitted_directly():
    rng = random.Random(7)
    samples = simulate_polling(-23.0, 600, fast_link, rng, resolution_s=1 / 1024)
    assert not all(s.device_s.is_integer() for s in samples)
    result = estimate_drift(samples)
    assert result.method == "lsq-samples" and result.n == len(samples)
    assert result.ci_low_ppm <= -23.0 <= result.ci_high_ppm
    assert result.half_width_ppm < 2.0


# -- edges --------------------------------------------------------------------------------------


def test_edge_is_the_midpoint_of_the_bracket():
    samples = [
        Sample(10.000, 41.0, 0.002),
        Sample(10.002, 41.0, 0.002),
        Sample(10.0045, 42.0, 0.003),
        Sample(10.007, 42.0, 0.002),
    ]
    (edge,) = find_edges(samples)
    assert edge.device_s == 42.0
    assert edge.host_s == pytest.approx(10.00325)
    assert edge.bracket_s == pytest.approx(0.0025)
    assert edge.half_width_s == pytest.approx(0.0025 / 2 + 0.003 / 2)  # bracket and the slower RTT
    assert find_edges(list(reversed(samples))) == [edge]  # order of arrival does not matter


def test_sparse_and_jumping_brackets_are_rejected():
    sparse = [Sample(0.0, 9.0, 0.002), Sample(0.3, 10.0, 0.002)]
    assert find_edges(sparse) == []
    assert len(find_edges(sparse, max_bracket_s=0.5)) == 1
    assert edge_between(Sample(0.0, 9.0, 0.002), Sample(0.004, 11.0, 0.002)) is None  # two seconds
    assert edge_between(Sample(0.0, 9.0, 0.002), Sample(0.004, 8.0, 0.002)) is None  # backwards
    assert edge_between(Sample(0.0, 9.0, 0.002), Sample(0.004, 9.0, 0.002)) is None  # no rollover


def test_polled_edges_hold_the_true_rollover_within_their_bound():
    rng = random.Random(11)
    d0, ppm = 1_000_000.6180, 41.0
    edges = find_edges(simulate_polling(ppm, 120, fast_link, rng, start_device_s=d0))
    assert len(edges) >= 118
    for e in edges:
        true = (e.device_s - d0) / (1 + ppm * PPM)
        assert abs(e.host_s - true) <= e.half_width_s
        assert e.half_width_s < 5 * MS


# -- the polling schedule -----------------------------------------------------------------------


def test_next_edge_window_needs_an_edge_then_shrinks_as_the_span_grows():
    assert next_edge_window([], 10.0, 0.002) is None
    rng = random.Random(3)
    d0, ppm = 1_000_000.5, 250.0
    edges = [Edge(e.host_s + rng.uniform(-MS, MS), e.device_s, 2 * MS, 2 * MS) for e in exact_edges(ppm, 400, d0)]
    widths = []
    for n in (1, 3, 30, 400):
        k = edges[n - 1].device_s + 1
        window = next_edge_window(edges[:n], k, 0.002)
        true = (k - d0) / (1 + ppm * PPM)
        assert window.start_s + 2 * 0.002 <= true <= window.end_s  # two RTTs of dither room
        widths.append(window.end_s - window.start_s)
    assert widths == sorted(widths, reverse=True)
    assert widths[0] > 2 * 1000 * PPM  # a single edge: only the +-1000 ppm prior
    assert widths[-1] < 2 * 2 * MS + 3 * 0.002 + 0.1 * MS


def test_a_drift_beyond_the_prior_is_still_followed():
    result = estimate_drift(simulate_polling(3000.0, 60, fast_link, random.Random(5), max_ppm=1000.0))
    assert result.n >= 58  # no rollover lost to a window placed by the too-narrow prior
    assert abs(result.ppm - 3000.0) < 2 * result.half_width_ppm  # a 95 % interval may miss: 2x is ~4 sigma


def test_every_tenth_second():
    rng = random.Random(8)
    samples = simulate_polling(-8.0, 600, fast_link, rng, every=10)
    edges = find_edges(samples)
    assert 55 <= len(edges) <= 61
    assert {round(b.device_s - a.device_s) for a, b in zip(edges, edges[1:])} == {10}
    assert len(samples) < 12 * len(edges)  # dense only around the edges
    result = fit_drift(edges)
    assert result.ci_low_ppm <= -8.0 <= result.ci_high_ppm


def test_a_stopped_clock_ends_with_the_duration_and_no_edges():
    samples = simulate_polling(-1e6, 5, fast_link, random.Random(1))  # rate 0: the oscillator stopped
    assert find_edges(samples) == []
    assert samples[-1].host_s < 5.01


def test_a_round_trip_takes_time():
    with pytest.raises(ValueError, match="round trip"):
        simulate_polling(0, 1, lambda rng: (0.0, 0.0), random.Random(1))


# -- two-point and the bound ----------------------------------------------------------------------


def test_lsq_bound_reproduces_the_reference_table():
    """docs/drift.md "What the length of a measurement buys": sigma 1 ms, +-1 ppm takes 358 s at N=1
    and 770 s at N=10; 4.6 ms, 991 s."""
    assert lsq_bound_half_width(1 * MS, 358, 1.0) == pytest.approx(1.0, rel=0.01)
    assert lsq_bound_half_width(1 * MS, 78, 10.0) == pytest.approx(1.0, rel=0.03)
    assert lsq_bound_half_width(4.6 * MS, 991, 1.0) == pytest.approx(1.0, rel=0.01)
    assert lsq_bound_half_width(1 * MS, 1, 1.0) == math.inf


def test_two_point_versus_least_squares():
    rng = random.Random(2)
    sigma, n = 1 * MS, 600
    noisy = [Edge(e.host_s + rng.gauss(0, sigma), e.device_s, 3 * MS, 2 * MS) for e in exact_edges(12.3, n)]
    lsq = fit_drift(noisy)
    two = two_point_drift(noisy, sigma_s=sigma)
    assert two.method == "two-point" and two.n == 2
    assert two.half_width_ppm == pytest.approx(1.959964 * math.sqrt(2) * sigma / two.span_s / PPM, rel=1e-5)
    # the theoretical ratio: sqrt(2) * N * sqrt(n(n^2-1)) / (sqrt(12) * T), about sqrt(n/6)
    assert two.half_width_ppm / lsq.half_width_ppm == pytest.approx(math.sqrt(n / 6), rel=0.15)
    assert lsq.half_width_ppm == pytest.approx(lsq_bound_half_width(sigma, n, 1.0), rel=0.15)
    hard = two_point_drift(noisy)  # from the edges' own bounds
    assert hard.half_width_ppm == pytest.approx(6 * MS / hard.span_s / PPM)
    with pytest.raises(ValueError):
        two_point_drift([(0.0, 1.0), (10.0, 11.0)])


# -- the verdict ---------------------------------------------------------------------------------


def result(
    ppm: float,
    half: float,
    n: int = 300,
    span: float = 299.0,
    sd: float = 1 * MS,
    method="lsq-edges",
    bounds: tuple[float, float] | None = None,
):
    """A fit whose hard bounds are its interval unless given."""
    low, high = bounds if bounds is not None else (ppm - half, ppm + half)
    return DriftResult(ppm, ppm - half, ppm + half, half, n, span, sd, (), method, 0.95, low, high)


@pytest.mark.parametrize(
    "ppm,half,outcome",
    [
        (5.0, 1.0, "PASS"),
        (-5.0, 1.0, "PASS"),
        (19.0, 1.0, "PASS"),  # touching the limit is inside
        (25.0, 2.0, "FAIL"),
        (-25.0, 2.0, "FAIL"),
        (19.5, 1.0, "INCONCLUSIVE"),  # straddles +20
        (21.0, 2.0, "INCONCLUSIVE"),  # estimate outside, interval not wholly
        (-20.5, 1.0, "INCONCLUSIVE"),
        (0.0, 30.0, "INCONCLUSIVE"),  # wider than both limits
    ],
)
def test_judge_by_the_whole_interval(ppm, half, outcome):
    verdict = judge(result(ppm, half), 20.0)
    assert verdict.outcome == outcome
    assert (verdict.needed_span_s is not None) == (outcome == "INCONCLUSIVE")


def test_inconclusive_says_how_much_longer_from_the_bound():
    straddling = result(19.0, 1.6, n=200, span=199.0, sd=1 * MS)
    verdict = judge(straddling, 20.0)
    assert verdict.outcome == "INCONCLUSIVE"
    assert "measure longer" in verdict.reason and "inconclusive" in verdict.reason
    needed = verdict.needed_span_s
    assert needed > straddling.span_s
    n = round(needed) + 1
    assert lsq_bound_half_width(1 * MS, n, 1.0) <= 1.0 < lsq_bound_half_width(1 * MS, n - 1, 1.0)


def test_inconclusive_on_the_limit_and_for_two_point():
    on_limit = judge(result(20.0, 0.5), 20.0)
    assert on_limit.outcome == "INCONCLUSIVE" and on_limit.needed_span_s is None
    assert "no length of measurement" in on_limit.reason
    two = judge(result(18.0, 4.0, n=2, span=1000.0, method="two-point"), 20.0)
    assert two.needed_span_s == pytest.approx(2000.0)  # half-width goes as 1/T


# -- the interval is honest ------------------------------------------------------------------------


def test_interval_coverage_with_the_real_polling_logic():
    """300 seeded runs of 60 s: the 95 % interval holds the truth 90-99 % of the time."""
    rng = random.Random(20240505)
    true_ppm = 12.3
    results = [estimate_drift(simulate_polling(true_ppm, 60, fast_link, rng)) for _ in range(300)]
    coverage = sum(r.ci_low_ppm <= true_ppm <= r.ci_high_ppm for r in results) / len(results)
    assert 0.90 <= coverage <= 0.99, coverage
    assert statistics.fmean(r.ppm for r in results) == pytest.approx(true_ppm, abs=1.0)


def test_interval_coverage_with_uniform_edge_errors():
    """Non-Gaussian (bracket-like) errors, few points: the t interval still holds about 95 %."""
    rng = random.Random(99)
    hits = 0
    for _ in range(300):
        edges = [Edge(e.host_s + rng.uniform(-2 * MS, 2 * MS), e.device_s, 0, 0) for e in exact_edges(-7.0, 12)]
        r = fit_drift(edges)
        hits += r.ci_low_ppm <= -7.0 <= r.ci_high_ppm
    assert 0.90 <= hits / 300 <= 0.99


# -- a FAIL is confirmed by the readouts' hard bounds ---------------------------------------------


def unloading_host_edges(true_ppm: float, seconds: int, late_at_start_s: float, half_width_s: float) -> list[Edge]:
    """Rollovers timed by a host whose load falls as it polls: its first replies come late, its
    last on time, so each edge's midpoint is late by a share of late_at_start_s that shrinks with
    time, within an honest hard bound of half_width_s. The errors are a trend, not scatter: small
    residuals, and a clock that looks fast."""
    exact = exact_edges(true_ppm, seconds)
    last = exact[-1].host_s
    return [Edge(e.host_s + late_at_start_s * (1 - e.host_s / last), e.device_s, half_width_s, 0.01) for e in exact]


def test_a_host_whose_load_falls_makes_a_fast_clock_that_is_not_failed():
    """The self-test session's good-device failure (2026-12-07): +1361 ppm, interval [+1019,
    +1704], from a 250 ppm clock polled for 4 s on a loaded host. The interval is wholly outside
    +-685 ppm; the hard bounds still allow 250 ppm, so the verdict is to measure on."""
    edges = unloading_host_edges(250.0, 5, late_at_start_s=0.004, half_width_s=0.02)
    fit = fit_drift(edges)
    assert fit.ci_low_ppm > 685.0  # the statistics alone would fail a good clock
    assert fit.bound_low_ppm <= 250.0 <= fit.bound_high_ppm
    verdict = judge(fit, 685.0)
    assert verdict.outcome == "INCONCLUSIVE", verdict.reason
    assert "hard timing bounds" in verdict.reason and "still allow a drift within it" in verdict.reason
    assert verdict.needed_span_s is not None and verdict.needed_span_s > fit.span_s


def test_a_fail_the_bounds_confirm_is_a_fail():
    edges = [Edge(e.host_s, e.device_s, 0.002, 0.004) for e in exact_edges(2250.0, 30)]
    verdict = judge(fit_drift(edges), 685.0)
    assert verdict.outcome == "FAIL" and "confirm it" in verdict.reason, verdict.reason


def test_hard_bounds_hold_the_truth_on_polled_clocks():
    """Seeded polling runs at several drifts and links: the true drift is always within the bounds."""
    rng = random.Random(7)

    def loaded_link(r: random.Random) -> tuple[float, float]:
        return r.uniform(0.2 * MS, 15 * MS), r.uniform(0.2 * MS, 15 * MS)

    for true_ppm in (-3000.0, -250.0, 0.0, 250.0, 2250.0):
        for link in (fast_link, loaded_link):
            for _ in range(20):
                points = find_edges(simulate_polling(true_ppm, 8, link, rng, max_ppm=20000.0))
                if len(points) < 2:
                    continue
                low, high = hard_bounds(points)
                assert low <= true_ppm <= high, (true_ppm, low, high)


def test_hard_bounds_narrow_as_the_span_grows():
    short = hard_bounds([Edge(e.host_s, e.device_s, 0.005, 0.01) for e in exact_edges(250.0, 5)])
    long = hard_bounds([Edge(e.host_s, e.device_s, 0.005, 0.01) for e in exact_edges(250.0, 50)])
    assert short[0] < long[0] <= 250.0 <= long[1] < short[1]
    assert long[1] - long[0] < (short[1] - short[0]) / 5


def test_hard_bounds_of_a_sub_second_readout_allow_for_its_step():
    """Readings to 0.1 s: the bounds widen by the step, and still hold a clock they bracket."""
    rate = 1 + 500 * PPM
    samples = [Sample(t, math.floor((1000.0 + t * rate) * 10) / 10, 0.001) for t in (0.0, 1.05, 2.1, 3.15, 4.2)]
    low, high = hard_bounds(samples)
    assert low <= 500.0 <= high
    assert high - low > 10 * 2 * 0.001 / 4.2 / PPM  # the step, not the round trip, sets the width


def test_contradicting_bounds_prove_nothing():
    """Tight bounds no straight clock fits (a jump): no bound at all, so no FAIL from them."""
    edges = [Edge(0.0, 10.0, 0.001, 0.001), Edge(1.0, 11.0, 0.001, 0.001), Edge(2.5, 12.0, 0.001, 0.001)]
    assert hard_bounds(edges) == (-math.inf, math.inf)
    assert hard_bounds([(0.0, 1.0), (1.0, 2.0)]) == (-math.inf, math.inf)  # plain pairs carry none


def test_an_unconfirmed_fail_says_how_long_the_bounds_need():
    """The bound on the limit's side sets the span: at 4 s a +2250 ppm estimate with its lower
    bound at -1000 ppm needs 4 x 3250 / 1565 s; an open bound (timing looser than the span) asks
    for twice the span; bounds that contradict each other cannot be waited out."""
    fit = result(2250.0, 100.0, n=5, span=4.0, bounds=(-1000.0, 5000.0))
    verdict = judge(fit, 685.0)
    assert verdict.outcome == "INCONCLUSIVE"
    assert verdict.needed_span_s == pytest.approx(4.0 * 3250.0 / 1565.0)
    open_side = judge(result(2250.0, 100.0, n=5, span=4.0, bounds=(-math.inf, 5000.0)), 685.0)
    assert open_side.needed_span_s == pytest.approx(8.0)
    slow = judge(result(-2250.0, 100.0, n=5, span=4.0, bounds=(-5000.0, 1000.0)), 685.0)
    assert slow.needed_span_s == pytest.approx(4.0 * 3250.0 / 1565.0)
    contradict = judge(result(2250.0, 100.0, n=5, span=4.0, bounds=(-math.inf, math.inf)), 685.0)
    assert contradict.outcome == "INCONCLUSIVE" and contradict.needed_span_s is None
    assert "no straight clock fits them all" in contradict.reason
