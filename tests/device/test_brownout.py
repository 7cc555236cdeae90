"""Brown-out (docs/power.md "Supply dips and brown-out"): a slow ramp of the supply down through the
device's brown-out threshold and back up, in VOLT steps. The bench does not know the threshold:
it finds where the device stops answering and where it boots again, and holds the device to
the model: every answer on the way down is the model's, nothing is lost, and it comes back
cleanly (a fresh boot banner, the whole state the model's)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from bench.dut.adapter import Banner
from bench.dut.errors import DutError, LinkSilent
from bench.openpaygo.model import DeviceModel
from bench.openpaygo.tokens import Token
from bench.station.token_session import status_differences
from bench.timeout import sleep_for

STEPS = 40  # from the rig's supply voltage to 0 V: 0.3 V a step at 12 V
DWELL_S = 0.02  # at each step before the device is asked anything
BELOW = 3  # steps further down once the device has gone silent, then back up
SILENCE_FACTOR = 10.0  # silent once no answer came in 10x the time an answer took at full voltage
MIN_SILENCE_S = 0.5
# With `rtc_set`, the RTC is first moved this far from wherever it was, so that a clock that
# restarts from its epoch at the reset shows as an hour lost, not as a second or two.
RTC_JUMP_S = 3600


@pytest.mark.catches(
    "reused_token_accepted",
    "count_not_persisted",
    "provisioning_not_persisted",
    "backfeed_from_uart",
    "leading_zero_dropped",
    "rtc_lost_on_power_loss",
    "no_brownout_reset",
)
@pytest.mark.needs("token", "status")
@pytest.mark.time_limit(exchanges=4 * STEPS)  # each step down and up: the supply set and read, the DUT asked
def test_brownout_ramp_reboots_cleanly(token_session, tokens, power_cycle, rig, measure):
    """docs/power.md "Supply dips and brown-out" (slow ramps through the BOR threshold; IEC 61000-4-29:
    no loss of data): the supply is stepped down from `psu.voltage` in 40 steps; at each step
    the device is given a token, and every answer must be the model's. Once it stays silent
    (10x an answer's time at full voltage, at least 0.5 s) it is stepped 3 steps lower and back
    up, and must boot exactly once on the way up (a `! BOOT` banner, `reset=brownout` or
    `power` where the DUT reports it) with the whole state the model's: every token it
    acknowledged kept, the one it did not answer either applied or not, and the tokens entered
    already used. With `rtc_set` the RTC is first set an hour ahead, so a clock reset by the
    brown-out shows.
    Measurements: the lowest voltage answered, the first silent one, the boot voltage; the
    supply's voltage and current at every step (telemetry)."""
    s = token_session
    if s.dut.offers("rtc") and s.dut.offers("rtc_set"):
        s.advance(RTC_JUMP_S)
    nominal = rig.psu.voltage
    ramp = Ramp([round(nominal * i / STEPS, 4) for i in range(STEPS, -1, -1)])
    first = tokens.add_days(1)
    ramp.answered.append(first)
    reply_s = s.expect(first).elapsed_s
    silence_s = min(max(MIN_SILENCE_S, SILENCE_FACTOR * reply_s), rig.link.reply_timeout_s)
    s.check_streak()
    try:
        _ramp_down(ramp, s, tokens, power_cycle, silence_s)
        _ramp_up(ramp, s, power_cycle, rig.link.boot_timeout_s)
    finally:
        power_cycle.psu.set_voltage(nominal)  # whatever happened, the next test gets its supply back
        measure("ramp_step", nominal / STEPS, "V")
        for name, value in (
            ("last_answer_voltage", ramp.last_answer_v),
            ("first_silent_voltage", ramp.first_silent_v),
            ("boot_voltage", ramp.boot_v),
        ):
            if value is not None:  # not reached: no value rather than a made-up one
                measure(name, value, "V")
    _check_after_brownout(ramp, s, power_cycle.link)


@dataclass
class Ramp:
    """The ramp's steps and what the device did on it."""

    volts: list[float]
    answered: list[Token] = field(default_factory=list)
    silent_at: int | None = None  # the first step the device did not answer at
    last_answer_v: float | None = None
    first_silent_v: float | None = None
    boot_v: float | None = None
    unanswered: tuple[DeviceModel, DeviceModel] | None = None  # (model without, model with) its token
    banner: Banner | None = None


def _ramp_down(ramp: Ramp, s, tokens, power_cycle, silence_s: float) -> None:
    """Step down, a token at each step, until the device stays silent; every answer the model's."""
    for n in range(1, STEPS + 1):
        v = ramp.volts[n]
        power_cycle.psu.set_voltage(v)
        sleep_for(DWELL_S)
        power_cycle.sample(f"ramp down {v:g} V")
        token = tokens.add_days(1)
        entry = s.begin(token)  # written ahead in the ledger: the supply may take the answer
        deadline = time.monotonic() + silence_s

        def down() -> str | None:
            return "no answer: the device is down" if time.monotonic() >= deadline else None

        try:
            with power_cycle.link.abort_when(down):
                out = s.dut.enter_token(token.code)
        except LinkSilent:
            ramp.silent_at, ramp.first_silent_v, ramp.unanswered = n, v, (entry.before, entry.after)
            break
        s.finish(entry, out)
        s.check_outcome(token.code, entry.predicted, out)  # an answer on the way down is the model's
        ramp.answered.append(token)
        ramp.last_answer_v = v
    assert ramp.silent_at is not None, f"the device still answered at {ramp.volts[-1]} V: the supply never took it down"


def _ramp_up(ramp: Ramp, s, power_cycle, boot_timeout_s: float) -> None:
    """BELOW steps further down, then back up until the device boots."""
    assert ramp.silent_at is not None
    lowest = min(ramp.silent_at + BELOW, STEPS)
    for n in range(ramp.silent_at + 1, lowest + 1):
        power_cycle.psu.set_voltage(ramp.volts[n])
        sleep_for(DWELL_S)
        power_cycle.sample(f"ramp down {ramp.volts[n]:g} V")
    power_cycle.link.drain()
    since = time.monotonic()
    for n in range(lowest - 1, -1, -1):
        power_cycle.psu.set_voltage(ramp.volts[n])
        try:
            ramp.banner = s.dut.wait_boot(DWELL_S, since=since)
        except LinkSilent:
            power_cycle.sample(f"ramp up {ramp.volts[n]:g} V")
            continue
        ramp.boot_v = ramp.volts[n]
        power_cycle.sample(f"ramp up {ramp.volts[n]:g} V (booted)")
        return
    ramp.banner = s.dut.wait_boot(boot_timeout_s, since=since)


def _check_after_brownout(ramp: Ramp, s, link) -> None:
    """One clean boot, and the whole state the model's, with or without the unanswered token."""
    banner = ramp.banner
    assert banner is not None and ramp.unanswered is not None
    if s.dut.offers("boot_reason"):
        assert banner.fields.get("reset") in ("brownout", "power"), (
            f"after the brown-out the DUT reports {banner.line!r}"
        )
    try:
        status = s.dut.status()
    except DutError as e:
        raise AssertionError(
            f"after the brown-out the DUT does not report its status ({e}): its state is gone"
        ) from None
    again = [line for t, line in link.events if line.startswith("! BOOT") and t > banner.at]
    assert not again, f"the device booted more than once after the brown-out: {banner.line!r}, then {again}"
    without, with_ = ramp.unanswered
    now = s.now()
    as_with = status_differences(status, with_, now, streak=True)
    as_without = status_differences(status, without, now, streak=True)
    assert not as_with or not as_without, (
        f"after the brown-out the state is not the model's: without the unanswered token "
        f"({'; '.join(as_without)}), with it ({'; '.join(as_with)}); status {status}"
    )
    s.model = with_ if not as_with else without
    for token in (ramp.answered[0], ramp.answered[-1]):
        again_out = s.expect(token).result
        assert again_out == "already_used", f"ADD at count {token.count} was {again_out} after the brown-out"
    if s.dut.offers("nvm"):
        assert s.dut.nvm_info().crc_ok, "after the brown-out the NVM record is not valid"
