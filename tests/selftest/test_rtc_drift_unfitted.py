"""The drift test (tests/device/test_rtc_drift.py) when its readouts give too few points to fit:
a loaded host or a slow link that cannot bracket the rollovers is measured on and then not
covered (the bench could not time the clock), never a device failure; a clock that stands still,
goes backwards or runs at the wrong rate fails."""

from __future__ import annotations

import random
import time

import pytest

from bench.measure.drift import Sample
from tests.device.test_rtc_drift import poll_until_settled, runs_wrong


def samples(pairs, rtt=0.001):
    return [Sample(h, float(d), rtt) for h, d in pairs]


def test_a_clock_that_moves_as_a_clock_does_is_not_blamed():
    assert runs_wrong(samples([(0.0, 100), (1.0, 101), (2.5, 102), (4.0, 104)])) == ""


def test_too_short_a_poll_is_not_judged():
    assert runs_wrong(samples([(0.0, 100), (2.9, 100)])) == ""


def test_a_stalled_round_trip_does_not_make_a_clock_stand_still():
    """Midpoints 5 s apart, but each reading took 2.5 s to come back (a stalled host): the two
    readings may have been taken 2.5 s apart, too short for one reading to say the clock stood
    still; with quick round trips the same readings say it did."""
    assert runs_wrong(samples([(0.0, 100), (5.0, 100)], rtt=2.5)) == ""
    assert "stands still: it read 100.0 for 5.0 s or more" in runs_wrong(samples([(0.0, 100), (5.0, 100)]))


@pytest.mark.parametrize(
    "pairs, said",
    [
        ([(0.0, 100), (2.0, 100), (5.0, 100)], "stands still: it read 100.0 for 5.0 s"),
        ([(0.0, 100), (2.0, 102), (3.0, 101), (5.0, 105)], "went backwards, from 102.0 to 101.0"),
        ([(0.0, 100), (5.0, 120)], "ran 20 s in 5.0 s of host time"),
        ([(0.0, 100), (10.0, 103)], "ran 3 s in 10.0 s of host time"),  # 4 s could be a 1 s readout's 5
        ([(0.0, 100)], "1 readout(s)"),
    ],
)
def test_a_broken_clock_is_named(pairs, said):
    assert said in runs_wrong(samples(pairs))


class SlowLink:
    """A clock read over a link whose every round trip is 80 ms: no rollover can be bracketed
    within the 50 ms the fit asks, whatever the clock does."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def rtc_read(self) -> float:
        time.sleep(0.08)
        return float(1_000_000 + int(time.monotonic() - self.t0))


class Notes:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, line: str) -> None:
        self.lines.append(line)


def test_unbracketed_rollovers_are_measured_on_to_the_budget_and_the_clock_not_blamed():
    log = Notes()
    got, result, verdict, polled = poll_until_settled(SlowLink(), log, 685.0, 1.5, 4.0, random.Random(1), False)
    assert result is None and verdict is None
    assert polled >= 3.0, f"stopped after {polled:.1f} s of a 4 s budget"
    assert any("point(s) to fit; polling" in line for line in log.lines), log.lines
    assert runs_wrong(got) == "", "a clock read slowly but moving at the host's rate was blamed"


class StoppedClock:
    """An RTC that reads and answers at once, but never advances."""

    def rtc_read(self) -> float:
        return 1_000_000.0


def test_a_clock_that_stands_still_fails_once_that_is_certain_not_after_the_budget():
    """Its readouts can never be fitted, and no more polling can change what they show: the test
    stops after its first measurement (3 s or more polled), not after the 20 s budget."""
    log = Notes()
    got, result, verdict, polled = poll_until_settled(StoppedClock(), log, 685.0, 3.5, 20.0, random.Random(2), False)
    assert result is None and verdict is None
    assert polled < 6.0, f"polled {polled:.1f} s of a 20 s budget"
    assert "stands still" in runs_wrong(got)
    assert not any("polling" in line for line in log.lines), log.lines
