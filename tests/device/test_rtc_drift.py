"""RTC drift (docs/tokens.md "Clock and credit": the RTC must drift less than about 6 h in 12
months, 685 ppm): the credit is an expiry in RTC seconds, so a fast clock eats credit and a
slow one gives it away. Measured over the UART against the host's monotonic clock, with the
method and verdict of docs/drift.md: least squares over the second rollovers, a Student-t
interval, and only an interval wholly inside the limit passes.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from bench.fixtures.dut import skip_not_covered
from bench.measure.drift import (
    DriftResult,
    Edge,
    Sample,
    Verdict,
    estimate_drift,
    find_edges,
    judge,
    readout_step,
)
from bench.measure.host_clock import HostClock, host_clock_state
from bench.measure.rtc_readout import CreditCountdown, host_now, measure_drift
from bench.report.plots import drift_residual_plot

# The polling's prior on the drift: an RTC clocked from an uncalibrated RC oscillator is off by
# up to 2 %; a wider prior costs only a wider window for the second rollover.
MAX_PPM_PRIOR = 20000.0
# needed_span_s is a planning figure (it assumes the estimate and scatter stay as they are):
# measure a little beyond it, and never in steps shorter than a couple of rollovers.
EXTEND_FACTOR = 1.2
MIN_EXTENSION_S = 2.0
STEERED_PPM = 0.01  # a change in the host's frequency correction worth a note in the log


def fitted_points(samples: Sequence[Sample]) -> list[Edge] | list[Sample]:
    """What estimate_drift fits: the rollover edges of a 1 s readout, else the samples themselves."""
    if all(float(s.device_s).is_integer() for s in samples):
        return find_edges(samples)
    return sorted(samples, key=lambda s: s.host_s)


def fit(samples: Sequence[Sample], limit_ppm: float) -> tuple[DriftResult | None, Verdict | None]:
    """The fit and its verdict, or (None, None) when there are too few points to fit."""
    try:
        result = estimate_drift(samples)
    except ValueError:
        return None, None
    return result, judge(result, limit_ppm)


def host_clock_note(log, when: str, state: HostClock | None) -> None:
    log.note(f"rtc drift: {when}: " + (state.describe() if state else "host clock state not available on this OS"))


def record_host_clock(log, measure, before: HostClock | None, after: HostClock | None) -> None:
    """The host clock as measurements, and a note where it weakens the result (docs/drift.md)."""
    if before is None:
        return
    measure("host_clock_freq_ppm", before.freq_ppm, "ppm")
    measure("host_clock_synchronised", int(before.synchronised and (after is None or after.synchronised)))
    if not before.synchronised:
        log.note(
            "rtc drift: the host clock is not synchronised: the drift is relative to an "
            "undisciplined oscillator, which may be tens of ppm off"
        )
    if after is not None:
        change = after.freq_ppm - before.freq_ppm
        measure("host_clock_freq_change", change, "ppm")
        if abs(change) >= STEERED_PPM:
            log.note(
                f"rtc drift: the host clock's frequency correction changed by {change:+.3f} ppm during "
                "the measurement: it was being steered (look for a trend in the residuals)"
            )


class Watched:
    """The reader, counting its readouts, and the last fit: what the progress line shows."""

    def __init__(self, reader) -> None:
        self.reader, self.readouts = reader, 0
        self.result: DriftResult | None = None
        self.started = host_now()

    def rtc_read(self) -> float:
        self.readouts += 1
        return self.reader.rtc_read()

    def line(self, observe_s: float, budget_s: float) -> str:
        elapsed = host_now() - self.started
        text = f"{elapsed:.0f} s of {observe_s:g} s (up to {budget_s:g} s), {self.readouts} readouts"
        r = self.result
        return text if r is None else f"{text}; last fit {r.ppm:+.1f} ppm [{r.ci_low_ppm:+.1f}, {r.ci_high_ppm:+.1f}]"


def poll_until_settled(
    dut, log, limit: float, observe_s: float, budget_s: float, rng: random.Random, subsecond: bool
) -> tuple[list[Sample], DriftResult | None, Verdict | None, float]:
    """Poll for observe_s and judge; while inconclusive, poll on (budget_s in all) and judge again.

    Returns the samples, the last fit and verdict (None, None if too few points) and the time polled.
    """
    started = host_now()
    samples = measure_drift(dut, observe_s, rng, subsecond, max_ppm=MAX_PPM_PRIOR)
    result, verdict = fit(samples, limit)
    while True:
        if isinstance(dut, Watched):
            dut.result = result
        if result is None and runs_wrong(samples):
            break  # the clock itself is wrong (it stands still, say): more polling cannot change that
        if result is None:  # too few rollovers bracketed yet (a loaded host, a slow link)
            more, why = MIN_EXTENSION_S, f"only {len(fitted_points(samples))} point(s) to fit"
        elif verdict is not None and verdict.outcome == "INCONCLUSIVE" and verdict.needed_span_s is not None:
            more = max(verdict.needed_span_s - result.span_s, 0.0) * EXTEND_FACTOR + MIN_EXTENSION_S
            why = verdict.reason
        else:
            break
        left = budget_s - (host_now() - started)
        if left < 1.0:
            break
        more = min(more, left)
        log.note(f"rtc drift: {why}; polling {more:.1f} s more")
        samples += measure_drift(dut, more, rng, subsecond, max_ppm=MAX_PPM_PRIOR)
        result, verdict = fit(samples, limit)
    return samples, result, verdict, host_now() - started


def runs_wrong(samples: Sequence[Sample]) -> str:
    """What is wrong with a clock whose readouts could not be fitted, or "" where it moved as a clock
    does (never backwards, at 0.5x to 1.5x the host's rate), or where its readouts span under 3 s
    for certain (too short to tell): then it was the rollovers' timing that failed, which is the
    host's or the link's, and the drift is not covered. Judged on hard bounds, never on
    midpoints: each reading was taken within its round trip, so a stalled host widens the time
    between the first and last reading's bounds instead of faking a stopped clock, and a reading's
    last digit may be up to a step (1 s on a whole-second readout) short of the true time."""
    ordered = sorted(samples, key=lambda s: s.host_s)
    if len(ordered) < 2:
        return f"{len(ordered)} readout(s): the RTC could not be read"
    back = [(a, b) for a, b in zip(ordered, ordered[1:]) if b.device_s < a.device_s]
    if back:
        a, b = back[0]
        return f"the RTC went backwards, from {a.device_s!r} to {b.device_s!r}"
    first, last = ordered[0], ordered[-1]
    host_least = (last.host_s - last.rtt_s / 2.0) - (first.host_s + first.rtt_s / 2.0)
    host_most = (last.host_s + last.rtt_s / 2.0) - (first.host_s - first.rtt_s / 2.0)
    if host_least < 3.0:
        return ""
    step = min(readout_step(s.device_s) for s in ordered)  # the finest step the readings show
    device = last.device_s - first.device_s
    if device == 0:
        return f"the RTC stands still: it read {first.device_s!r} for {host_least:.1f} s or more"
    if (device + step) / host_least < 0.5 or (device - step) / host_most > 1.5:
        host = f"{host_least:.1f}" if host_most - host_least < 0.05 else f"{host_least:.1f} to {host_most:.1f}"
        return f"the RTC ran {device:g} s in {host} s of host time: it jumps or runs at the wrong rate"
    return ""


def write_samples(path: Path, samples: Sequence[Sample]) -> Path:
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(("host_s", "device_s", "rtt_s"))
        for s in samples:
            out.writerow((f"{s.host_s:.9f}", repr(s.device_s), f"{s.rtt_s:.9f}"))
    return path


def write_points(path: Path, points: Sequence[Edge | Sample], result: DriftResult) -> Path:
    """The points the line was fitted to, each with its residual (observed - fitted host time)."""
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        edges = bool(points) and isinstance(points[0], Edge)
        out.writerow(
            ("host_s", "device_s", "half_width_s", "bracket_s", "residual_s")
            if edges
            else ("host_s", "device_s", "rtt_s", "residual_s")
        )
        for p, (_, r) in zip(points, result.residuals):
            extra = (p.half_width_s, p.bracket_s) if isinstance(p, Edge) else (p.rtt_s,)
            out.writerow((f"{p.host_s:.9f}", repr(p.device_s), *(f"{x:.9f}" for x in extra), f"{r:.9f}"))
    return path


def attach_fit(attach, points: Sequence[Edge | Sample], result: DriftResult, verdict: Verdict) -> None:
    """The fitted points with their residuals (CSV) and, unless --no-plots, the residual plot."""
    edges = bool(points) and isinstance(points[0], Edge)
    attach(
        write_points(attach.path("drift-points.csv"), points, result),
        "RTC drift fit: " + ("rollover edges" if edges else "samples") + " with residuals (CSV)",
    )
    if not attach.plots:
        return
    title = (
        f"RTC drift {result.ppm:+.1f} ppm, 95 % [{result.ci_low_ppm:+.1f}, {result.ci_high_ppm:+.1f}] "
        f"vs ±{verdict.limit_ppm:g}: {verdict.outcome} ({result.n} {'edges' if edges else 'samples'}, "
        f"{result.span_s:.0f} s)"
    )
    bounds = [p.half_width_s for p in points if isinstance(p, Edge)] if edges else None  # each edge's hard bound
    attach(
        drift_residual_plot(attach.path("drift.png"), result.residuals, title, bounds),
        "RTC drift fit residuals (a trend, not scatter, means temperature or a correction cycle)",
    )


def clock_source(dut, request: pytest.FixtureRequest):
    """What the drift is read from: the RTC (`rtc`), else the credit countdown, which counts
    device seconds as well: SET 1 day first (more than any observation), its seconds left read as
    a 1 s clock. (source name, reader, sub-second readout?)"""
    if dut.offers("rtc"):
        return "RTC", dut, dut.offers("rtc_subsecond")
    session = request.getfixturevalue("token_session")
    tokens = request.getfixturevalue("tokens")
    assert session.expect(tokens.set_days(1)).result == "accepted"
    session.check_status("after SET 1 day, before the drift is read from the credit countdown")
    return "credit countdown", CreditCountdown(dut), False


@pytest.mark.catches("rtc_drift_beyond_limit")
@pytest.mark.time_limit(wait="rtc_drift_max_observe_s")
def test_rtc_drift_within_limit(dut, rig, measure, attach, request, progress):
    """docs/tokens.md "Clock and credit": the RTC drifts less than `dut.rtc_drift_limit_ppm` (685 ppm, ~6 h a
    year, unless the lab's spec says otherwise). The RTC is polled for `dut.rtc_drift_observe_s`
    (4 s on the virtual rig, 600 s on a real one), each readout timestamped at the midpoint of
    send and receive on the host's monotonic clock: a 1 s readout densely around each predicted
    rollover (a seeded random dither, logged), a sub-second one every 50 ms. The drift is the
    least-squares slope over the rollover edges (or the samples) with a 95 % Student-t interval,
    judged by the whole interval: PASS inside ±limit, FAIL wholly outside where the readouts' hard
    timing bounds confirm it (docs/drift.md "Verdict rule": a host whose load changes as it polls
    can put a good clock's interval outside); an interval that straddles the limit, or lies
    outside unconfirmed, is measured on (up to `dut.rtc_drift_max_observe_s` in all) and, if still
    inconclusive, is not covered (the run INCOMPLETE, never a pass) with the time it would need:
    the bench could not decide, which says nothing against the device. A clock that itself reads
    wrong fails as soon as that is certain (`runs_wrong`: it stands still or runs at under half
    or over 1.5x the host's rate over 3 s or more, or goes backwards); else too few rollovers
    bracketed to fit (a loaded host, a slow link) is measured on the same way, and after the
    budget is not covered. The host clock's state (synchronised,
    frequency correction) is logged before and after. Measurements: `rtc_drift` (limits
    ±limit), `rtc_drift_ci_low`, `rtc_drift_ci_high`, `rtc_drift_half_width`, `rtc_drift_edges`,
    `rtc_drift_span`, `rtc_drift_residual_sd`, and the host clock's; evidence: the raw samples,
    the fitted points with their residuals and a residual plot. Without an RTC command the device
    clock is read from the credit countdown (a SET of 1 day first; its seconds left step once a
    device second, docs/drift.md), the same way."""
    log = dut.link.log
    limit = rig.dut.rtc_drift_limit_ppm
    observe_s, budget_s = rig.dut.rtc_drift_observe_s, rig.dut.rtc_drift_max_observe_s
    source, reader, subsecond = clock_source(dut, request)
    seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    log.note(
        f"rtc drift: read from the {source}; limit +-{limit:g} ppm, observing {observe_s:g} s (up to {budget_s:g} s), "
        f"{'sub-second' if subsecond else '1 s'} readout, polling dither seed {seed}"
    )
    before = host_clock_state()
    host_clock_note(log, "before", before)
    watched = Watched(reader)
    with progress.running(lambda: watched.line(observe_s, budget_s)):
        samples, result, verdict, polled_s = poll_until_settled(
            watched, log, limit, observe_s, budget_s, rng, subsecond
        )
    after = host_clock_state()
    host_clock_note(log, "after", after)
    record_host_clock(log, measure, before, after)

    attach(write_samples(attach.path("drift.csv"), samples), "RTC readouts: host time, device time, round trip (CSV)")
    points = fitted_points(samples)
    if result is None:
        clock_fault = runs_wrong(samples)
        if clock_fault:
            pytest.fail(
                f"RTC drift: only {len(points)} point(s) to fit after {polled_s:.1f} s of polling "
                f"({len(samples)} readouts): {clock_fault}"
            )
        skip_not_covered(  # the clock moved as a clock does: the bench could not time it
            request,
            f"RTC drift: only {len(points)} rollover(s) bracketed within 50 ms in {polled_s:.0f} s of polling "
            f"({len(samples)} readouts; the clock itself did not read wrong): a stalled host or a slow link, "
            "nothing against the device",
        )
    log.note(
        f"rtc drift: {verdict.outcome}: {verdict.reason} ({result.method}, n={result.n}, "
        f"span {result.span_s:.1f} s, residual sd {result.residual_sd_s * 1e3:.3f} ms)"
    )
    measure("rtc_drift", result.ppm, "ppm", low=-limit, high=limit)
    measure("rtc_drift_ci_low", result.ci_low_ppm, "ppm")
    measure("rtc_drift_ci_high", result.ci_high_ppm, "ppm")
    measure("rtc_drift_half_width", result.half_width_ppm, "ppm")
    measure("rtc_drift_edges", result.n)
    measure("rtc_drift_span", result.span_s, "s")
    measure("rtc_drift_residual_sd", result.residual_sd_s, "s")
    attach_fit(attach, points, result, verdict)

    if verdict.outcome == "FAIL":
        pytest.fail(f"RTC drift beyond the limit: {verdict.reason}")
    if verdict.outcome != "PASS":  # the bench could not decide: not a device failure, never a pass
        skip_not_covered(
            request,
            f"RTC drift not settled within dut.rtc_drift_max_observe_s = {budget_s:g} s "
            f"(polled {polled_s:.0f} s, residual sd {result.residual_sd_s * 1e3:.1f} ms): {verdict.reason}",
        )
