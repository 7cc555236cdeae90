"""The link stays bounded and honest (docs/bench-faults.md): the real SerialLink, reference
adapter, PSU driver and power control against the real simulator in its own process, with the
pty relay (bench/equipment/pty_relay.py) between the bench and the device injecting each fault.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.dut.errors import LinkSilent, ProtocolError
from bench.dut.link import SerialLink
from bench.dut.reference import ReferenceAdapter
from bench.dut.traffic import TrafficLog
from bench.equipment.pty_relay import PtyRelay
from bench.power.driver import Psu
from bench.rig import Rig, virtual_rig
from bench.station.power_control import PowerControl
from bench.station.profile import provisioning_for
from bench.station.rig_session import ensure_alive
from bench.station.virtual_rig import VirtualRigProcess, sim_options, start_virtual_rig

pytestmark = pytest.mark.skipif(not hasattr(__import__("os"), "openpty"), reason="the pty relay needs a pty")

REPLY_TIMEOUT_S = 0.5


@dataclass
class Bench:
    rig: Rig
    sim: VirtualRigProcess
    relay: PtyRelay
    link: SerialLink
    psu: Psu
    dut: ReferenceAdapter
    log_path: Path

    def power(self) -> PowerControl:
        return PowerControl(self.psu, self.dut, self.link, self.rig)

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8")

    def settle(self) -> None:
        """Read and drop everything the relay still has for the bench, until it has been idle a while."""
        deadline, quiet = time.monotonic() + 15, 0
        while quiet < 10 and time.monotonic() < deadline:
            busy = self.relay.flooding or bool(self.relay._out) or self.link._port.in_waiting > 0  # type: ignore[union-attr]
            self.link.drain(discard_partial=True)
            quiet = 0 if busy else quiet + 1
            time.sleep(0.02)


@pytest.fixture
def bench(tmp_path) -> Iterator[Bench]:
    """The simulated device powered and booted, reached through a relay."""
    rig = virtual_rig()
    sim = start_virtual_rig(sim_options(rig, str(tmp_path / "device")))
    relay = PtyRelay(sim.port).start()
    log = TrafficLog(rig.secrets())
    log.to_file(tmp_path / "traffic.log")
    link = SerialLink(relay.url, rig.link.baud, log).open()
    psu = Psu.open(sim.visa, rig.psu.profile, sim.channel, timeout_s=rig.psu.timeout_s)
    try:
        dut = ReferenceAdapter(link, REPLY_TIMEOUT_S)
        psu.set_voltage(rig.psu.voltage)
        since = time.monotonic()
        psu.output(True)
        dut.wait_boot(rig.link.boot_timeout_s, since=since)
        yield Bench(rig, sim, relay, link, psu, dut, tmp_path / "traffic.log")
    finally:
        link.close()
        psu.close()
        relay.close()
        sim.stop()
        log.close()


def test_reply_cut_by_a_reset_does_not_hide_the_banner(bench):
    """A reply cut mid-line, then a reboot: the recovery at test start (ensure_alive: ping, power
    cycle, ping) sees the banner instead of declaring the rig broken."""
    session = SimpleNamespace(adapter=bench.dut, psu=bench.psu, power=bench.power(), link=bench.link)
    bench.relay.cut_next_line(7)
    with pytest.raises(LinkSilent) as ei:
        bench.dut.identify()
    assert "7 bytes came without a newline, starting 'OK mode'" in str(ei.value)
    bench.relay.cut_next_line(3)
    ensure_alive(session)  # ping: its "OK" cut to no newline -> silent -> power cycle -> banner -> ping
    assert "DUT silent at test start: power cycling once to recover" in bench.log_text()
    assert "dropped the start of a line the reset cut off" in bench.log_text()
    bench.dut.ping()


def test_fragment_read_only_after_the_reset_is_cut_off_the_banner(bench):
    """The fragment still unread when the reset comes: read with the banner, glued onto it."""
    bench.relay.cut_next_line(6)
    bench.link.send("ID")  # the bench does not wait for it: its start stays in the port's buffer
    time.sleep(0.2)
    since = time.monotonic()
    bench.psu.output(False)
    time.sleep(bench.rig.sim.psu_decay_s + 0.3)
    bench.psu.output(True)
    banner = bench.dut.wait_boot(bench.rig.link.boot_timeout_s, since=since)
    assert banner.line.startswith("! BOOT model=") and banner.fields["reset"] == "power"
    assert "dropped the start of a line the reset cut off: 'OK mod'" in bench.log_text()


def test_flood_without_newline_is_bounded_and_counted(bench):
    """Bytes that never end a line, faster than any UART: the buffer stays at the line limit,
    the wait costs a fraction of a core, the silence says how many bytes came, and the link
    answers again once the flood stops."""
    bench.relay.flood(2.5, rate_bytes_s=4_000_000)
    time.sleep(0.3)
    wall, cpu = time.monotonic(), time.thread_time()
    with pytest.raises(LinkSilent) as ei:
        bench.dut._call("PING", timeout_s=2.0)
    wall, cpu = time.monotonic() - wall, time.thread_time() - cpu
    assert len(bench.link._buf) <= bench.link.max_line
    came = ei.value.unterminated
    assert came > 1_000_000 and f"{came} bytes came without a newline, starting '\\xf0\\x0f" in str(ei.value)
    assert cpu < 0.6 * wall, f"{cpu:.2f} s of CPU in {wall:.2f} s reading the flood"
    assert "over the link's limit of 16384: dropped" in bench.log_text()
    bench.settle()
    bench.dut.ping()


def test_megabyte_line_dropped_with_its_size(bench):
    """A line of a megabyte is dropped whole: logged as its size and first bytes, never copied."""
    bench.relay.inject(b"\x1b[2J" + b"X" * 1_000_000 + b"\n")
    bench.dut.ping()
    text = bench.log_text()
    assert "[a line of 1000004 bytes, over the link's limit of 16384: dropped] \\x1b[2JXXXX" in text
    assert len(text) < 20_000 and "\x1b" not in text


def test_long_reply_with_control_bytes_shown_short_and_escaped(bench):
    """A reply within the line limit but long and full of escape sequences: the error names it
    cut to a line with its length, control bytes escaped; the log file has it whole, escaped."""
    bench.relay.rewrite(lambda line: b"\x07\x1b[31m" + b"Y" * 5000 if line.startswith(b"OK model=") else line)
    with pytest.raises(ProtocolError) as ei:
        bench.dut.identify()
    message = str(ei.value)
    assert "\x1b" not in message and "\x07" not in message and len(message) < 600, message
    assert "\\x07\\x1b[31mYYY" in message and "5006 characters in all" in message
    text = bench.log_text()
    assert "\\x07\\x1b[31m" + "Y" * 5000 in text and "\x1b" not in text


def _key_in(encoding: str, key: bytes) -> bytes:
    return {
        "base64": base64.b64encode(key),
        "colon hex": ":".join(f"{b:02X}" for b in key).encode(),
        "decimal": str(int.from_bytes(key, "little")).encode(),
    }[encoding]


@pytest.mark.parametrize("encoding", ["base64", "colon hex", "decimal"])
def test_key_echoed_in_another_encoding_is_masked_and_counted(bench, encoding):
    """A device that echoes its key encoded: masked in the log file and counted as a leak (what
    test_provisioning_round_trip fails on)."""
    key = bytes.fromhex(bench.rig.dut.secret_key.reveal())
    echoed = _key_in(encoding, key)
    bench.relay.rewrite(lambda line: line + b" dbg=" + echoed if line.startswith(b"OK sn=") else line)
    bench.dut.provision(provisioning_for(bench.rig.dut))
    assert bench.link.log.leaks and bench.link.log.leaks[-1].endswith(" dbg=***")
    assert echoed.decode() not in bench.log_text()
