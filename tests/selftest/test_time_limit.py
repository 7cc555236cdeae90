"""Per-test time limits (bench/station/time_limit.py, bench/station/watchdog.py,
fixtures/watchdog.py): derived from the rig's timeouts with a margin, and kept by a watchdog that
fails the test naming its limit and how it was derived, whether the test waits on the DUT or
sleeps, and never leaves the run hanging. The run is a real pytest session in a child process
on the virtual rig, its tests a lab's own file using the plugin's fixtures."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.report.junit import read_junit
from bench.rig import virtual_rig
from bench.station.time_limit import MARGIN, time_limit
from bench.station.watchdog import Watchdog
from tests.selftest import background
from tests.selftest.device_suite import ROOT


def test_limit_derived_from_the_rig_timeouts():
    rig = virtual_rig()
    plain = time_limit(rig)
    # 60 exchanges x (2 + 2) s + 4 cycles x (5 + 0.06 + 0 + 2 + 4 x 2 + 2) s = 240 + 68.24
    assert plain.seconds == pytest.approx(MARGIN * 308.24)
    assert "link.reply_timeout_s + psu.timeout_s = 4 s" in plain.derivation
    assert "psu.settle_timeout_s + psu.min_off_s" in plain.derivation and str(plain).startswith("616 s (2 x (")
    slow = dataclasses.replace(rig, psu=dataclasses.replace(rig.psu, timeout_s=10.0))
    assert time_limit(slow).seconds > plain.seconds  # a slower instrument is given longer


def test_marker_adds_rig_keys_and_token_tests_their_lockout_budget():
    rig = virtual_rig()
    base = time_limit(rig).seconds
    cuts = time_limit(rig, {"cycles": "power_cut_cycles"})
    assert cuts.seconds == pytest.approx(base + MARGIN * rig.dut.power_cut_cycles * 17.06)
    assert "(4 + dut.power_cut_cycles 200) power cycles" in cuts.derivation
    drift = time_limit(rig, {"wait": "rtc_drift_max_observe_s"})
    assert drift.seconds == pytest.approx(base + MARGIN * rig.dut.rtc_drift_max_observe_s)
    tokens = time_limit(rig, enters_tokens=True)
    assert "dut.lockout_wait_budget_s 60 s" in tokens.derivation
    assert time_limit(rig, {"exchanges": 10}).seconds == pytest.approx(base + MARGIN * 10 * 4)


@pytest.mark.parametrize(
    "marker,problem",
    [
        ({"cycle": 3}, "time_limit(cycle=...): unknown; expected cycles, wait, exchanges"),
        ({"wait": "no_such_key"}, "time_limit(wait='no_such_key'): the rig has no numeric [dut] key"),
        ({"wait": "serial_number"}, "the rig has no numeric [dut] key 'serial_number'"),
        ({"cycles": -1}, "time_limit(cycles=-1): expected >= 0"),
        ({"exchanges": True}, "expected a number or a [dut] key name, got True"),
    ],
)
def test_bad_marker_is_a_clear_error(marker, problem):
    with pytest.raises(ValueError, match=r"^time_limit\(") as ei:
        time_limit(virtual_rig(), marker)
    assert problem in str(ei.value)


def test_watchdog_stopped_in_time_takes_no_step():
    dog = Watchdog(0.3, "limit", None, grace_s=0.2).start()
    dog.stop()
    time.sleep(0.8)
    assert dog.fired == 0


LAB_TESTS = """
import time

import pytest


def test_keeps_asking(dut):
    while True:
        dut.ping()


def test_sleeps(dut):
    while True:
        time.sleep(0.5)


@pytest.mark.time_limit(wait=0.1)
def test_quick(dut):
    dut.ping()
"""


@background.scenario
def runaway_tests(tmp: Path) -> tuple[subprocess.CompletedProcess, float, Path]:
    (tmp / "test_lab.py").write_text(LAB_TESTS, encoding="utf-8")
    out = tmp / "run"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(tmp / "test_lab.py"), "-p", "no:cacheprovider", "--no-plots"]
        + [
            "--time-limit",
            "2",
            "--report-dir",
            str(out),
            f"--junitxml={out / 'junit.xml'}",
            "-o",
            "console_output_style=classic",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc, time.monotonic() - started, out


def test_runaway_tests_fail_naming_their_limit(request):
    """--time-limit 2: a test stuck asking the DUT fails at 2 s through the link, one stuck in a
    sleep at 2 s + grace (5 s) through SIGALRM; the quick one passes and the run ends FAILED."""
    proc, took, out = background.result(request, runaway_tests)
    results = read_junit(out / "junit.xml")
    outcomes = {name.rsplit("::", 1)[-1]: r.outcome for name, r in results.items()}
    assert outcomes == {"test_keeps_asking": "failed", "test_sleeps": "failed", "test_quick": "passed"}, proc.stdout[
        -3000:
    ]
    asking = next(r.message for n, r in results.items() if n.endswith("test_keeps_asking"))
    sleeping = next(r.message for n, r in results.items() if n.endswith("test_sleeps"))
    assert (
        "the test ran past its time limit of 2 s (--time-limit); the link was waiting for the reply to 'PING'" in asking
    )
    assert (
        "ran past its time limit of 2 s (--time-limit); it was not waiting on the DUT, so it was interrupted"
        in sleeping
    )
    assert proc.returncode == 1 and "paygo-bench: FAILED" in proc.stdout
    assert took < 60, f"the run took {took:.0f} s"


STUCK_TEST = """
import time


def test_swallows_everything(dut):
    while True:
        try:
            time.sleep(0.2)
        except BaseException:
            pass
"""


@background.scenario
def swallowed_limit(tmp: Path) -> tuple[subprocess.CompletedProcess, float]:
    (tmp / "test_stuck.py").write_text(STUCK_TEST, encoding="utf-8")
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(tmp / "test_stuck.py"), "-p", "no:cacheprovider", "--no-plots"]
        + ["--time-limit", "1", "--report-dir", str(tmp / "run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc, time.monotonic() - started


def test_test_that_swallows_the_limit_stops_the_run(request):
    """A test that catches even the watchdog's exception: the run stops with exit 3 (bench error)
    at the limit plus twice the grace, saying why and where every thread was."""
    proc, took = background.result(request, swallowed_limit)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "the test ran past its time limit of 1 s (--time-limit); it did not stop 10 s after that" in proc.stderr
    assert "test_swallows_everything" in proc.stderr  # the stack dump shows where it was stuck
    assert took < 60
