"""Power cycling a DUT through its PSU, with every step timed for the report.

`OUTP OFF` returns at once but the rail decays through the output capacitance, so "off" means
"measured below a threshold", polled against a deadline. The off time is counted from the moment
the output was switched off, so min_off_s is a guarantee, not a sleep added on top.

The output state the PSU reports is believed only when the measured rail agrees with it: a relay
that stuck, or a query that answers the wrong state, is an instrument fault named as such, never
a DUT that went silent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from bench.power.errors import InstrumentError, OutputStateMismatch, PowerCycleError
from bench.timeout import sleep_until

log = logging.getLogger("bench.power")

WaitBoot = Callable[[float], str]
"""wait_boot(timeout_s) -> boot banner; raises when the DUT does not boot in time."""


class SwitchedSupply(Protocol):
    """What the cycle needs from a PSU channel (bench.power.driver.Psu provides it)."""

    resource: str

    def output(self, on: bool) -> None: ...

    def output_state(self) -> bool: ...

    def measure_voltage(self) -> float: ...

    def measure_current(self) -> float: ...


@dataclass
class Step:
    name: str
    duration_s: float
    detail: str


@dataclass
class CycleReport:
    steps: list[Step]
    off_voltage_trace: list[tuple[float, float, float]]
    """(seconds since switch-off, volts, amps) samples taken while waiting for the rail to fall."""
    off_time_s: float = 0.0
    """Switch-off to switch-on, measured."""
    boot_banner: str | None = None
    switched_off_at: float = 0.0
    """time.monotonic() just after the OFF command: off_voltage_trace times count from here."""


@dataclass
class PowerOff:
    """The outcome of power_off(): when the output went off and how the rail fell."""

    switched_off_at: float
    """time.monotonic() just after the OFF command was written."""
    confirmed_off_at: float = 0.0
    """time.monotonic() when the first reply after OFF arrived: instruments process commands in
    order, so by then the output is off. Off times are counted from here, which makes min_off_s
    a guarantee at the instrument, not only on the host's side of the cable."""
    rail_down_at: float = 0.0
    """time.monotonic() when the rail was first measured below the off threshold."""
    steps: list[Step] = field(default_factory=list)
    trace: list[tuple[float, float, float]] = field(default_factory=list)


def power_off(
    psu: SwitchedSupply,
    *,
    off_threshold_v: float = 0.5,
    settle_timeout_s: float = 5.0,
    poll_interval_s: float = 0.02,
) -> PowerOff:
    """Switch the output off, wait until the measured rail is below off_threshold_v, and check
    that the PSU reports its output off.

    Raises PowerCycleError naming the last measured voltage and the reported state if the rail is
    still above the threshold settle_timeout_s after the switch-off (OutputStateMismatch if the
    PSU reports it off all the same), and OutputStateMismatch if the rail fell but the PSU
    reports its output on.
    """
    t0 = time.monotonic()
    psu.output(False)
    off_at = time.monotonic()
    result = PowerOff(switched_off_at=off_at)
    _step(result.steps, "output off", off_at - t0, f"PSU at {psu.resource}")

    deadline = off_at + settle_timeout_s
    polls = 0
    while True:
        volts = psu.measure_voltage()
        if not polls:
            result.confirmed_off_at = time.monotonic()
        amps = psu.measure_current()
        now = time.monotonic()
        polls += 1
        result.trace.append((now - off_at, volts, amps))
        if volts < off_threshold_v:
            result.rail_down_at = now
            _step(
                result.steps,
                "rail settle",
                now - off_at,
                f"{volts:.3f} V < {off_threshold_v} V after {polls} reads",
            )
            if psu.output_state():
                raise OutputStateMismatch(
                    f"PSU at {psu.resource} reports its output on, yet measures {volts:.3f} V ({amps:.4f} A) "
                    f"after switch-off: {DISAGREE}",
                    reported_on=True,
                    volts=volts,
                    trace=result.trace,
                )
            return result
        if now >= deadline:
            _rail_stayed_up(psu, volts, amps, now - off_at, off_threshold_v, settle_timeout_s, result.trace)
        sleep_until(min(now + poll_interval_s, deadline))


DISAGREE = "its output-state query and its measurement disagree (an instrument fault)"


def _rail_stayed_up(
    psu: SwitchedSupply,
    volts: float,
    amps: float,
    after_s: float,
    off_threshold_v: float,
    settle_timeout_s: float,
    trace: list[tuple[float, float, float]],
) -> None:
    """The rail did not fall: say which fault the reported state points at, and raise."""
    text = (
        f"PSU at {psu.resource}: output still at {volts:.3f} V ({amps:.4f} A), above the "
        f"{off_threshold_v} V off threshold, {after_s:.2f} s after switch-off (settle timeout {settle_timeout_s} s)"
    )
    try:
        reported_on = psu.output_state()
    except InstrumentError as exc:  # the rail's reading is the error; this only adds to it
        raise PowerCycleError(f"{text}; its output state could not be read: {exc}", trace=trace) from exc
    if not reported_on:
        raise OutputStateMismatch(
            f"{text}; it reports its output off: {DISAGREE}, or something else holds the rail up",
            reported_on=False,
            volts=volts,
            trace=trace,
        )
    raise PowerCycleError(
        f"{text}; it reports its output on: the switch-off did not take (a stuck output relay, or the "
        "command lost on its way)",
        trace=trace,
        reported_on=True,
    )


def checked_output_state(
    psu: SwitchedSupply,
    *,
    off_threshold_v: float = 0.5,
    settle_timeout_s: float = 5.0,
    poll_interval_s: float = 0.02,
) -> bool:
    """The output state the PSU reports, believed only when its measured rail agrees.

    On with the rail below off_threshold_v raises OutputStateMismatch at once; off with the rail
    above it is given settle_timeout_s to fall (a switch-off a moment ago), then raises it too.
    """
    on = psu.output_state()
    volts = psu.measure_voltage()
    if on and volts < off_threshold_v:
        amps = psu.measure_current()
        raise OutputStateMismatch(
            f"PSU at {psu.resource} reports its output on, yet measures {volts:.3f} V ({amps:.4f} A), below "
            f"the {off_threshold_v} V off threshold: {DISAGREE}",
            reported_on=True,
            volts=volts,
        )
    t0 = time.monotonic()
    while not on and volts >= off_threshold_v:
        now = time.monotonic()
        if now >= t0 + settle_timeout_s:
            raise OutputStateMismatch(
                f"PSU at {psu.resource} reports its output off, yet measures {volts:.3f} V, above the "
                f"{off_threshold_v} V off threshold, {now - t0:.2f} s later: {DISAGREE}, or something else "
                "holds the rail up",
                reported_on=False,
                volts=volts,
            )
        sleep_until(min(now + poll_interval_s, t0 + settle_timeout_s))
        volts = psu.measure_voltage()
    return on


def power_on(
    psu: SwitchedSupply,
    *,
    wait_boot: WaitBoot | None = None,
    boot_timeout_s: float = 10.0,
) -> tuple[list[Step], str | None]:
    """Switch the output on, then (if given) wait for the DUT to boot; the steps and the banner."""
    steps: list[Step] = []
    t0 = time.monotonic()
    psu.output(True)
    on_at = time.monotonic()
    _step(steps, "output on", on_at - t0, f"PSU at {psu.resource}")
    banner = None
    if wait_boot is not None:
        banner = wait_boot(boot_timeout_s)
        _step(steps, "boot", time.monotonic() - on_at, f"banner: {banner!r}")
    return steps, banner


def power_cycle(
    psu: SwitchedSupply,
    *,
    min_off_s: float = 1.0,
    off_threshold_v: float = 0.5,
    settle_timeout_s: float = 5.0,
    poll_interval_s: float = 0.02,
    wait_boot: WaitBoot | None = None,
    boot_timeout_s: float = 10.0,
) -> CycleReport:
    """Off, wait for the rail to fall, hold off until min_off_s after switch-off, on, boot."""
    if min_off_s < 0 or settle_timeout_s < 0 or poll_interval_s <= 0:
        raise ValueError("min_off_s and settle_timeout_s must be >= 0, poll_interval_s > 0")
    off = power_off(
        psu,
        off_threshold_v=off_threshold_v,
        settle_timeout_s=settle_timeout_s,
        poll_interval_s=poll_interval_s,
    )
    steps = list(off.steps)

    t_hold = time.monotonic()
    sleep_until(off.confirmed_off_at + min_off_s)
    _step(steps, "hold off", time.monotonic() - t_hold, f"until {min_off_s} s after switch-off")

    t_on = time.monotonic()
    off_time = t_on - off.confirmed_off_at
    on_steps, banner = power_on(psu, wait_boot=wait_boot, boot_timeout_s=boot_timeout_s)
    steps.extend(on_steps)
    log.info("power cycle on %s: off for %.3f s", psu.resource, off_time)
    return CycleReport(
        steps=steps,
        off_voltage_trace=off.trace,
        off_time_s=off_time,
        boot_banner=banner,
        switched_off_at=off.switched_off_at,
    )


def _step(steps: list[Step], name: str, duration_s: float, detail: str) -> None:
    steps.append(Step(name, duration_s, detail))
    log.info("power step %-11s %.3f s  %s", name, duration_s, detail)
