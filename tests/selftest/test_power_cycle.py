"""Power cycling through real pyvisa-py against the simulated PSU.

Off time is checked from the supply's own output-change events, not from the report alone, so the
report can't grade itself. The PSU's faults (a stuck relay, an output query answering the wrong
state) are injected by the SCPI fault proxy between the driver and the simulated PSU.
"""

from __future__ import annotations

import logging
import threading
import time
from types import SimpleNamespace

import pytest

from bench.equipment.scpi_proxy import ScpiFaultProxy, ScpiMode
from bench.power import (
    OutputStateMismatch,
    PowerCycleError,
    Psu,
    checked_output_state,
    power_cycle,
    power_off,
    power_on,
)
from bench.sim.psu.server import ScpiServer
from bench.sim.psu.supply import SimulatedSupply

BANNER = "PAYGO-SIM boot v1"


class Rig:
    """A simulated supply + SCPI server + driver, and a record of when the output changed."""

    def __init__(self, decay_s: float):
        self.supply = SimulatedSupply(channels=2, decay_s=decay_s)
        self.supply.set_voltage(1, 5.0)
        self.supply.set_load(1, lambda v: v / 100.0)
        self.supply.set_output(1, True)
        self.events: list[tuple[float, bool]] = []
        self.powered = threading.Event()
        self.supply.subscribe(self._on_output)
        self.server = ScpiServer(self.supply).start()
        self.psu = Psu.open(self.server.visa_resource, "keysight-e36", 1, timeout_s=0.5)

    def _on_output(self, ch: int, on: bool) -> None:
        if ch == 1:
            self.events.append((time.monotonic(), on))
            (self.powered.set if on else self.powered.clear)()

    def wait_boot(self, timeout_s: float) -> str:
        """Stands in for the DUT layer: 'boots' once the rail is back."""
        if not self.powered.wait(timeout_s):
            raise TimeoutError(f"no boot banner within {timeout_s} s")
        return BANNER

    def close(self) -> None:
        self.psu.close()
        self.server.close()


@pytest.fixture
def rig_factory():
    rigs: list[Rig] = []

    def make(decay_s: float) -> Rig:
        rigs.append(Rig(decay_s))
        return rigs[-1]

    yield make
    for r in rigs:
        r.close()


def test_power_cycle_steps_timing_and_off_time(rig_factory, caplog):
    rig = rig_factory(decay_s=0.1)
    caplog.set_level(logging.INFO, logger="bench.power")
    report = power_cycle(
        rig.psu,
        min_off_s=0.3,
        off_threshold_v=0.5,
        settle_timeout_s=1.0,
        poll_interval_s=0.01,
        wait_boot=rig.wait_boot,
        boot_timeout_s=1.0,
    )
    names = ["output off", "rail settle", "hold off", "output on", "boot"]
    assert [s.name for s in report.steps] == names
    assert all(s.duration_s >= 0 for s in report.steps)
    settle = report.steps[1]
    assert 0.0 < settle.duration_s < 0.1 + 0.2  # linear decay reaches 0.5 V at 90 % of decay_s
    assert report.boot_banner == BANNER and BANNER in report.steps[-1].detail

    # off time seen by the supply itself: at least min_off_s, since the hold counts from the OFF being confirmed
    (t_off, on1), (t_on, on2) = rig.events
    assert (on1, on2) == (False, True)
    assert t_on - t_off >= 0.3
    assert report.off_time_s >= 0.3
    assert report.off_time_s == pytest.approx(t_on - t_off, abs=0.05)

    trace = report.off_voltage_trace
    assert len(trace) >= 2
    assert [t for t, _, _ in trace] == sorted(t for t, _, _ in trace)
    assert trace[0][1] > 0.5 > trace[-1][1]
    assert trace[0][2] > 0  # the load still draws while the rail decays
    assert rig.supply.output(1) and rig.supply.voltage(1) == 5.0

    logged = " ".join(r.getMessage() for r in caplog.records if r.name == "bench.power")
    for name in ("output off", "rail settle", "hold off", "output on", "boot"):
        assert name in logged


def test_off_time_is_at_least_the_settle_time_when_decay_is_slower(rig_factory):
    rig = rig_factory(decay_s=0.25)
    report = power_cycle(rig.psu, min_off_s=0.05, settle_timeout_s=1.0, poll_interval_s=0.01)
    assert [s.name for s in report.steps] == ["output off", "rail settle", "hold off", "output on"]
    assert report.off_time_s >= 0.2  # 0.5 V of 5 V is reached at 90 % of 0.25 s
    assert report.steps[2].duration_s < 0.02  # min_off_s was already over


def test_rail_that_never_falls_fails_clearly(rig_factory):
    rig = rig_factory(decay_s=1000.0)
    t0 = time.monotonic()
    with pytest.raises(PowerCycleError) as err:
        power_cycle(rig.psu, min_off_s=0.0, off_threshold_v=0.5, settle_timeout_s=0.2)
    elapsed = time.monotonic() - t0
    msg = str(err.value)
    assert rig.server.visa_resource in msg
    last_v = err.value.trace[-1][1]
    assert f"{last_v:.3f} V" in msg and "0.5 V" in msg  # last measured voltage, threshold
    assert 0.2 <= elapsed < 1.0
    assert err.value.trace and all(v > 4.9 for _, v, _ in err.value.trace)
    assert rig.psu.output_state() is False  # not switched back on behind the caller's back


def test_hold_device_off_then_power_on(rig_factory):
    rig = rig_factory(decay_s=0.05)
    off = power_off(rig.psu, settle_timeout_s=1.0, poll_interval_s=0.01)
    assert [s.name for s in off.steps] == ["output off", "rail settle"]
    # the rail went down at the last read, after the OFF was confirmed (cut off times count from it)
    assert off.switched_off_at <= off.confirmed_off_at <= off.rail_down_at
    assert abs(off.rail_down_at - (off.switched_off_at + off.trace[-1][0])) < 1e-6 and off.trace[-1][1] < 0.5
    time.sleep(0.1)  # the test holds the device off as long as it likes
    assert not rig.powered.is_set() and rig.supply.voltage(1) == 0.0
    steps, banner = power_on(rig.psu, wait_boot=rig.wait_boot, boot_timeout_s=1.0)
    assert [s.name for s in steps] == ["output on", "boot"]
    assert banner == BANNER and rig.psu.output_state()


def test_boot_timeout_propagates(rig_factory):
    rig = rig_factory(decay_s=0.0)

    def never_boots(timeout_s: float) -> str:
        raise TimeoutError(f"no banner in {timeout_s} s")

    with pytest.raises(TimeoutError, match="0.1 s"):
        power_cycle(rig.psu, min_off_s=0.0, wait_boot=never_boots, boot_timeout_s=0.1)
    assert rig.psu.output_state() is True


def test_invalid_arguments():
    with pytest.raises(ValueError):
        power_cycle(None, min_off_s=-1)  # type: ignore[arg-type]


# -- the PSU's reported output state, believed only when its rail agrees --------------------------


@pytest.fixture
def proxied(rig_factory):
    """The rig's supply reached through the SCPI fault proxy (bench/equipment/scpi_proxy.py)."""
    rig = rig_factory(decay_s=0.05)
    with ScpiFaultProxy((rig.server.host, rig.server.port)) as proxy:
        psu = Psu.open(proxy.resource, "keysight-e36", 1, timeout_s=0.5)
        try:
            yield rig, proxy, psu
        finally:
            psu.close()


def test_a_stuck_relay_is_named_with_both_readings_never_a_silent_device(proxied):
    rig, proxy, psu = proxied
    proxy.set_mode(ScpiMode.STUCK_OFF)
    with pytest.raises(PowerCycleError) as err:
        power_off(psu, settle_timeout_s=0.2, poll_interval_s=0.01)
    msg = str(err.value)
    assert not isinstance(err.value, OutputStateMismatch)
    assert msg.startswith(f"PSU at {proxy.resource}: output still at 5.000 V"), msg
    assert "it reports its output on: the switch-off did not take (a stuck output relay" in msg, msg
    assert rig.supply.output(1) and err.value.trace


def test_an_output_query_answering_on_after_the_rail_fell_is_an_instrument_fault(proxied):
    rig, proxy, psu = proxied
    proxy.set_mode(ScpiMode.INVERT_STATE)
    with pytest.raises(OutputStateMismatch) as err:
        power_off(psu, settle_timeout_s=1.0, poll_interval_s=0.01)
    msg = str(err.value)
    assert msg.startswith(f"PSU at {proxy.resource} reports its output on, yet measures 0.")
    assert "its output-state query and its measurement disagree (an instrument fault)" in msg, msg
    assert err.value.reported_on and err.value.volts < 0.5 and not rig.supply.output(1)


def test_the_checked_output_state_believes_the_psu_only_when_the_rail_agrees(proxied):
    rig, proxy, psu = proxied
    assert checked_output_state(psu) is True  # on at 5 V: agreed
    proxy.set_mode(ScpiMode.INVERT_STATE)
    t0 = time.monotonic()
    with pytest.raises(OutputStateMismatch, match=r"reports its output off, yet measures 5\.000 V") as off:
        checked_output_state(psu, settle_timeout_s=0.2, poll_interval_s=0.01)
    assert 0.2 <= time.monotonic() - t0 < 1.0 and off.value.reported_on is False  # a falling rail was waited for
    rig.supply.set_output(1, False)
    time.sleep(0.1)  # decayed
    with pytest.raises(OutputStateMismatch, match=r"reports its output on, yet measures 0\.000 V") as on:
        checked_output_state(psu)
    assert on.value.reported_on is True
    proxy.set_mode(ScpiMode.PASS)
    assert checked_output_state(psu) is False
    rig.supply.set_output(1, True)
    rig.supply.set_output(1, False)  # switched off this moment: the rail is still falling
    assert checked_output_state(psu, settle_timeout_s=1.0, poll_interval_s=0.01) is False


def test_hold_off_skips_whole_seconds_and_says_how_many(tmp_path):
    """A PSU that lets off time pass at once (SIM:TIME:SKIP, over a real SCPI session) is asked
    for whole seconds, a fraction rounded up, and hold_off returns the seconds it read back: the
    caller moves its model's clock by exactly those (a session's clock counts whole seconds;
    before, one caller moved it by the time truncated while the DUT's moved by the time asked)."""
    from bench.station.power_control import PowerControl

    supply = SimulatedSupply(channels=1, decay_s=0.0)
    taken: list[float] = []
    supply.time_skipper = lambda s: taken.append(s) or True
    server = ScpiServer(supply).start()
    psu = Psu.open(server.visa_resource, "paygo-sim", 1, timeout_s=0.5)
    notes: list[str] = []
    link = SimpleNamespace(log=SimpleNamespace(note=notes.append))  # the traffic log's note, kept
    try:
        control = PowerControl(psu, None, link, None)
        assert control.hold_off(2.4) == 3 and taken == [3.0]
        assert float(psu.skip_off_time(0)) == 3.0  # what the PSU says it skipped since the switch-off
        assert notes and "3 s of unpowered time" in notes[-1]
    finally:
        psu.close()
        server.close()
