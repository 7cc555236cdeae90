"""One run at a time on a station's instruments (bench/station/station_lock.py): a second run on
the same serial port or PSU is refused in one line naming the holder, a killed holder leaves no
stale lock, and a real rig's run takes the lock before it opens anything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.station.station_lock import StationBusy, StationLock, resource_key
from tests.selftest.device_suite import ROOT
from tests.selftest.test_cli_run import real_rig_file, simulator

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock: POSIX only (no lock is taken on Windows)")

PORT, PSU = "/dev/ttyUSB7", "TCPIP0::10.0.0.9::5025::SOCKET"


def run_on(rig: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """`paygo-bench run` on the rig file, its locks in tmp_path."""
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "--rig", str(rig), "--report-dir", str(tmp_path / "run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PAYGO_BENCH_LOCKS": str(tmp_path)},
    )


def test_a_second_holder_is_refused_naming_the_first_until_it_lets_go(tmp_path):
    first = StationLock((PORT, PSU), "pid 1, run night-1, station lab-1", tmp_path)
    second = StationLock(("/dev/ttyUSB9", PSU.lower()), "pid 2, run night-2, station lab-2", tmp_path)
    first.acquire()
    with pytest.raises(StationBusy, match=r"^TCPIP0::10\.0\.0\.9::5025::SOCKET is in use by pid 1, run night-1, "):
        second.acquire()  # the same PSU, named in another case
    assert not second._held, "a refused acquisition keeps none of its locks"
    first.release()
    second.acquire()
    second.release()


def test_two_names_of_one_port_are_one_lock(tmp_path):
    (tmp_path / "ttyACM0").write_text("")
    os.symlink(tmp_path / "ttyACM0", tmp_path / "station-dut")
    assert resource_key(str(tmp_path / "station-dut")) == resource_key(str(tmp_path / "ttyACM0"))


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    code = (
        "import sys, time; from pathlib import Path; from bench.station.station_lock import StationLock; "
        f"StationLock(({PORT!r},), 'pid x, run killed', Path({str(tmp_path)!r})).acquire(); "
        "print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StationBusy, match="in use by pid x, run killed"):
            StationLock((PORT,), "me", tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    lock = StationLock((PORT,), "me", tmp_path)
    lock.acquire()  # the kernel let the killed process's lock go
    lock.release()


def test_a_run_on_a_busy_station_is_refused_before_it_opens_anything(tmp_path):
    with simulator() as sim:
        rig = real_rig_file(tmp_path / "lab.toml", sim.port, sim.visa)
        held = StationLock((sim.port,), "pid 4242, run 20261207T000000Z-lab-broken, station lab-broken", tmp_path)
        held.acquire()
        try:
            start = time.monotonic()
            proc = run_on(rig, tmp_path)
        finally:
            held.release()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out[-3000:]
    assert f"station lab-broken: {resource_key(sim.port)} is in use by pid 4242, run 20261207T000000Z-lab-broken" in out
    assert "Traceback" not in out
    assert time.monotonic() - start < 60
    assert "supply not switched by this run" in out, "the PSU was opened before the lock was checked"


def test_a_real_rigs_port_is_opened_exclusively(tmp_path):
    """Another program holding the port exclusively (pyserial's flock) makes the run a bench error
    naming the port; the run's own port is opened with the same lock."""
    import serial

    with simulator() as sim:
        rig = real_rig_file(tmp_path / "lab.toml", sim.port, sim.visa)
        other = serial.Serial(sim.port, exclusive=True)
        try:
            proc = run_on(rig, tmp_path)
        finally:
            other.close()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out[-3000:]
    assert f"cannot open serial port {sim.port}" in out and "exclusively lock" in out, out[-3000:]
