"""The DUT's UART over RFC 2217 (a remote rig's ser2net hop): the bench's RFC 2217 server
(bench/equipment/rfc2217_server.py) carries every byte value both ways, serves one client at a
time and stops clean; the link works through pyserial's RFC 2217 client; and the whole device
suite passes on the virtual rig with its UART behind the server (docs/rigs/virtual-rfc2217.toml),
its traffic shown to have gone through it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from bench.detection.runner import bytecode_cache_env
from bench.dut.link import SerialLink
from bench.equipment.rfc2217_server import Rfc2217Server, Rfc2217ServerError
from bench.rig import RigError, load_rig
from tests.selftest import background
from tests.selftest.device_suite import ROOT

RIG = ROOT / "docs" / "rigs" / "virtual-rfc2217.toml"
POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="the far end is a pty")


@pytest.fixture
def served() -> Iterator[tuple[int, Rfc2217Server]]:
    """A pty's far side (the "device", a file descriptor) and a server serving its port."""
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    server = Rfc2217Server(os.ttyname(slave)).start()
    try:
        yield master, server
    finally:
        server.stop()
        os.close(master)
        os.close(slave)


def read_exactly(fd: int, n: int, timeout_s: float = 5.0) -> bytes:
    got, deadline = b"", time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        got += os.read(fd, n - len(got))
    return got


@POSIX_ONLY
def test_every_byte_value_crosses_both_ways_and_one_client_at_a_time(served):
    """All 256 byte values (0xFF is Telnet's IAC, escaped on the wire) reach the device and come
    back; a second client is refused while the first holds the port, served once it has closed."""
    master, server = served
    every = bytes(range(256))
    with serial.serial_for_url(server.url, timeout=2) as client:
        client.write(every)
        assert read_exactly(master, 256) == every
        os.write(master, every)
        assert client.read(256) == every
        with pytest.raises((serial.SerialException, OSError)):  # pyserial's client: a broken pipe
            serial.serial_for_url(server.url, timeout=1)  # refused: the port is exclusive
    assert (server.to_device, server.to_client, server.refused) == (256, 256, 1), server.tally()
    with serial.serial_for_url(server.url, timeout=2) as client:
        client.write(b"again\n")
        assert read_exactly(master, 6) == b"again\n"
    assert server.clients == 2 and server.errors == [], server.tally()


@POSIX_ONLY
def test_the_link_over_rfc2217_waits_without_renegotiating(served):
    """SerialLink opens an rfc2217:// port (pyserial's client refuses a write timeout) and reads
    events and replies through it. Its abort_when() shortens the read timeout: pyserial's client
    would renegotiate the whole remote port on each change (>= 50 ms, twice a wait); 20 waits
    entered and left must not take that."""
    master, server = served
    link = SerialLink(server.url).open()
    try:
        os.write(master, b"! BOOT model=X\n")
        assert link.wait_event("! BOOT", 2) == "! BOOT model=X"
        replier = threading.Thread(target=lambda: read_exactly(master, 7) and os.write(master, b"OK 1\n"))
        replier.start()
        assert link.request("STATUS", 2) == "OK 1"
        replier.join(5)
        t0 = time.monotonic()
        for _ in range(20):
            with link.abort_when(lambda: None):
                pass
        assert time.monotonic() - t0 < 1.0, "abort_when() renegotiated the RFC 2217 port"
    finally:
        link.close()
    assert server.errors == [], server.tally()


@POSIX_ONLY
def test_a_stopped_server_leaves_nothing_and_errors_are_named(tmp_path, served):
    """stop() ends the server's threads and lets the port go (it can be opened exclusively
    again); a port that is not there is an Rfc2217ServerError naming it; the rig key is checked."""
    master, server = served
    with serial.serial_for_url(server.url, timeout=1):
        pass
    server.stop()
    server.stop()  # idempotent
    assert [t.name for t in threading.enumerate() if t.name.startswith("rfc2217")] == []
    serial.serial_for_url(server.port, exclusive=True).close()
    missing = tmp_path / "ttyNONE"
    with pytest.raises(Rfc2217ServerError, match=re.escape(f"cannot open {missing}")):
        Rfc2217Server(str(missing))
    assert load_rig(RIG).sim.uart == "rfc2217"
    bad = tmp_path / "bad.toml"
    bad.write_text('[station]\nid = "x"\n[sim]\nuart = "ser2net"\n')
    with pytest.raises(RigError, match=r'sim\.uart: got .ser2net.*expected one of "direct", "rfc2217"'):
        load_rig(bad)


# -- the whole device suite through the hop -------------------------------------------------------


@background.scenario
def suite_over_rfc2217(tmp: Path) -> dict:
    """`paygo-bench run` of the whole device suite on docs/rigs/virtual-rfc2217.toml."""
    out = tmp / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "--rig", str(RIG), "--report-dir", str(out), "--", "--no-plots"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=bytecode_cache_env(),
    )
    logs = out / "logs"
    read = lambda name: (logs / name).read_text() if (logs / name).is_file() else ""  # noqa: E731
    return {
        "code": proc.returncode,
        "output": proc.stdout[-3000:] + proc.stderr[-2000:],
        "bring_up": read("bring-up.log"),
        "session": read("session.log"),
    }


@POSIX_ONLY
def test_the_whole_device_suite_passes_over_rfc2217(request):
    """The full suite PASSED with every byte through the RFC 2217 server: the link it opened was
    the server's rfc2217:// port, and the server carried the run's traffic, one client, no error."""
    seen = background.result(request, suite_over_rfc2217)
    assert seen["code"] == 0, seen["output"]
    assert re.search(
        r"^paygo-bench: PASSED: (\d+) of \1 required tests ran and passed \(suite full\)$", seen["output"], re.M
    ), seen["output"]
    assert re.search(r"DUT link rfc2217://127\.0\.0\.1:\d+ at 115200 baud", seen["bring_up"]), seen["bring_up"][:2000]
    tally = re.search(
        r"RFC 2217 server rfc2217://127\.0\.0\.1:\d+ for /dev/pts/\d+: (\d+) bytes to the device, (\d+) from it, "
        r"1 client\(s\), 0 refused$",
        seen["session"],
        re.M,
    )
    assert tally, seen["session"][-2000:]
    assert int(tally.group(1)) > 10_000 and int(tally.group(2)) > 10_000, tally.group(0)
