"""The SCPI fault proxy (bench/equipment/scpi_proxy.py) between the real PSU driver (pyvisa-py)
and the simulated PSU, on real TCP: each mode does what it says on the wire, and the driver
survives a dropped connection by reconnecting once, and fails naming the PSU when it cannot."""

from __future__ import annotations

import time

import pytest

from bench.equipment.scpi_proxy import ScpiFaultProxy, ScpiMode
from bench.power import InstrumentError, Psu
from bench.sim.psu.server import ScpiServer
from bench.sim.psu.supply import SimulatedSupply


@pytest.fixture
def bench():
    """The simulated supply (channel 2 at 5 V), its SCPI server, a proxy in front, and the driver
    talking through the proxy."""
    supply = SimulatedSupply(channels=3, decay_s=0.0)
    supply.set_voltage(2, 5.0)
    with ScpiServer(supply) as server, ScpiFaultProxy((server.host, server.port), delay_s=0.4) as proxy:
        psu = Psu.open(proxy.resource, "keysight-e36", 2, timeout_s=0.3)
        try:
            yield supply, proxy, psu
        finally:
            psu.close()


def commands(proxy: ScpiFaultProxy, action: str | None = None) -> list[str]:
    return [x.text for x in proxy.lines() if x.direction == "command" and action in (None, x.action)]


def test_pass_forwards_every_line_and_its_reply(bench):
    supply, proxy, psu = bench
    assert psu.idn() == "PAYGO-BENCH,SIM-PSU3,0001,1.0"
    psu.output(True)
    assert psu.measure_voltage() == pytest.approx(5.0) and supply.output(2)
    assert commands(proxy) == ["*IDN?", "INST:NSEL 2", "OUTP ON", "INST:NSEL 2", "MEAS:VOLT?"]
    assert [x.text for x in proxy.lines() if x.direction == "reply"][-1] == "+5.00000000E+00"
    assert proxy.connections == 1 and psu.reconnects == 0 and not proxy.error_log()


def test_a_connection_dropped_while_idle_is_reopened_once_before_the_next_command(bench):
    supply, proxy, psu = bench
    psu.output(True)
    psu.operation_complete()  # through the proxy, and connected: *OPC? answered
    proxy.close_connections()  # a PSU rebooting, a switch port flapping
    time.sleep(0.05)
    t0 = time.monotonic()
    assert psu.measure_voltage() == pytest.approx(5.0)
    assert time.monotonic() - t0 < 0.25  # seen before sending: no timeout waited out
    assert (psu.reconnects, proxy.connections) == (1, 2)
    notes = [text for _, direction, text in psu.traffic if direction == "--"]
    assert notes and "the PSU closed the connection" in notes[0] and "reconnecting once" in notes[0], notes


def test_a_connection_closed_on_a_query_is_reopened_and_the_query_retried_once(bench):
    supply, proxy, psu = bench
    psu.output(True)
    psu.operation_complete()  # through the proxy, and connected: *OPC? answered
    proxy.set_mode(ScpiMode.CLOSE, after=1)  # INST:NSEL passes, MEAS:VOLT? closes the connection
    t0 = time.monotonic()
    assert psu.measure_voltage() == pytest.approx(5.0)
    assert 0.25 <= time.monotonic() - t0 < 1.5  # the lost reply costs the driver its timeout, once
    assert commands(proxy, "closed") == ["MEAS:VOLT?"]  # and retried on the new connection:
    assert proxy.wait_for(lambda x: x.connection == 2 and x.text == "MEAS:VOLT?", timeout_s=5) is not None
    assert psu.operation_complete() is None and psu.reconnects == 1  # and it stays connected
    assert (psu.reconnects, proxy.connections, proxy.mode) == (1, 2, ScpiMode.PASS)


def test_writes_lost_with_the_connection_are_sent_again_on_the_new_one(bench):
    """A write has no reply: one the PSU never took before its connection went would be lost
    silently. Those sent since the last answered query are re-sent after the reconnect."""
    supply, proxy, psu = bench
    psu.output(True)
    psu.operation_complete()
    proxy.set_mode(ScpiMode.CLOSE, after=1)  # INST:NSEL passes, OUTP OFF is lost with the connection
    psu.output(False)  # written into a socket that is closing: no error
    assert psu.output_state() is False and not supply.output(2)  # re-sent before the query
    assert commands(proxy, "closed") == ["OUTP OFF"]
    # on the new connection: the lost write re-sent before the query (the proxy's threads record
    # lines as they pass, so wait for the query's line rather than read the list at once)
    assert proxy.wait_for(lambda x: x.connection == 2 and x.text == "OUTP?", timeout_s=5) is not None
    again = [x.text for x in proxy.lines() if x.connection == 2 and x.direction == "command"]
    assert "OUTP OFF" in again and again.index("OUTP OFF") < again.index("OUTP?"), again
    assert psu.reconnects == 1


def test_a_psu_gone_for_good_fails_at_once_naming_it_and_the_reconnect(bench):
    supply, proxy, psu = bench
    psu.output(True)
    psu.operation_complete()  # through the proxy, and connected: *OPC? answered
    proxy.set_mode(ScpiMode.REFUSE)
    t0 = time.monotonic()
    with pytest.raises(InstrumentError) as err:
        psu.measure_voltage()
    message = str(err.value)
    assert message.startswith(f"PSU at {proxy.resource}: ") and "reconnect" in message, message
    assert time.monotonic() - t0 < 1.5
    assert supply.output(2)  # and what it left behind: the output still on


def test_stuck_off_swallows_the_off_command_and_nothing_else(bench):
    supply, proxy, psu = bench
    proxy.set_mode(ScpiMode.STUCK_OFF)
    psu.output(True)
    psu.output(False)
    psu.operation_complete()
    assert supply.output(2) and psu.output_state() is True  # the relay never opened
    assert commands(proxy, "swallowed") == ["OUTP OFF"]
    proxy.set_mode(ScpiMode.PASS)
    psu.output(False)
    psu.operation_complete()
    assert not supply.output(2)


def test_invert_state_answers_the_output_query_with_the_opposite(bench):
    supply, proxy, psu = bench
    proxy.set_mode(ScpiMode.INVERT_STATE)
    assert psu.output_state() is True and not supply.output(2)
    psu.output(True)
    assert psu.output_state() is False and supply.output(2)
    assert psu.measure_voltage() == pytest.approx(5.0)  # every other reply untouched
    assert [x.action for x in proxy.lines() if x.direction == "reply"] == ["inverted", "inverted", "forwarded"]


def test_a_reply_that_comes_too_late_is_not_taken_for_the_next_one(bench):
    """A query cut short (a timeout here, a signal in a run) leaves its reply on the way: the
    driver reads it off before the next query instead of handing it on as that query's."""
    supply, proxy, psu = bench
    psu.output(True)
    psu.operation_complete()  # through the proxy, and connected: *OPC? answered
    proxy.set_mode(ScpiMode.SLOW)
    with pytest.raises(InstrumentError, match="did not answer 'MEAS:VOLT\\?' within 0.3 s"):
        psu.measure_voltage()
    proxy.set_mode(ScpiMode.PASS)
    time.sleep(0.3)  # the late reply is in by now
    assert psu.idn() == "PAYGO-BENCH,SIM-PSU3,0001,1.0"
    assert psu.reconnects == 0  # a slow instrument is not a lost connection


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        ScpiFaultProxy(("127.0.0.1", 1), delay_s=-1)
    proxy = ScpiFaultProxy(("127.0.0.1", 1))
    with pytest.raises(ValueError):
        proxy.set_mode(ScpiMode.CLOSE, after=-1)
    with pytest.raises(ValueError):
        proxy.set_mode("melt")
