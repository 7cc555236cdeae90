"""The PSU driver: exact command strings per profile (replayed), and real I/O against the simulator.

Replays are the only fakes here: they stand for a physical instrument's exact replies, which the
simulator (Keysight dialect only) cannot give. Everything else goes through real pyvisa-py to the
simulated PSU's TCP server.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import pytest

from bench.power import PROFILES, InstrumentError, Psu, get_profile
from bench.sim.psu.server import ScpiServer
from bench.sim.psu.supply import SimulatedSupply

DATA = Path(__file__).parent / "data" / "psu"
RECORDINGS = sorted(DATA.glob("*.json"))


class ReplayInstrument:
    """Replays recorded traffic: each write/query must be the next expected one, exactly."""

    def __init__(self, exchange: list[list[str]], resource_name: str = "REPLAY::PSU"):
        self.expected = [tuple(e) for e in exchange]
        self.sent: list[tuple[float, str, str]] = []
        self.resource_name = resource_name
        self.closed = False

    def _next(self, kind: str, cmd: str) -> tuple[str, ...]:
        self.sent.append((time.monotonic(), kind, cmd))
        assert self.expected, f"unexpected {kind} {cmd!r}: recording exhausted"
        entry = self.expected.pop(0)
        assert entry[:2] == (kind, cmd), f"expected {entry[:2]}, driver sent {(kind, cmd)}"
        return entry

    def write(self, message: str) -> int:
        self._next("W", message)
        return len(message)

    def query(self, message: str) -> str:
        return self._next("Q", message)[2]

    def close(self) -> None:
        self.closed = True

    def assert_done(self) -> None:
        assert not self.expected, f"driver did not send: {self.expected}"


def _scenarios():
    for path in RECORDINGS:
        rec = json.loads(path.read_text())
        for i, s in enumerate(rec["scenarios"]):
            yield pytest.param(rec, s, id=f"{rec['profile']}-{i}-{s['call']}")


def test_every_profile_has_a_recording():
    assert {p.stem for p in RECORDINGS} == set(PROFILES)


@pytest.mark.parametrize("rec,scenario", list(_scenarios()))
def test_replay(rec, scenario):
    inst = ReplayInstrument(scenario["exchange"])
    psu = Psu(inst, rec["profile"], rec["channel"])
    call = getattr(psu, scenario["call"])
    if "raises" in scenario:
        with pytest.raises(InstrumentError) as err:
            call(*scenario.get("args", []))
        for text in scenario["message_contains"] + ["REPLAY::PSU"]:
            assert text in str(err.value)
    else:
        result = call(*scenario.get("args", []))
        expected = scenario["returns"]
        if isinstance(expected, float):
            assert result == pytest.approx(expected)
        else:
            assert result == expected
    inst.assert_done()


def test_replay_strips_cr_and_nul_padding():
    inst = ReplayInstrument([["Q", "V1O?", "5.000V\r"], ["Q", "I1O?", "\x000.100A\x00"]])
    psu = Psu(inst, "aimtti-cpx", 1)
    assert psu.measure_voltage() == 5.0
    assert psu.measure_current() == pytest.approx(0.1)


def test_unexpected_command_fails_the_replay():
    psu = Psu(ReplayInstrument([["W", "VOLT 5"]]), "aimtti-cpx", 1)
    with pytest.raises(AssertionError, match="V1 5"):
        psu.set_voltage(5)


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf, "5", True, None])
def test_setpoints_are_validated_before_anything_is_sent(bad):
    inst = ReplayInstrument([])
    psu = Psu(inst, "keysight-e36", 1)
    with pytest.raises(ValueError):
        psu.set_voltage(bad)
    with pytest.raises(ValueError):
        psu.set_current_limit(bad)
    assert inst.sent == []


@pytest.mark.parametrize("bad", [0, -1, 1.0, True])
def test_channel_must_be_a_positive_int(bad):
    with pytest.raises(ValueError):
        Psu(ReplayInstrument([]), "keysight-e36", bad)


def test_unknown_profile_name_lists_known_ones():
    with pytest.raises(ValueError, match="rigol-dp800"):
        Psu(ReplayInstrument([]), "nope", 1)


def test_traffic_log_and_callback():
    seen: list[tuple[str, str]] = []
    inst = ReplayInstrument([["W", "INST:NSEL 1"], ["Q", "MEAS:VOLT?", "+1.0E+00"]])
    psu = Psu(inst, "keysight-e36", 1, on_traffic=lambda d, t: seen.append((d, t)))
    psu.measure_voltage()
    assert seen == [("TX", "INST:NSEL 1"), ("TX", "MEAS:VOLT?"), ("RX", "+1.0E+00")]
    assert [(d, t) for _, d, t in psu.traffic] == seen
    times = [t for t, _, _ in psu.traffic]
    assert times == sorted(times)


def test_inter_command_interval_is_enforced():
    """Siglent: 20 ms + len/6000 s after each command, measured at the instrument."""
    inst = ReplayInstrument([["W", "CH1:VOLT 5"], ["W", "CH1:CURR 0.1"], ["W", "OUTP CH1,ON"]])
    psu = Psu(inst, "siglent-spd3303x", 1)
    psu.set_voltage(5)
    psu.set_current_limit(0.1)
    psu.output(True)
    t = [s[0] for s in inst.sent]
    profile = get_profile("siglent-spd3303x")
    assert t[1] - t[0] >= profile.interval_after("CH1:VOLT 5")
    assert t[2] - t[1] >= profile.interval_after("CH1:CURR 0.1")


def test_error_queue_drain_is_bounded():
    inst = ReplayInstrument([["Q", "SYST:ERR?", '-100,"Command error"']] * 4)
    psu = Psu(inst, "keysight-e36", 1)
    with pytest.raises(InstrumentError, match="not empty after 4"):
        psu.check_errors(max_reads=4)


def test_closed_psu_refuses_commands():
    inst = ReplayInstrument([])
    psu = Psu(inst, "keysight-e36", 1)
    psu.close()
    psu.close()
    assert inst.closed
    with pytest.raises(InstrumentError, match="closed"):
        psu.idn()


# -- real pyvisa-py against the simulated PSU -----------------------------------------------------


@pytest.fixture
def sim():
    supply = SimulatedSupply(channels=3, decay_s=0.0)
    with ScpiServer(supply) as server:
        yield supply, server


def test_driver_against_simulator(sim):
    supply, server = sim
    with Psu.open(server.visa_resource, "keysight-e36", 2, timeout_s=0.5) as psu:
        assert psu.idn() == "PAYGO-BENCH,SIM-PSU3,0001,1.0"
        psu.set_voltage(5)
        psu.set_current_limit(0.25)
        psu.operation_complete()  # writes have no reply: sync before looking inside the supply
        assert supply.setpoint(2) == 5.0 and supply.current_limit(2) == 0.25
        assert supply.setpoint(1) == 0.0  # the channel was selected, not assumed

        assert psu.output_state() is False
        assert psu.measure_voltage() == 0.0
        supply.set_load(2, lambda volts: volts / 100.0)  # a 100 ohm DUT
        psu.output(True)
        psu.operation_complete()
        assert supply.output(2) and psu.output_state() is True
        assert psu.measure_voltage() == pytest.approx(5.0)
        assert psu.measure_current() == pytest.approx(0.05)
        psu.output(False)
        assert psu.measure_voltage() == 0.0 and psu.measure_current() == 0.0
        assert psu.check_errors() == []
        psu.operation_complete()


def test_select_then_query_is_not_held_up_by_nagle(sim):
    """A select write + query per reading: without TCP_NODELAY each costs a delayed ACK (~40 ms)."""
    _, server = sim
    with Psu.open(server.visa_resource, "keysight-e36", 1, timeout_s=0.5) as psu:
        psu.idn()
        t0 = time.monotonic()
        for _ in range(20):
            psu.measure_voltage()
        assert time.monotonic() - t0 < 0.4


def test_bad_command_is_reported_by_check_errors(sim):
    _, server = sim
    with Psu.open(server.visa_resource, "keysight-e36", 1, timeout_s=0.5) as psu:
        psu._write("BOGUS:CMD 1")  # what a typo'd profile template would send
        assert psu.check_errors() == ['-113,"Undefined header"']
        assert psu.check_errors() == []


def test_setpoint_over_instrument_range_is_reported(sim):
    _, server = sim
    with Psu.open(server.visa_resource, "keysight-e36", 1, timeout_s=0.5) as psu:
        psu.set_voltage(99)  # valid for the driver, beyond the 30 V supply
        assert psu.check_errors() == ['-222,"Data out of range"']


def test_server_gone_raises_instrument_error_naming_resource(sim):
    _, server = sim
    psu = Psu.open(server.visa_resource, "keysight-e36", 1, timeout_s=0.5)
    assert psu.idn()
    server.close()
    t0 = time.monotonic()
    with pytest.raises(InstrumentError) as err:
        psu.measure_voltage()
        psu.measure_voltage()  # the first write can still land in the dead socket's buffer
    assert server.visa_resource in str(err.value)
    assert err.value.__cause__ is not None
    assert time.monotonic() - t0 < 1.5
    psu.close()


def test_no_server_raises_instrument_error(sim):
    _, server = sim
    resource = server.visa_resource
    server.close()
    with pytest.raises(InstrumentError) as err:
        with Psu.open(resource, "keysight-e36", 1, timeout_s=0.5) as psu:
            psu.idn()
    assert resource in str(err.value) and "*IDN?" in str(err.value)


def test_open_failure_raises_instrument_error(sim):
    _, server = sim
    with pytest.raises(InstrumentError, match="could not open PSU at TCPIP0") as err:
        Psu.open(server.visa_resource, "keysight-e36", 1, visa_library="@no-such-backend")
    assert err.value.__cause__ is not None


def test_silent_instrument_times_out_with_clear_message(sim):
    """A query the instrument never answers: the VISA timeout becomes an InstrumentError."""
    _, server = sim
    with Psu.open(server.visa_resource, "keysight-e36", 1, timeout_s=0.3) as psu:
        t0 = time.monotonic()
        with pytest.raises(InstrumentError) as err:
            psu._query("BOGUS?")  # rejected -> error queue, no reply
        elapsed = time.monotonic() - t0
    assert "did not answer 'BOGUS?' within 0.3 s" in str(err.value)
    assert server.visa_resource in str(err.value)
    assert 0.25 <= elapsed < 1.5


def test_a_display_reading_never_waits_behind_a_tests_exchange(sim):
    """The live page reads the supply from its own thread: it gets output, volts and amps, and
    while another thread holds an exchange it sends nothing and gets None (bench/live)."""
    supply, server = sim
    with Psu.open(server.visa_resource, "keysight-e36", 2, timeout_s=0.5) as psu:
        supply.set_load(2, lambda volts: volts / 100.0)
        psu.set_voltage(5)
        psu.output(True)
        psu.operation_complete()
        reading = psu.try_reading()
        assert reading is not None and reading.output_on is True
        assert reading.volts == pytest.approx(5.0) and reading.amps == pytest.approx(0.05)
        held, release = threading.Event(), threading.Event()

        def a_test_exchange(inst):
            held.set()
            release.wait(5)
            return inst.query("*IDN?")

        worker = threading.Thread(target=lambda: psu._exchange("*IDN?", a_test_exchange, InstrumentError))
        worker.start()
        assert held.wait(5)
        sent = len(psu.traffic)
        assert psu.try_reading() is None and len(psu.traffic) == sent  # nothing sent
        release.set()
        worker.join(5)
        assert psu.try_reading() is not None
