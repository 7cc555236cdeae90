"""Polling a DUT's RTC around its predicted rollovers, and a synthetic clock to test it against.

Dense queries only in a window around each predicted second rollover (sparse fixed-phase polling
learns nothing: 1 ppm is 1 µs per second), the window shrinking as the fit converges; see
docs/drift.md "Method" and "Background".
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.measure.drift import DEFAULT_MAX_BRACKET_S, PPM, Edge, Sample, edge_between


@dataclass(frozen=True, slots=True)
class Window:
    """Host times between which to poll back to back for one predicted rollover."""

    device_s: float
    center_s: float
    start_s: float
    end_s: float


def next_edge_window(edges: Sequence[Edge], device_s: float, rtt_s: float, max_ppm: float = 1000.0) -> Window | None:
    """Where to poll densely for the rollover to device_s, from the edges found so far.

    None before the first edge: the poller must then poll back to back until a rollover shows.
    The prediction runs through the first and last edge; its bound is the last edge's half-width
    plus the rate uncertainty (their half-widths over their distance, or max_ppm from a single
    edge) times the distance ahead, so the window shrinks as the span grows, and it holds for
    certain as long as the edges' bounds do. A least-squares prediction would be narrower only by
    the last edge's own half-width, about one RTT. The window opens two RTTs before the earliest
    possible rollover, so a first query dithered by up to one RTT is still answered before it.
    """
    if not edges:
        return None
    first, last = edges[0], edges[-1]
    ahead = device_s - last.device_s
    lo_rate, hi_rate = 1.0 - max_ppm * PPM, 1.0 + max_ppm * PPM  # host s per device s, a priori
    if last.device_s > first.device_s:
        dk = last.device_s - first.device_s
        period = (last.host_s - first.host_s) / dk
        slack = (first.half_width_s + last.half_width_s) / dk
        lo2, hi2 = period - slack, period + slack
        if max(lo_rate, lo2) <= min(hi_rate, hi2):
            lo_rate, hi_rate = max(lo_rate, lo2), min(hi_rate, hi2)
        else:  # drifting beyond max_ppm: believe the measurement
            lo_rate, hi_rate = lo2, hi2
    earliest = last.host_s - last.half_width_s + ahead * (lo_rate if ahead >= 0 else hi_rate)
    latest = last.host_s + last.half_width_s + ahead * (hi_rate if ahead >= 0 else lo_rate)
    return Window(device_s, (earliest + latest) / 2.0, earliest - 2.0 * rtt_s, latest + rtt_s)


def poll_rollovers(
    query: Callable[[], Sample],
    now: Callable[[], float],
    wait_until: Callable[[float], None],
    duration_s: float,
    rng: random.Random,
    *,
    every: int = 1,
    max_ppm: float = 1000.0,
    max_bracket_s: float = DEFAULT_MAX_BRACKET_S,
) -> list[Sample]:
    """Poll a 1 s readout densely around each predicted rollover (every `every` seconds).

    The same loop serves a real link (query times one request, now is time.monotonic, wait_until
    waits on a deadline) and the virtual one in simulate_polling. Each window is entered after a
    random dither of up to one RTT, so where the queries fall relative to the rollover is random
    and the edge errors are independent, which the fit's interval assumes.
    """
    end = now() + duration_s
    samples = [query()]
    edges: list[Edge] = []
    rtt = samples[0].rtt_s
    while now() < end:
        if edges:
            target = edges[-1].device_s + every
            while target <= samples[-1].device_s:  # missed one: go for the next on the grid
                target += every
            window = next_edge_window(edges, target, rtt, max_ppm)
            assert window is not None  # there is an edge to go from
            wait_until(window.start_s + rng.uniform(0.0, rtt))
        else:
            target = samples[-1].device_s + 1.0  # acquisition: the first rollover, however far
        burst_rtt = 0.0
        while now() < end:
            sample = query()
            samples.append(sample)
            burst_rtt = max(burst_rtt, sample.rtt_s)
            if sample.device_s >= target:
                break
        if not burst_rtt:  # the run ended while waiting for the window
            break
        rtt = burst_rtt
        edge = edge_between(samples[-2], samples[-1], max_bracket_s)
        if edge is not None:
            edges.append(edge)
    return samples


def poll_periodic(
    query: Callable[[], Sample],
    now: Callable[[], float],
    wait_until: Callable[[float], None],
    duration_s: float,
    rng: random.Random,
    every_s: float = 1.0,
) -> list[Sample]:
    """Sub-second readout: every reading carries its phase, so one query per period suffices."""
    start = now()
    samples = []
    k = 0
    while (t := start + k * every_s) < start + duration_s:
        wait_until(t + rng.uniform(0.0, every_s / 10))
        samples.append(query())
        k += 1
    return samples


def simulate_polling(
    true_ppm: float,
    duration_s: float,
    rtt_sampler: Callable[[random.Random], tuple[float, float]],
    rng: random.Random,
    *,
    every: int = 1,
    resolution_s: float = 1.0,
    start_device_s: float | None = None,
    max_ppm: float = 1000.0,
    max_bracket_s: float = DEFAULT_MAX_BRACKET_S,
) -> list[Sample]:
    """A synthetic DUT clock polled by the real polling logic, on a virtual host clock (no sleeps).

    The host clock starts at 0; the device reads start_device_s then (random phase by default)
    and runs at 1 + true_ppm * 1e-6. rtt_sampler(rng) gives the two legs of one round trip
    (to the device, back): the device reads its clock after the first, so the midpoint
    timestamp is off by (to - back)/2. Readings are floored to resolution_s.
    """
    rate = 1.0 + true_ppm * PPM
    d0 = start_device_s if start_device_s is not None else 1_000_000.0 + rng.random()
    clock = [0.0]

    def now() -> float:
        return clock[0]

    def wait_until(t: float) -> None:
        clock[0] = max(clock[0], t)

    def query() -> Sample:
        sent = clock[0]
        to_dev, back = rtt_sampler(rng)
        if not to_dev + back > 0:
            raise ValueError("a round trip takes time: rtt_sampler gave <= 0")
        reading = d0 + (sent + to_dev) * rate
        reading = math.floor(reading) if resolution_s == 1.0 else math.floor(reading / resolution_s) * resolution_s
        clock[0] = sent + to_dev + back
        return Sample(sent + (to_dev + back) / 2.0, float(reading), to_dev + back)

    if resolution_s < 1.0:
        return poll_periodic(query, now, wait_until, duration_s, rng, float(every))
    return poll_rollovers(
        query, now, wait_until, duration_s, rng, every=every, max_ppm=max_ppm, max_bracket_s=max_bracket_s
    )
