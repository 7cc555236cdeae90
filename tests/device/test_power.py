"""The DUT is really powered by the PSU (design: the PSU's output feeds the DUT)."""

from __future__ import annotations

import pytest

from bench.dut.errors import LinkSilent


@pytest.mark.catches("backfeed_from_uart")
@pytest.mark.quick
def test_device_silent_when_unpowered(dut, power_cycle, rig_endpoints):
    """docs/power.md "Power cycle": switching the PSU output off powers the DUT down: it stops answering,
    and the bench reports that clearly (naming the port)."""
    power_cycle.off()
    with pytest.raises(LinkSilent) as silent:
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
