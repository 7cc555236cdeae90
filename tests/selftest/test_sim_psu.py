"""The simulated PSU: its electrical model, and its SCPI server spoken to over a plain socket."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from bench.sim.psu.instrument import ERROR_QUEUE_SIZE
from bench.sim.psu.server import ScpiServer
from bench.sim.psu.supply import SimulatedSupply

# -- model ----------------------------------------------------------------------------------------


def test_voltage_follows_output_and_decays_linearly():
    s = SimulatedSupply(decay_s=1.0)
    s.set_voltage(1, 5.0)
    assert s.voltage(1) == 0.0  # off at power-up
    s.set_output(1, True)
    assert s.voltage(1) == 5.0
    s.set_output(1, False)
    t_off = time.monotonic()
    assert s.voltage(1, now=t_off) == pytest.approx(5.0, abs=0.05)
    assert s.voltage(1, now=t_off + 0.5) == pytest.approx(2.5, abs=0.05)
    assert s.voltage(1, now=t_off + 1.0) == 0.0
    assert s.voltage(1, now=t_off + 10) == 0.0


def switched_off(decay_s: float, volts: float = 5.0) -> SimulatedSupply:
    """A supply set to `volts` on channel 1, switched on then off: its output decays from now."""
    s = SimulatedSupply(decay_s=decay_s)
    s.set_voltage(1, volts)
    s.set_output(1, True)
    s.set_output(1, False)
    return s


def test_voltage_falls_below_threshold_within_decay_s():
    s = switched_off(decay_s=0.15)
    t0 = time.monotonic()
    while s.voltage(1) >= 0.5:
        assert time.monotonic() - t0 < 0.15, "still above 0.5 V after decay_s"
        time.sleep(0.005)


def test_voltage_still_up_shortly_after_off_when_decay_is_slow():
    s = switched_off(decay_s=100.0)
    time.sleep(0.05)
    assert s.voltage(1) > 4.9


def test_zero_decay_is_instant():
    s = switched_off(decay_s=0, volts=3.3)
    assert s.voltage(1) == 0.0


def test_on_during_decay_jumps_back_to_setpoint():
    s = switched_off(decay_s=100.0)
    s.set_output(1, True)
    assert s.voltage(1) == 5.0


def test_lowest_since_last_holds_a_dip_the_reader_did_not_see():
    """The low mark: an off period that ended before the reader looked still shows, at the
    voltage the decaying rail had reached when it came back on; so does a setpoint dip; each
    read starts a new stretch from the voltage then."""
    clock = [100.0]
    s = SimulatedSupply(decay_s=1.0, clock=lambda: clock[0])
    s.set_voltage(1, 10.0)
    s.set_output(1, True)
    assert s.lowest_since_last(1) == 0.0  # off at power-up, until just now
    assert s.lowest_since_last(1) == 10.0
    s.set_output(1, False)
    clock[0] += 0.75  # the rail down to 2.5 V
    s.set_output(1, True)
    clock[0] += 1.0
    assert s.voltage(1) == 10.0 and s.lowest_since_last(1) == pytest.approx(2.5)
    s.set_voltage(1, 2.0)
    s.set_voltage(1, 10.0)
    assert s.lowest_since_last(1) == 2.0
    s.cut(1)
    s.set_output(1, True)
    assert s.lowest_since_last(1) == 0.0
    assert s.lowest_since_last(1) == 10.0


def test_current_follows_load_only_while_powered_and_is_limited():
    s = SimulatedSupply(decay_s=0)
    s.set_voltage(1, 5.0)
    s.set_current_limit(1, 0.1)
    s.set_load(1, lambda v: v / 100.0)  # 100 ohm
    assert s.current(1) == 0.0
    s.set_output(1, True)
    assert s.current(1) == pytest.approx(0.05)
    s.set_load(1, lambda v: v / 10.0)  # 10 ohm would draw 0.5 A: limited
    assert s.current(1) == pytest.approx(0.1)
    s.set_output(1, False)
    assert s.current(1) == 0.0
    s.set_output(1, True)
    s.set_load(1, None)
    assert s.current(1) == 0.0


def test_current_during_decay_follows_the_falling_voltage():
    s = SimulatedSupply(decay_s=1.0)
    s.set_voltage(1, 5.0)
    s.set_load(1, lambda v: v / 100.0)
    s.set_output(1, True)
    s.set_output(1, False)
    now = time.monotonic()
    assert s.current(1, now=now + 0.5) == pytest.approx(0.025, abs=0.001)
    assert s.current(1, now=now + 1.0) == 0.0


def test_channels_are_independent_and_ranges_checked():
    s = SimulatedSupply(channels=2, max_voltage=30, max_current=5)
    s.set_voltage(2, 12)
    assert s.setpoint(1) == 0.0 and s.setpoint(2) == 12.0
    for bad in (
        lambda: s.set_voltage(3, 1),
        lambda: s.set_voltage(1, 31),
        lambda: s.set_voltage(1, -1),
        lambda: s.set_current_limit(1, 6),
        lambda: s.set_voltage(1, float("nan")),
    ):
        with pytest.raises(ValueError):
            bad()


def test_observers_hear_real_changes_only():
    s = SimulatedSupply()
    events: list[tuple[int, bool]] = []
    unsubscribe = s.subscribe(lambda ch, on: events.append((ch, on)))
    s.set_output(1, True)
    s.set_output(1, True)
    s.set_output(2, True)
    s.set_output(1, False)
    assert events == [(1, True), (2, True), (1, False)]
    unsubscribe()
    s.set_output(1, True)
    assert len(events) == 3


def test_failing_observer_does_not_break_the_supply():
    s = SimulatedSupply()
    s.subscribe(lambda ch, on: 1 / 0)
    s.set_output(1, True)
    assert s.output(1)


def test_thread_safety_under_concurrent_switching():
    s = SimulatedSupply(decay_s=0.01)
    s.set_voltage(1, 5.0)
    errors: list[BaseException] = []

    def worker():
        try:
            for i in range(300):
                s.set_output(1, i % 2 == 0)
                assert 0.0 <= s.voltage(1) <= 5.0
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_cut_collapses_the_rail_at_once_whatever_the_decay():
    s = SimulatedSupply(decay_s=100.0)
    s.set_voltage(1, 5.0)
    s.set_load(1, lambda v: 0.05)
    events = []
    s.subscribe(lambda ch, on: events.append((ch, on, s.voltage(ch))))
    s.set_output(1, True)
    s.cut(1)
    assert not s.output(1) and s.voltage(1) == 0.0 and s.current(1) == 0.0
    assert events == [(1, True, 5.0), (1, False, 0.0)]  # observers already see the collapse
    s.cut(1)  # already off: nothing happens
    assert len(events) == 2


def test_nvm_trigger_cuts_after_the_kth_page_and_only_its_channel():
    s = SimulatedSupply(channels=2, decay_s=100.0)
    for ch in (1, 2):
        s.set_voltage(ch, 5.0)
        s.set_output(ch, True)
    s.nvm_page_written(1)  # not armed: nothing
    s.arm_nvm_cut(1, 3)
    assert s.nvm_cut_pending(1) == 3 and s.nvm_cut_pending(2) == 0
    s.nvm_page_written(1)
    s.nvm_page_written(2)  # another channel's DUT does not count
    s.nvm_page_written(1)
    assert s.output(1) and s.nvm_cut_pending(1) == 1
    s.nvm_page_written(1)
    assert not s.output(1) and s.voltage(1) == 0.0 and s.output(2)
    assert s.nvm_cut_pending(1) == 0  # fired: not armed any more
    s.set_output(1, True)
    s.nvm_page_written(1)
    assert s.output(1)
    s.arm_nvm_cut(1, 2)
    s.arm_nvm_cut(1, 0)  # disarmed
    s.nvm_page_written(1)
    s.nvm_page_written(1)
    assert s.output(1)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError):
            s.arm_nvm_cut(1, bad)


# -- SCPI server ----------------------------------------------------------------------------------


class Client:
    """A bare TCP client: line in, line out, with a short timeout."""

    def __init__(self, server: ScpiServer):
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=0.5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, line: str | bytes) -> None:
        self.sock.sendall(line if isinstance(line, bytes) else line.encode() + b"\n")

    def ask(self, line: str) -> str:
        self.send(line)
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("server closed")
            self.buf += chunk
        reply, self.buf = self.buf.split(b"\n", 1)
        return reply.decode()

    def sync(self) -> None:
        """Wait until the server has processed everything sent so far (*OPC? round trip)."""
        assert self.ask("*OPC?") == "1"

    def errors(self) -> list[str]:
        out = []
        while (e := self.ask("SYST:ERR?")) != '+0,"No error"':
            out.append(e)
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server():
    supply = SimulatedSupply(channels=3, decay_s=0.0)
    with ScpiServer(supply) as srv:
        yield srv


@pytest.fixture
def client(server):
    c = Client(server)
    yield c
    c.close()


def test_resource_string_and_port(server):
    assert server.port > 0
    assert server.visa_resource == f"TCPIP0::127.0.0.1::{server.port}::SOCKET"


def test_identity_and_opc(client):
    assert client.ask("*IDN?") == "PAYGO-BENCH,SIM-PSU3,0001,1.0"
    assert client.ask("*OPC?") == "1"


def test_short_and_long_forms_case_insensitive(server, client):
    sup = server.supply
    client.send("INST:NSEL 2")
    client.send("voltage 5")
    client.sync()
    assert sup.setpoint(2) == 5.0
    client.send(":SOURce:VOLTage:LEVel:IMMediate:AMPLitude 6")
    client.sync()
    assert sup.setpoint(2) == 6.0
    client.send("Curr 0.2")
    client.send("OUTPut:STATe ON")
    client.sync()
    assert sup.current_limit(2) == 0.2
    assert sup.output(2)
    assert client.ask("outp?") == "1"
    assert float(client.ask("MEASure:VOLTage?")) == 6.0
    assert float(client.ask("MEAS:SCAL:VOLT:DC?")) == 6.0
    assert client.ask("instrument:nselect?") == "2"
    client.send("OUTP 0")
    client.sync()
    assert not sup.output(2)
    assert client.errors() == []


def test_semicolon_separated_commands_give_one_reply_line(client):
    assert client.ask("INST:NSEL 3;VOLT 2.5;VOLT?;INST:NSEL?") == "+2.50000000E+00;3"


def test_channel_list_suffix(server, client):
    client.send("VOLT 3.3,(@1)")
    client.send("OUTP ON,(@1,3)")
    client.sync()
    assert server.supply.setpoint(1) == 3.3 and server.supply.setpoint(2) == 0.0
    assert client.ask("OUTP? (@1:3)") == "1,0,1"
    assert float(client.ask("MEAS:VOLT? (@1)")) == 3.3
    assert client.ask("INST:NSEL?") == "1"


def test_error_queue_codes(client):
    client.send("FOO:BAR 1")
    client.send("VOLT 99")
    client.send("VOLT")
    client.send("OUTP MAYBE")
    client.send("INST:NSEL 9")
    assert client.errors() == [
        '-113,"Undefined header"',
        '-222,"Data out of range"',
        '-109,"Missing parameter"',
        '-104,"Data type error"',
        '-222,"Data out of range"',
    ]
    assert client.ask("SYST:ERR?") == '+0,"No error"'


def test_error_queue_overflow_and_cls(client):
    for _ in range(ERROR_QUEUE_SIZE + 5):
        client.send("NOPE")
    errs = client.errors()
    assert len(errs) == ERROR_QUEUE_SIZE
    assert errs[-1] == '-350,"Queue overflow"'
    client.send("NOPE")
    client.send("*CLS")
    assert client.errors() == []


def test_rst_switches_everything_off(server, client):
    client.send("INST:NSEL 2;VOLT 5;OUTP ON")
    client.sync()
    assert server.supply.output(2)
    client.send("*RST")
    client.sync()
    assert not server.supply.output(2) and server.supply.setpoint(2) == 0.0
    assert client.ask("INST:NSEL?") == "1"


def test_output_change_reaches_observers(server, client):
    events = []
    server.supply.subscribe(lambda ch, on: events.append((ch, on)))
    client.send("OUTP ON")
    client.send("OUTP OFF")
    assert client.ask("*OPC?") == "1"
    assert events == [(1, True), (1, False)]


def test_malformed_input_never_kills_the_server(server, client):
    for junk in (
        b"\xff\xfe\x00garbage\n",
        b";;;\n",
        b"::\n",
        b"VOLT 1,2,3\n",
        b"(@\n",
        b"VOLT 1,(@x)\n",
        b"*IDN? extra\n",
        b"x" * 10000 + b"\n",
        b"\r\n",
    ):
        client.send(junk)
    assert client.ask("*IDN?").startswith("PAYGO-BENCH")
    assert len(client.errors()) >= 6
    # a client vanishing mid-line doesn't hurt the others
    rude = Client(server)
    rude.send(b"VOLT 1")
    rude.close()
    other = Client(server)
    assert other.ask("*OPC?") == "1"
    other.close()


def test_state_is_instrument_wide_across_connections(server, client):
    other = Client(server)
    other.send("INST:NSEL 3")
    other.send("NOPE")
    other.sync()
    assert client.ask("INST:NSEL?") == "3"
    assert client.errors() == ['-113,"Undefined header"']
    other.close()


def test_close_drops_clients_and_frees_the_port():
    supply = SimulatedSupply()
    srv = ScpiServer(supply).start()
    c = Client(srv)
    assert c.ask("*OPC?") == "1"
    srv.close()
    with pytest.raises((ConnectionError, OSError)):
        c.ask("*OPC?")
    c.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=0.5)


def test_sim_nvm_trigger_over_scpi(server, client):
    """SIM:TRIGger:NVM <k> arms the selected channel (or a channel list); ? reads the writes to
    go; 0 disarms; a non-integer or a huge count is refused."""
    sup = server.supply
    client.send("INST:NSEL 2;VOLT 5;OUTP ON")
    client.send("SIMulation:TRIGger:NVM 2")
    assert client.ask("SIM:TRIG:NVM?") == "2"
    assert client.ask("SIM:TRIG:NVM? (@1,2)") == "0,2"
    sup.nvm_page_written(2)
    assert client.ask("sim:trig:nvm?") == "1" and client.ask("OUTP?") == "1"
    sup.nvm_page_written(2)
    assert client.ask("OUTP?") == "0" and float(client.ask("MEAS:VOLT?")) == 0.0
    assert client.ask("SIM:TRIG:NVM?") == "0"
    client.send("SIM:TRIG:NVM 4,(@1)")
    assert client.ask("SIM:TRIG:NVM? (@1)") == "4"
    client.send("SIM:TRIG:NVM 0,(@1)")
    assert client.ask("SIM:TRIG:NVM? (@1)") == "0"
    client.send("SIM:TRIG:NVM 2.5")
    client.send("SIM:TRIG:NVM -1")
    client.send("SIM:TRIG:NVM 1000001")
    client.send("SIM:TRIG:NVM")
    assert client.errors() == [
        '-104,"Data type error"',
        '-104,"Data type error"',
        '-222,"Data out of range"',
        '-109,"Missing parameter"',
    ]


def test_sim_time_skip_over_scpi(server, client):
    """SIM:TIME:SKIP <s> lets time pass at once for the DUT on an output that is off (the DUT's
    world takes it); ? reads the seconds skipped since the switch-off. Refused while the output
    is on, or when the DUT is not unpowered; switching on clears the count."""
    sup = server.supply
    taken: list[float] = []
    sup.time_skipper = lambda s: taken.append(s) or True
    client.send("INST:NSEL 1;VOLT 5;OUTP ON")
    client.send("SIM:TIME:SKIP 60")
    assert client.errors()[0].startswith("-221") and taken == []
    client.send("OUTP OFF")
    client.send("SIM:TIME:SKIP 60;SIM:TIME:SKIP 3540")
    assert float(client.ask("SIM:TIME:SKIP?")) == 3600.0 and taken == [60.0, 3540.0]
    sup.time_skipper = lambda s: False  # a DUT still powered (fed through its UART)
    client.send("SIM:TIME:SKIP 1")
    assert client.errors()[0].startswith("-221") and float(client.ask("SIM:TIME:SKIP?")) == 3600.0
    client.send("OUTP ON")
    assert float(client.ask("SIM:TIME:SKIP?")) == 0.0
