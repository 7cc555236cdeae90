"""The link stays bounded and honest, end to end: a whole device-suite session in a child process
on a rig whose `link.port` is the pty relay (bench/equipment/pty_relay.py) in front of the real
simulator, as a user's own relay would stand. The relay turns the DUT's identity reply into a
megabyte line full of escape sequences; what reaches stdout, junit.xml and report.html must stay
short and printable."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.equipment.pty_relay import PtyRelay
from bench.rig import virtual_rig
from bench.station.virtual_rig import sim_options, start_virtual_rig
from tests.selftest.device_suite import ROOT

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="the pty relay needs a pty")


def relay_rig(tmp: Path, port: str, visa: str) -> Path:
    """A 'real' rig: the relay's pty and the simulator's SCPI socket, the simulator's identity."""
    rig = virtual_rig()
    path = tmp / "relay.toml"
    path.write_text(
        f"""[station]
id = "relay"
[link]
port = "{port}"
boot_timeout_s = 3.0
reply_timeout_s = 1.0
[psu]
resource = "{visa}"
profile = "paygo-sim"
settle_timeout_s = 3.0
[dut]
serial_number = "{rig.dut.serial_number}"
starting_code = {rig.dut.starting_code}
secret_key = "{rig.dut.secret_key.reveal()}"
ledger = "ledger.sqlite"
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def relayed(tmp_path) -> Iterator[tuple[PtyRelay, Path]]:
    sim = start_virtual_rig(sim_options(virtual_rig(), str(tmp_path / "device")))
    relay = PtyRelay(sim.port).start()
    try:
        yield relay, relay_rig(tmp_path, relay.url, sim.visa)
    finally:
        relay.close()
        sim.stop()


def megabyte_identity(line: bytes) -> bytes:
    if line.startswith(b"OK model="):
        return b"OK model=\x1b[2J\x07" + b"Z" * 1_000_000
    return line


def test_megabyte_reply_stays_out_of_stdout_junit_and_report(relayed, tmp_path):
    relay, rig = relayed
    relay.rewrite(megabyte_identity)
    out = tmp_path / "run"
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/device/test_identity.py",
            "-k",
            "test_identity and not provisioning",
            "-p",
            "no:cacheprovider",
            "--no-plots",
            "--rig",
            str(rig),
            "--report-dir",
            str(out),
            f"--junitxml={out / 'junit.xml'}",
            f"--html={out / 'report.html'}",
            "--self-contained-html",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert time.monotonic() - started < 120
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    junit = (out / "junit.xml").read_text(encoding="utf-8")
    report = (out / "report.html").read_text(encoding="utf-8")
    # the failure names what happened
    assert "1 line(s) over the link's line limit came and were dropped" in proc.stdout
    assert "[a line of 1000014 bytes, over the link's limit of 16384: dropped] OK model=\\x1b[2J\\x07ZZ" in proc.stdout
    for name, text in (("stdout", proc.stdout), ("junit.xml", junit), ("report.html", report)):
        assert "Z" * 2000 not in text, f"{name} holds the megabyte line"
        assert "\x1b" not in text and "\x07" not in text, f"{name} holds raw control bytes"
    assert len(proc.stdout) < 100_000 and len(junit) < 100_000
    assert relay.to_bench > 1_000_000  # the line did cross the link
