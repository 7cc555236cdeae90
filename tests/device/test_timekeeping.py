"""Timekeeping through power loss (docs/tokens.md "Clock and credit"): the RTC must count on, +1
per second, while the device is unpowered (a battery-backed RTC), because the credit is an
expiry in RTC seconds. Measured two ways: the RTC itself (capability `rtc`), and the credit's
end on the host's clock (host time + seconds left), which needs nothing but token entry and a
status readout, and is what a customer pays for. The expected advance is the host's own clock
(time.monotonic), never the device's."""

from __future__ import annotations

import time

import pytest

from bench.fixtures.tokens import SECONDS_LEFT_TOLERANCE
from bench.measure.drift import edge_between
from bench.measure.rtc_readout import CreditCountdown, CreditRanOut, read_rtc
from bench.timeout import Timeout, sleep_until

# The RTC's own drift over the few seconds of the test, allowed on top (a 32 kHz crystal is
# within +-100 ppm even far off 25 degC; docs/drift.md "Crystals and temperature"): microseconds, not a readout step.
DRIFT_ALLOWANCE_PPM = 500.0
EDGE_TIMEOUT_S = 3.0  # a 1 s readout rolls over within a second; longer means the RTC stands still
POLL_EVERY_S = 0.01  # readouts this far apart bracket the rollover within 10 ms plus a round trip
MAX_BRACKET_S = 0.25  # a rollover bracketed more loosely (a stalled host) waits for the next one


def rollover(dut, subsecond: bool) -> tuple[float, float, float]:  # dut: anything with rtc_read()
    """A reference point (host s, device s, bound on its host-time error).

    With a 1 s readout: poll back to back until the second rolls over; the rollover lies
    between the last reading of k-1 and the first of k (bench.measure.drift.edge_between), so
    device time k is pinned to that bracket instead of to a whole second. With a sub-second
    readout one reading pins it to its round trip."""
    first = read_rtc(dut)
    if subsecond:
        return first.host_s, first.device_s, first.rtt_s / 2.0
    limit = Timeout(EDGE_TIMEOUT_S)
    previous = first
    while not limit.expired:
        sleep_until(previous.host_s + POLL_EVERY_S)
        current = read_rtc(dut)
        edge = edge_between(previous, current, max_bracket_s=MAX_BRACKET_S)
        if edge is not None:
            return edge.host_s, edge.device_s, edge.half_width_s
        previous = current
    pytest.fail(f"the DUT's clock did not step within {EDGE_TIMEOUT_S} s while powered (it reads {previous.device_s})")


def hold_off(power_cycle, session, off_s: float) -> tuple[float, float]:
    """Switch off, keep the DUT unpowered for off_s from the confirmed switch-off, switch on (a
    boot banner awaited). Returns (the time it was off, the part of it its PSU let pass at once).

    A clock that stops while unpowered loses the time the DUT was down, and the tests allow 1 s
    (the readout) + the bounds on the readouts' timing: off_s must leave the DUT unpowered
    clearly longer than that, or such a clock passes (bench/rig/model.py, DEFAULT_RTC_OFF_TEST_S).
    Where the PSU can let unpowered time pass at once (the virtual rig's SIM:TIME:SKIP) the whole
    seconds of off_s do, once the rail is down, and the model's clock moves with them: the DUT's
    world moved on by time the host's clock did not see, which the caller adds to it. Elsewhere
    the time passes on the real clock (a deadline, not synchronisation)."""
    off = power_cycle.off()
    skipped = power_cycle.hold_off(off_s)  # a PSU that skips: off_s's whole seconds, at once
    session.passed_while_off(skipped)
    switched_on = time.monotonic()
    power_cycle.on()
    return switched_on - off.confirmed_off_at + skipped, float(skipped)


@pytest.mark.catches("backfeed_from_uart", "rtc_lost_on_power_loss", "rtc_stopped_unpowered")
@pytest.mark.needs("rtc")
@pytest.mark.time_limit(wait="rtc_off_test_s")
def test_rtc_keeps_time_while_unpowered(token_session, power_cycle, rig, measure):
    """docs/tokens.md "Clock and credit": the RTC keeps counting while the device is off (backup battery), so the
    credit keeps running out. The DUT is held unpowered for `dut.rtc_off_test_s` (rig file; 5 s
    on the virtual rig, passed at once there), counted from the confirmed switch-off; its clock
    must then have advanced by the host time that passed between a rollover seen before the cut
    and a readout after the boot (plus the seconds a virtual rig's PSU let pass at once,
    `hold_off`), within the readout's 1 s (a whole-second readout is up to 1 s behind) plus the
    bound on each readout's timing (the rollover's bracket and the after readout's half round
    trip) plus 500 ppm of drift. A clock that restarts from an epoch,
    stops while unpowered, or jumps fails; where the clock can be set it is first set a day ahead
    (`clock_ahead`, the model's with it), so a restart from an epoch is a day's jump back however
    long the rig ran before. Measurements: off time, clock advance, host time, error and the
    tolerance."""
    token_session.clock_ahead()
    dut = token_session.dut
    subsecond = dut.offers("rtc_subsecond")
    off_s = rig.dut.rtc_off_test_s
    host0, device0, bound0 = rollover(dut, subsecond)
    off_time, skipped = hold_off(power_cycle, token_session, off_s)
    after = read_rtc(dut)

    host_elapsed = after.host_s - host0 + skipped
    advance = after.device_s - device0
    error = advance - host_elapsed
    readout = 0.0 if subsecond else 1.0
    tolerance = readout + bound0 + after.rtt_s / 2.0 + DRIFT_ALLOWANCE_PPM * 1e-6 * host_elapsed
    measure("off_time", off_time, "s", low=off_s)
    measure("rtc_advance", advance, "s")
    measure("host_elapsed", host_elapsed, "s")
    measure("rtc_error", error, "s", low=-tolerance, high=tolerance)
    measure("rtc_tolerance", tolerance, "s")
    assert abs(error) <= tolerance, (
        f"after {off_time:.2f} s unpowered the DUT's RTC advanced {advance:.3f} s "
        f"while {host_elapsed:.3f} s passed (error {error:+.3f} s, tolerance {tolerance:.3f} s): "
        + ("it stopped or lost time while unpowered" if error < 0 else "it jumped ahead")
        + f" (before: {device0:.0f}, after: {after.device_s:.0f})"
    )


@pytest.mark.catches(
    "count_not_persisted",
    "provisioning_not_persisted",
    "backfeed_from_uart",
    "set_as_add",
    "rtc_lost_on_power_loss",
    "credit_runs_on_uptime",
    "rtc_stopped_unpowered",
)
@pytest.mark.time_limit(wait="rtc_off_test_s")
def test_credit_end_holds_while_unpowered(token_session, tokens, power_cycle, rig, measure):
    """Credit is an end time on the DUT's clock (docs/tokens.md "Clock and credit"): it must not
    move while the DUT is unpowered. A SET of 1 day gives known credit; its end on the host's
    clock (host time at a step of the seconds-left countdown + the seconds left then) is pinned
    before the cut; the DUT is held unpowered for `dut.rtc_off_test_s` from the confirmed
    switch-off (passed at once on the virtual rig, `hold_off`); after the boot the end is read
    again: it must be where it was, within the 1 s readout, the step's bracket, half the
    readout's round trip and 500 ppm of drift. A device
    whose credit runs on its uptime (counted down only while powered), whose clock restarts at
    boot, or that keeps no credit through power loss, fails. Needs only token entry and status.
    Where the DUT's clock can be set it is first set a day ahead (`clock_ahead`), so a clock that
    restarts at power loss moves the end by a day, however long the rig ran before.
    Measurements: off_time, credit_end_shift (limits ± the tolerance), credit_end_tolerance."""
    s = token_session
    s.clock_ahead()
    assert s.expect(tokens.set_days(1)).result == "accepted"
    s.check_status("after SET 1 day")
    countdown = CreditCountdown(s.dut)
    host0, device0, bound0 = rollover(countdown, subsecond=False)
    end0 = host0 - device0  # the credit's end on the host's clock: host time + seconds left
    off_time, skipped = hold_off(power_cycle, s, rig.dut.rtc_off_test_s)
    try:
        after = read_rtc(countdown)
    except CreditRanOut as e:
        raise AssertionError(
            f"after {off_time:.2f} s unpowered the DUT's credit is gone ({e}); before the cut "
            f"it had {-device0:.0f} s left: it keeps no credit through power loss"
        ) from None
    shift = (after.host_s + skipped - after.device_s) - end0
    tolerance = 1.0 + bound0 + after.rtt_s / 2.0 + DRIFT_ALLOWANCE_PPM * 1e-6 * (after.host_s - host0 + skipped)
    measure("off_time", off_time, "s", low=rig.dut.rtc_off_test_s)
    measure("credit_end_shift", shift, "s", low=-tolerance, high=tolerance)
    measure("credit_end_tolerance", tolerance, "s")
    assert abs(shift) <= tolerance, (
        f"after {off_time:.2f} s unpowered the DUT's credit ends {shift:+.2f} s "
        f"{'later' if shift > 0 else 'earlier'} on the host's clock than before the cut (tolerance {tolerance:.2f} s): "
        + (
            "its credit did not run down while it was off (its clock stopped or restarted, or the credit counts only "
            "while powered)"
            if shift > 0
            else "its clock jumped ahead"
        )
    )
    s.check_status("after the power cycle")


@pytest.mark.catches(
    "count_not_persisted",
    "provisioning_not_persisted",
    "backfeed_from_uart",
    "set_as_add",
    "rtc_lost_on_power_loss",
    "credit_runs_on_uptime",
    "rtc_stopped_unpowered",
    "rtc_drift_beyond_limit",
    "rtc_supercap_backup",
)
@pytest.mark.time_limit(wait="unpowered_long_s")
def test_credit_end_holds_through_a_long_unpowered_interval(token_session, tokens, power_cycle, rig, measure):
    """The end of credit must not move however long the device is off (docs/tokens.md "Clock and
    credit"), also far beyond the 3 s credit tolerance: a clock kept by a supercapacitor runs for
    minutes and passes the short cycles. Credit for the off time and a day more (SETs of up to 995
    days, then ADDs), the status the model's; the DUT held unpowered `dut.unpowered_long_s` (rig
    file; on the virtual rig an hour, let pass at once by its PSU: `PowerControl.hold_off`, the
    model's clock moved with it; elsewhere waited on the real clock); after the boot the status
    is the model's: the credit ran down by exactly the time off, within 3 s and the profile's drift
    limit (`dut.rtc_drift_limit_ppm`) of the interval. Where the clock can be set it is
    first set a day ahead (`clock_ahead`), so a clock that restarts at power loss shows as well.
    Measurement: off_time (the interval, simulated or real)."""
    s = token_session
    s.clock_ahead()
    off_s = rig.dut.unpowered_long_s
    days = min(995 // tokens.time_divider, int(off_s // 86400) + 1)
    assert s.expect(tokens.set_days(days)).result == "accepted"
    while s.model.seconds_left(s.now()) < off_s + 86400:
        assert s.expect(tokens.add_days(days)).result == "accepted"
    s.check_status("before the long unpowered interval")
    power_cycle.off()
    s.passed_while_off(power_cycle.hold_off(off_s))
    power_cycle.on()
    measure("off_time", off_s, "s", low=off_s)
    # the clock may drift by the profile's limit over the interval, on top of the readout's tolerance
    tolerance = SECONDS_LEFT_TOLERANCE + rig.dut.rtc_drift_limit_ppm * 1e-6 * off_s
    status = s.dut.status()
    want = s.model.seconds_left(s.now())
    assert status.payg == "active" and abs(status.seconds_left - want) <= tolerance, (
        f"after {off_s:g} s unpowered the DUT has {status.seconds_left} s of credit left ({status.payg}), "
        f"the model {want:.0f} s (tolerance {tolerance:.1f} s: {SECONDS_LEFT_TOLERANCE} s + "
        f"{rig.dut.rtc_drift_limit_ppm:g} ppm of the interval): the end of credit moved while it was off"
    )
    assert status.token_count in (None, s.model.last_count), (
        f"after {off_s:g} s unpowered the DUT's token count is {status.token_count}, the model's {s.model.last_count}"
    )
