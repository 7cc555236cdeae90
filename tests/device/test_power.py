"""The DUT is really powered by the PSU (design: the PSU's output feeds the DUT)."""

from __future__ import annotations

import time

import pytest

from bench.dut.errors import LinkSilent

# Unpowered once no answer came in 10x the time a ping took while powered, and at least 0.5 s
# (the brown-out test's rule): a device that answers with its supply off (fed through its UART)
# answers in a ping's time, as it does powered, so waiting out the whole reply timeout for it
# learns nothing more.
SILENCE_FACTOR = 10.0
MIN_SILENCE_S = 0.5


@pytest.mark.catches("backfeed_from_uart")
@pytest.mark.quick
def test_device_silent_when_unpowered(dut, power_cycle, rig, rig_endpoints, measure):
    """docs/power.md "Power cycle": switching the PSU output off powers the DUT down: it stops answering,
    and the bench reports that clearly (naming the port). Silent means no answer to a ping in 10x
    the time one took while powered (at least 0.5 s, at most `link.reply_timeout_s`).
    Measurements: the powered ping's time and the silence waited."""
    started = time.monotonic()
    dut.ping()
    ping_s = time.monotonic() - started
    silence_s = min(max(MIN_SILENCE_S, SILENCE_FACTOR * ping_s), rig.link.reply_timeout_s)
    measure("ping_time", ping_s, "s")
    measure("silence_window", silence_s, "s")
    power_cycle.off()
    deadline = time.monotonic() + silence_s

    def unanswered() -> str | None:
        if time.monotonic() < deadline:
            return None
        return f"silent for {silence_s:.2f} s with the supply off (a powered ping took {ping_s * 1000:.1f} ms)"

    with pytest.raises(LinkSilent) as silent, dut.link.abort_when(unanswered):
        dut.ping()
    message = str(silent.value)
    assert rig_endpoints.port in message and "silent" in message, message
    power_cycle.on()
    dut.ping()


@pytest.mark.catches("backfeed_from_uart")
@pytest.mark.quick
def test_power_cycle_reboots_device(dut, power_cycle, rig, measure):
    """Power-cycle procedure (README, docs/power.md): off, rail below the threshold, minimum off
    time, on, boot banner; the DUT draws current from the PSU while it runs."""
    report = power_cycle()
    assert report.boot_banner, "no boot banner after the power cycle"
    steps = {s.name: s.duration_s for s in report.steps}
    measure("off_time", report.off_time_s, "s", low=rig.psu.min_off_s)
    measure("rail_fall_time", steps["rail settle"], "s", high=rig.psu.settle_timeout_s)
    measure("boot_time", steps["boot"], "s", high=rig.link.boot_timeout_s)
    dut.ping()
    measure("run_current", power_cycle.psu.measure_current(), "A", low=0.001)


@pytest.mark.catches("backfeed_from_uart")
@pytest.mark.needs("boot_reason")
def test_power_cycle_reports_power_on_reset(dut, power_cycle):
    """docs/protocol.md "Unsolicited lines": the boot banner after a power cycle says `reset=power`
    (a device that reports a soft reset after losing power is hiding a brown-out path)."""
    report = power_cycle()
    banner = dut.parse_banner(report.boot_banner or "")
    assert banner.fields.get("reset") == "power", f"boot after a power cycle reports {report.boot_banner!r}"
