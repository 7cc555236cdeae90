"""RTC drift from UART polling: rollover edges, a least-squares fit, an honest interval, a verdict.

Why pure functions: this is the maths most likely to be quietly wrong, so it is kept away from
I/O and tested against synthetic clocks whose drift is known. The method and its numbers are in
docs/drift.md (and their background and sources in docs/drift.md "Background"):

- each query is timestamped at the midpoint of send and receive on the host's monotonic clock;
- with a 1 s readout, the rollover k-1 -> k lies between the last reply reading k-1 and the
  first reading k, so the poller queries back to back only in a window around the predicted
  rollover, and the edge is the midpoint of that bracket;
- the drift is the least-squares slope of device seconds against host seconds, minus one, with a
  Student-t interval from the residuals;
- the verdict passes only an interval wholly inside the limit, and fails only an interval wholly
  outside it that the readouts' hard timing bounds confirm: the interval assumes independent
  timing errors, which a host whose load changes during the measurement breaks (its replies come
  later and later, which looks like a fast clock with small residuals), while the bounds hold
  however the host was scheduled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bench.measure.student_t import t_quantile, z_quantile

PPM = 1e-6
DEFAULT_MAX_BRACKET_S = 0.05  # a rollover bracketed more loosely than this was not polled densely


@dataclass(frozen=True, slots=True)
class Sample:
    """One RTC query.

    host_s is the midpoint of send and receive on time.monotonic_ns(), in seconds: the device
    read its clock somewhere in between, so the error is at most rtt_s/2, and a constant latency
    cancels out of the slope. device_s is the reading: whole seconds on a 1 s readout, with a
    fraction when the DUT offers sub-second readout.
    """

    host_s: float
    device_s: float
    rtt_s: float


@dataclass(frozen=True, slots=True)
class Edge:
    """The host time at which the device second rolled over to device_s (k).

    half_width_s is a hard bound on |true rollover - host_s|: the rollover happened after the
    k-1 reading and before the k reading, each read somewhere within its round trip.
    """

    host_s: float
    device_s: float
    half_width_s: float
    bracket_s: float


@dataclass(frozen=True)
class DriftResult:
    """A drift estimate with its confidence interval (ppm; positive = the device runs fast).

    residuals are (host_s, observed - fitted host time, in s): a trend in them, rather than
    scatter, means temperature or an RTC correction cycle, not noise.
    """

    ppm: float
    ci_low_ppm: float
    ci_high_ppm: float
    half_width_ppm: float
    n: int
    span_s: float
    residual_sd_s: float
    residuals: tuple[tuple[float, float], ...]
    method: str
    confidence: float = 0.95
    # The drift every line through all the readouts' hard timing bounds allows (`hard_bounds`):
    # what the readouts prove whatever the timing errors were; +-inf where they prove nothing.
    bound_low_ppm: float = -math.inf
    bound_high_ppm: float = math.inf


@dataclass(frozen=True)
class Verdict:
    """judge()'s outcome; needed_span_s is how long a straddling measurement should have been."""

    outcome: Literal["PASS", "FAIL", "INCONCLUSIVE"]
    reason: str
    limit_ppm: float
    needed_span_s: float | None = None


# -- edges and fits -----------------------------------------------------------------------------


def edge_between(a: Sample, b: Sample, max_bracket_s: float = DEFAULT_MAX_BRACKET_S) -> Edge | None:
    """The rollover between two consecutive 1 s readings, or None if they do not bracket one tightly.

    A bracket wider than max_bracket_s is skipped: its midpoint is no better than a guess within
    it, and sparse polling learns nothing (1 ppm is 1 us per second).
    """
    if b.device_s - a.device_s != 1.0 or not float(b.device_s).is_integer():
        return None
    bracket = b.host_s - a.host_s
    if not 0.0 < bracket <= max_bracket_s:
        return None
    half = bracket / 2.0 + max(a.rtt_s, b.rtt_s) / 2.0
    return Edge((a.host_s + b.host_s) / 2.0, float(b.device_s), half, bracket)


def find_edges(samples: Sequence[Sample], max_bracket_s: float = DEFAULT_MAX_BRACKET_S) -> list[Edge]:
    """Every rollover k-1 -> k bracketed within max_bracket_s, in host-time order (1 s readout)."""
    ordered = sorted(samples, key=lambda s: s.host_s)
    return [e for a, b in zip(ordered, ordered[1:]) if (e := edge_between(a, b, max_bracket_s)) is not None]


def _coords(p) -> tuple[float, float]:
    return (p[0], p[1]) if isinstance(p, tuple) else (p.host_s, p.device_s)


BOUND_POINTS = 200  # hard_bounds compares every pair: more points than this are thinned evenly


def readout_step(device_s: float) -> float:
    """The finest step a reading shows: 10^-k for its k decimals (as parsed, shortest repr)."""
    text = repr(float(device_s))
    if "e" in text or "." not in text:
        return 1.0
    decimals = len(text.split(".", 1)[1].rstrip("0"))
    return 10.0**-decimals if decimals else 1.0


def hard_bounds(points: Sequence) -> tuple[float, float]:
    """The drift range (ppm) of every straight clock consistent with all the points' hard bounds.

    An Edge's rollover lies within host_s +- half_width_s; a sub-second Sample was read within its
    round trip, and its reading is at most one readout step (the finest its readings show) short
    of the true time. Any two points i < j then bound the host seconds per device second between
    (h_j - w_j - h_i - w_i) / (d_j - d_i) and (h_j + w_j - h_i + w_i) / (d_j - d_i); the true
    rate lies within the tightest of these over all pairs, however the host was scheduled. Bounds
    that contradict each other (no straight clock fits them all: the clock jumped, or the
    readouts are not what they claim) prove nothing: (-inf, +inf). Plain (host, device) pairs
    carry no bounds: (-inf, +inf)."""
    if not points or isinstance(points[0], tuple):
        return -math.inf, math.inf
    if isinstance(points[0], Edge):
        spans = [(p.host_s, p.device_s, p.half_width_s, 0.0) for p in points]
    else:
        step = min(readout_step(p.device_s) for p in points)
        spans = [(p.host_s, p.device_s, p.rtt_s / 2.0, step) for p in points]
    spans.sort(key=lambda x: x[1])
    if len(spans) > BOUND_POINTS:  # a subset's bounds hold as well, only looser
        last = len(spans) - 1
        spans = [spans[round(i * last / (BOUND_POINTS - 1))] for i in range(BOUND_POINTS)]
    lo, hi = -math.inf, math.inf  # host seconds per device second
    for i, (h_i, di, wi, qi) in enumerate(spans):
        for hj, dj, wj, qj in spans[i + 1 :]:
            dd = dj - di
            if dd <= 0:
                continue
            # a reading short by up to q of the true time: the true device span is dd - qi .. dd + qj
            lo = max(lo, (hj - wj - h_i - wi) / (dd + qj))
            hi = min(hi, (hj + wj - h_i + wi) / max(dd - qi, 1e-12))
    if lo > hi or hi <= 0:
        return -math.inf, math.inf
    low_ppm = (1.0 / hi - 1.0) / PPM
    high_ppm = (1.0 / lo - 1.0) / PPM if lo > 0 else math.inf
    return low_ppm, high_ppm


def fit_drift(points: Sequence, confidence: float = 0.95, method: str | None = None) -> DriftResult:
    """Least-squares drift of device seconds against host seconds, with a Student-t interval.

    points are Edges (1 s readout), Samples (sub-second readout: fit them directly) or
    (host_s, device_s) pairs. The line is fitted as host time on device seconds and inverted:
    the device seconds of an edge are exact and the noise is in the host time, which is what
    ordinary least squares and its interval assume (the other way round differs by ~1e-4 ppm).
    The interval is slope +- t(n-2) * s / sqrt(Sxx), s from the residuals: honest as long as
    the residuals are scatter, not a trend.
    """
    pts = sorted((_coords(p) for p in points), key=lambda hd: hd[0])
    n = len(pts)
    if n < 3:
        raise ValueError(f"a drift fit needs at least 3 points, got {n}")
    h0, d0 = pts[0]
    xs = [d - d0 for _, d in pts]  # offsets keep the sums exact with epoch-sized readings
    ys = [h - h0 for h, _ in pts]
    mx, my = math.fsum(xs) / n, math.fsum(ys) / n
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    if sxx == 0.0:
        raise ValueError("all points have the same device reading: nothing to fit")
    b = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx  # host s per device s
    a = my - b * mx
    resid = [y - (a + b * x) for x, y in zip(xs, ys)]
    s = math.sqrt(math.fsum(r * r for r in resid) / (n - 2))
    step = t_quantile(0.5 + confidence / 2.0, n - 2) * s / math.sqrt(sxx)
    low = (1.0 / (b + step) - 1.0) / PPM
    high = (1.0 / (b - step) - 1.0) / PPM if b > step else math.inf
    kind = method or ("lsq-edges" if isinstance(points[0], Edge) else "lsq-samples")
    bound_low, bound_high = hard_bounds(points)
    return DriftResult(
        ppm=(1.0 / b - 1.0) / PPM,
        ci_low_ppm=low,
        ci_high_ppm=high,
        half_width_ppm=(high - low) / 2.0,
        n=n,
        span_s=pts[-1][0] - h0,
        residual_sd_s=s,
        residuals=tuple((h, r) for (h, _), r in zip(pts, resid)),
        method=kind,
        confidence=confidence,
        bound_low_ppm=bound_low,
        bound_high_ppm=bound_high,
    )


def estimate_drift(
    samples: Sequence[Sample], confidence: float = 0.95, max_bracket_s: float = DEFAULT_MAX_BRACKET_S
) -> DriftResult:
    """Fit the edges of a 1 s readout, or the samples themselves when readings carry a fraction."""
    if all(float(s.device_s).is_integer() for s in samples):
        return fit_drift(find_edges(samples, max_bracket_s), confidence)
    return fit_drift(samples, confidence)


def two_point_drift(points: Sequence, sigma_s: float | None = None, confidence: float = 0.95) -> DriftResult:
    """The naive method, for comparison: the slope through the first and last point only.

    With sigma_s (per-point timing sd) the half-width is z*sqrt(2)*sigma/T; without it, from
    Edges, the hard bound (hw_first + hw_last)/T. Either way it shrinks only as 1/T, where the
    least-squares one shrinks as T^-1.5.
    """
    pts = sorted(points, key=lambda p: _coords(p)[0])
    if len(pts) < 2:
        raise ValueError("two-point drift needs two points")
    (h1, d1), (h2, d2) = _coords(pts[0]), _coords(pts[-1])
    span = h2 - h1
    if span <= 0:
        raise ValueError("two-point drift needs two distinct host times")
    ppm = ((d2 - d1) / span - 1.0) / PPM
    if sigma_s is not None:
        half = z_quantile(confidence) * math.sqrt(2.0) * sigma_s / span / PPM
    elif isinstance(pts[0], Edge) and isinstance(pts[-1], Edge):
        half = (pts[0].half_width_s + pts[-1].half_width_s) / span / PPM
    else:
        raise ValueError("two-point drift needs sigma_s, or Edges to bound it")
    return DriftResult(
        ppm=ppm,
        ci_low_ppm=ppm - half,
        ci_high_ppm=ppm + half,
        half_width_ppm=half,
        n=2,
        span_s=span,
        residual_sd_s=sigma_s if sigma_s is not None else math.nan,
        residuals=(),
        method="two-point",
        confidence=confidence,
    )


def lsq_bound_half_width(sigma_s: float, n: int, spacing_s: float, confidence: float = 0.95) -> float:
    """Theoretical least-squares half-width (ppm) for n edges every spacing_s with sd sigma_s.

    z * sigma * sqrt(12) / (N * sqrt(n(n^2 - 1))) ~ z * sigma * sqrt(12 N) / T^1.5 (docs/drift.md
    "What the length of a measurement buys"): what the fit should reach when the edge errors are
    independent with that sd.
    """
    if n < 2:
        return math.inf
    return z_quantile(confidence) * sigma_s * math.sqrt(12.0) / (spacing_s * math.sqrt(n * (n * n - 1.0))) / PPM


def _edges_needed(sigma_s: float, spacing_s: float, half_ppm: float, confidence: float) -> int:
    """Fewest edges at spacing_s for which the least-squares bound is at most half_ppm."""
    target = (z_quantile(confidence) * sigma_s * math.sqrt(12.0) / (spacing_s * half_ppm * PPM)) ** 2  # n(n^2-1)
    n = max(3, math.floor(target ** (1.0 / 3.0)))
    while n * (n * n - 1.0) < target:
        n += 1
    return n


def judge(result: DriftResult, limit_ppm: float) -> Verdict:
    """PASS, FAIL or INCONCLUSIVE against |drift| <= limit_ppm, by the whole confidence interval.

    - PASS: the interval lies inside [-limit, +limit] (its ends may touch the limit).
    - FAIL: the interval lies wholly beyond one limit (above +limit or below -limit), and so do
      the readouts' hard bounds (`hard_bounds`); where they still allow a drift within the limit
      it is INCONCLUSIVE, with the span at which they would decide (`_unconfirmed`).
    - INCONCLUSIVE: the interval straddles a limit. The data cannot tell, and calling it either
      way would be a coin toss; measure longer. needed_span_s estimates how long, from the
      least-squares bound at the same edge spacing and residual sd, for the half-width to fall
      under the gap between the estimate and the limit (for two-point: from its 1/T law). It
      assumes the estimate and the scatter stay as they are; an estimate sitting on the limit
      cannot be settled by any length of measurement (needed_span_s None).
    A bench must not count INCONCLUSIVE as a pass.
    """
    lo, hi = result.ci_low_ppm, result.ci_high_ppm
    interval = f"{result.ppm:+.3f} ppm, {result.confidence:.0%} interval [{lo:+.3f}, {hi:+.3f}]"
    if -limit_ppm <= lo and hi <= limit_ppm:
        return Verdict("PASS", f"{interval} inside +-{limit_ppm:g} ppm", limit_ppm)
    if lo > limit_ppm or hi < -limit_ppm:
        b_lo, b_hi = result.bound_low_ppm, result.bound_high_ppm
        if b_lo > limit_ppm or b_hi < -limit_ppm:
            proof = f"the readouts' hard timing bounds [{b_lo:+.0f}, {b_hi:+.0f}] ppm confirm it"
            return Verdict("FAIL", f"{interval} wholly outside +-{limit_ppm:g} ppm; {proof}", limit_ppm)
        return _unconfirmed(result, limit_ppm, interval)
    gap = abs(abs(result.ppm) - limit_ppm)
    needed: float | None = None
    if gap > 0 and result.half_width_ppm > 0 and result.span_s > 0:
        if result.method == "two-point" or result.n < 3:
            needed = result.span_s * result.half_width_ppm / gap
        else:
            spacing = result.span_s / (result.n - 1)
            n = _edges_needed(result.residual_sd_s, spacing, gap, result.confidence)
            needed = max((n - 1) * spacing, result.span_s)
    if needed is None:
        how = "the estimate sits on the limit: no length of measurement will settle it"
    else:
        more = max(needed - result.span_s, 0.0)
        how = f"measure longer: about {needed:.0f} s in all ({more:.0f} s more) at this spacing"
    reason = f"inconclusive: {interval} straddles +-{limit_ppm:g} ppm; {how}"
    return Verdict("INCONCLUSIVE", reason, limit_ppm, needed)


def _unconfirmed(result: DriftResult, limit_ppm: float, interval: str) -> Verdict:
    """An interval wholly outside the limit whose hard bounds still allow a drift within it: a
    timing error the interval did not see (a host slowing down as it polled) could make a good
    clock look like that, so it is measured on, not failed. The bounds narrow as 1/span: needed_s
    is the span at which the bound on the limit's side would pass the limit, the estimate staying
    put (twice the span where that bound is still open: the readouts' timing is looser than their
    span); None where the bounds contradict each other (no straight clock fits them)."""
    b_lo, b_hi = result.bound_low_ppm, result.bound_high_ppm
    gap = abs(result.ppm) - limit_ppm
    reach = result.ppm - b_lo if result.ppm > 0 else b_hi - result.ppm  # the bound's distance, limit side
    needed: float | None = None
    if math.isinf(b_lo) and math.isinf(b_hi):
        bounds = "none (no straight clock fits them all)"
    else:
        bounds = f"[{b_lo:+.0f}, {b_hi:+.0f}] ppm"
        if gap > 0 and result.span_s > 0:
            needed = result.span_s * reach / gap if math.isfinite(reach) else 2.0 * result.span_s
    how = (
        f"measure longer: about {needed:.0f} s in all for the bounds to decide"
        if needed is not None
        else "no length of measurement will confirm it"
    )
    reason = (
        f"inconclusive: {interval} lies outside +-{limit_ppm:g} ppm, but the readouts' hard timing bounds "
        f"{bounds} still allow a drift within it (the host's timing, not the clock, may have moved); {how}"
    )
    return Verdict("INCONCLUSIVE", reason, limit_ppm, needed)
