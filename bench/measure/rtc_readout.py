"""Reading a DUT's RTC against the host's monotonic clock, for the drift and timekeeping tests.

The glue between a DUT adapter (anything with `rtc_read()`) and the pure polling logic of
bench.measure.rtc_polling: real time, real sleeps on deadlines. Each reading is timestamped at
the midpoint of send and receive on `time.monotonic_ns()` (docs/drift.md, Method 1): the device
read its clock somewhere in between, and a constant latency cancels out of a slope.
"""

from __future__ import annotations

import random
import time
from typing import Protocol

from bench.measure.drift import Sample
from bench.measure.rtc_polling import poll_periodic, poll_rollovers
from bench.timeout import sleep_until

NS = 1e-9
# Sub-second readout: one query per period suffices (every reading carries its phase); 50 ms
# gives 20 points a second without loading the link.
SUBSECOND_PERIOD_S = 0.05


class RtcReader(Protocol):
    def rtc_read(self) -> float: ...


class CreditRanOut(AssertionError):
    """The credit countdown read as a clock stopped counting: PAYG is no longer active."""


class CreditCountdown:
    """A DUT with no clock command still shows its clock through its credit: while PAYG is active
    the seconds left fall by one every device second, so -(seconds left) is a 1 s readout of the
    device's clock (its steps are rollover edges like an RTC's), and host time + seconds left is
    the credit's end on the host's clock. Reads the DUT's status (anything with `status()`)."""

    def __init__(self, dut) -> None:
        self.dut = dut

    def rtc_read(self) -> float:
        status = self.dut.status()
        if status.payg != "active":
            raise CreditRanOut(
                f"the credit countdown stopped: the DUT reports PAYG {status.payg}"
                + ("" if status.payg == "disabled" else f" with {status.seconds_left} s left")
            )
        return float(-status.seconds_left)


def host_now() -> float:
    """The host's monotonic clock in seconds, from monotonic_ns (no float rounding of the count)."""
    return time.monotonic_ns() * NS


def wait_until(t: float) -> None:
    """Sleep until host_now() reaches t (host_now is time.monotonic, read without float rounding)."""
    sleep_until(t)


def read_rtc(dut: RtcReader) -> Sample:
    """One RTC readout, timestamped at the midpoint of send and receive (docs/drift.md, Method 1)."""
    sent = time.monotonic_ns()
    t = dut.rtc_read()
    received = time.monotonic_ns()
    return Sample((sent + received) / 2 * NS, t, (received - sent) * NS)


def measure_drift(
    dut: RtcReader,
    duration_s: float,
    rng: random.Random,
    subsecond: bool,
    *,
    period_s: float = SUBSECOND_PERIOD_S,
    max_ppm: float = 1000.0,
) -> list[Sample]:
    """Poll the DUT's RTC for duration_s of host time, as estimate_drift wants the samples.

    A 1 s readout is polled densely only around each predicted rollover (poll_rollovers, one
    edge a second); a sub-second readout once every period_s (poll_periodic). rng dithers the
    queries' phase, which keeps the edge errors independent (log its seed with the result).
    No wait runs past duration_s: a window predicted beyond the end is not waited for.
    """
    end = host_now() + duration_s

    def query() -> Sample:
        return read_rtc(dut)

    def wait(t: float) -> None:
        wait_until(min(t, end))

    if subsecond:
        return poll_periodic(query, host_now, wait, duration_s, rng, period_s)
    return poll_rollovers(query, host_now, wait, duration_s, rng, max_ppm=max_ppm)
