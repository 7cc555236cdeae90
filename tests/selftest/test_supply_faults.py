"""The supply ends safe, whatever happens (docs/bench-faults.md): each fault of a real PSU or of
how a job is stopped, driven through the real bench in a subprocess against the simulated device
and PSU, with the SCPI fault proxy (bench/equipment/scpi_proxy.py) between the bench and the PSU.

The simulator is started here, outside the bench (so it outlives the run and can be asked what
the bench left behind), and the rig file points the bench at it: the device's port directly, the
PSU's resource at the proxy. What the bench claims (its output, its record) is checked against
what the simulated PSU says over its own SCPI socket afterwards."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.equipment.scpi_proxy import ScpiFaultProxy, ScpiMode
from bench.power import Psu
from bench.rig import VIRTUAL_DUT_KEY, virtual_rig
from bench.station.virtual_rig import VirtualRigProcess, sim_options, start_virtual_rig
from tests.selftest import background
from tests.selftest.device_suite import ROOT

POWER_TESTS = "test_power_cycle_reboots_device or test_device_silent_when_unpowered"
DRIFT_TEST = "test_rtc_drift_within_limit"  # powered and polling the DUT for rtc_drift_observe_s
DRIFT_LOG = "tests_device_test_rtc_drift.py__test_rtc_drift_within_limit.log"
RUN_TIMEOUT_S = 120


@contextmanager
def simulator() -> Iterator[VirtualRigProcess]:
    """The simulated device and PSU, started by hand for one scenario only."""
    with tempfile.TemporaryDirectory(prefix="paygo-sim-") as state_dir:
        proc = start_virtual_rig(sim_options(virtual_rig(), state_dir))
        try:
            yield proc
        finally:
            proc.stop()


@contextmanager
def proxied() -> Iterator[tuple[VirtualRigProcess, ScpiFaultProxy]]:
    """The simulator, and the fault proxy in front of its PSU."""
    with simulator() as sim:
        host, port = sim.visa.split("::")[1:3]
        with ScpiFaultProxy((host, int(port))) as proxy:
            yield sim, proxy


def after_the_run(sim: VirtualRigProcess, proxy: ScpiFaultProxy, proc: subprocess.CompletedProcess, out: Path) -> dict:
    """What a scenario hands its test: the run, and what the PSU and the proxy saw, asked before
    they stop."""
    return {
        "proc": proc,
        "out": out,
        "resource": proxy.resource,
        "lines": proxy.lines(),
        "connections": proxy.connections,
        "psu": psu_now(sim),
    }


def rig_file(
    tmp_path: Path, sim: VirtualRigProcess, resource: str, psu_timeout_s: float = 1.5, settle_timeout_s: float = 4.5
) -> Path:
    """A real (not virtual) rig: the simulator's port, the PSU at `resource`; short timeouts, so
    that a PSU fault shows in seconds (the PSU's 1.5 s: 0.5 s was exceeded by a good reply while
    these runs shared two cores with the detection matrix; the rail's settle time three of those,
    so a reconnect while the rail is polled still leaves time to see it fall); the device ledger
    beside the rig file."""
    path = tmp_path / "lab.toml"
    path.write_text(
        f'[station]\nid = "lab-proxied"\n[link]\nport = "{sim.port}"\nboot_timeout_s = 2.0\nreply_timeout_s = 1.0\n'
        f'[psu]\nresource = "{resource}"\nprofile = "paygo-sim"\ntimeout_s = {psu_timeout_s}\nsettle_timeout_s = {settle_timeout_s}\n'
        f'[dut]\nserial_number = "SIM000001"\nstarting_code = 123456789\nsecret_key = "{VIRTUAL_DUT_KEY}"\n'
        'token_count = 1\ntime_divider = 1\nrestricted_digits = false\nledger = "ledger.sqlite"\n'
        "power_cut_cycles = 5\nrtc_drift_observe_s = 30\nrtc_drift_max_observe_s = 30\n",
        encoding="utf-8",
    )
    return path


def bench_command(rig: Path, out: Path, k: str, cli: bool = False) -> list[str]:
    if cli:
        return [sys.executable, "-m", "bench.cli", "run", "--rig", str(rig), "--report-dir", str(out), "-k", k]
    return [
        *(sys.executable, "-m", "pytest", "tests/device", "-p", "no:cacheprovider", "--no-plots"),
        *("--rig", str(rig), "--report-dir", str(out), "-k", k),
    ]


def run_bench(rig: Path, out: Path, k: str) -> subprocess.CompletedProcess:
    return subprocess.run(bench_command(rig, out, k), cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def psu_now(sim: VirtualRigProcess) -> tuple[bool, float]:
    """What the simulated PSU itself says, asked over its own socket (not through the proxy)."""
    with Psu.open(sim.visa, "paygo-sim", sim.channel, timeout_s=1.0) as psu:
        return psu.output_state(), psu.measure_voltage()


def record_of(out: Path) -> dict:
    return json.loads((out / "record.json").read_text(encoding="utf-8"))


def last_lines(proc: subprocess.CompletedProcess, n: int = 2) -> list[str]:
    return proc.stdout.rstrip().splitlines()[-n:]


def when_seen(proxy: ScpiFaultProxy, command: str, then, nth: int = 1, timeout_s: float = 60) -> threading.Thread:
    """Run then() once the bench has sent `command` through the proxy for the nth time (in a thread)."""
    seen = []

    def nth_time(line) -> bool:
        if line.direction == "command" and line.text.startswith(command):
            seen.append(line)
        return len(seen) >= nth

    def watch() -> None:
        if proxy.wait_for(nth_time, timeout_s):
            then()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def assert_never_the_device(rec: dict, proc: subprocess.CompletedProcess, resource: str) -> None:
    """BENCH ERROR (exit 3) naming the PSU; no test counted as the device's failure but the one
    that found the PSU broken, and that one for the PSU's fault, not the device's silence."""
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert (rec["verdict"], rec["exit_status"]) == ("BENCH ERROR", 3), rec["verdict_reason"]
    assert f"PSU at {resource}" in rec["verdict_reason"], rec["verdict_reason"]
    for t in rec["tests"]:
        if t["outcome"] in ("failed", "error"):
            assert f"PSU at {resource}" in t["reason"] and "silent" not in t["reason"], t
    assert last_lines(proc, 1)[0] == f"paygo-bench: BENCH ERROR: {rec['verdict_reason']}"
    assert VIRTUAL_DUT_KEY not in proc.stdout + proc.stderr


# -- a job stopped with a signal ------------------------------------------------------------------


def stopped_with(tmp: Path, how: str, sig: signal.Signals) -> dict:
    """The drift test running, the DUT powered: the run is sent `sig`."""
    out = tmp / "run"
    with proxied() as (sim, proxy):
        rig = rig_file(tmp, sim, proxy.resource)
        proc = subprocess.Popen(
            bench_command(rig, out, DRIFT_TEST, cli=how == "cli"),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not (out / "logs" / DRIFT_LOG).is_file() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # inside the test, the DUT powered
            if not (proc.poll() is None and psu_now(sim)[0]):
                return {"stoppable": False}
            proc.send_signal(sig)
            stopped = time.monotonic()
            stdout, stderr = proc.communicate(timeout=60)
            took = time.monotonic() - stopped
        finally:
            if proc.poll() is None:
                proc.kill()
        done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        return {"stoppable": True, "took": took, **after_the_run(sim, proxy, done, out)}


@background.scenario
def sigterm_to_the_cli(tmp: Path) -> dict:
    return stopped_with(tmp, "cli", signal.SIGTERM)


@background.scenario
def sighup_to_pytest(tmp: Path) -> dict:
    return stopped_with(tmp, "pytest", signal.SIGHUP)


@pytest.mark.parametrize("how, sig", [("cli", signal.SIGTERM), ("pytest", signal.SIGHUP)])
def test_a_stop_signal_tears_down_puts_the_supply_off_and_records_interrupted(request, how, sig):
    """SIGTERM to `paygo-bench run` (what CI and `timeout` send), SIGHUP to a plain pytest run:
    taken as Ctrl-C: the supply switched off and measured off, the record interrupted."""
    seen = background.result(request, {"cli": sigterm_to_the_cli, "pytest": sighup_to_pytest}[how])
    assert seen["stoppable"], "the run ended before it could be stopped"
    assert seen["took"] < 15, "the stopped run took too long to end"
    proc = seen["proc"]
    stdout, stderr = proc.stdout, proc.stderr
    name = sig.name
    assert proc.returncode == 2, stdout[-3000:] + stderr[-2000:]
    rec = record_of(seen["out"])
    assert (rec["status"], rec["verdict"]) == ("interrupted", "INCOMPLETE"), rec["verdict_reason"]
    assert rec["status_reason"].startswith(f"{name}: the run was told to stop"), rec["status_reason"]
    assert rec["verdict_reason"].startswith(f"interrupted ({name}: "), rec["verdict_reason"]
    stopped_test = [t for t in rec["tests"] if t["outcome"] == "interrupted"]
    assert [t["nodeid"] for t in stopped_test] == [f"tests/device/test_rtc_drift.py::{DRIFT_TEST}"], rec["tests"]
    safe = rec["safe_state"]
    assert (safe["wanted"], safe["confirmed"], safe["output"]) == ("off", True, "off") and safe["volts"] < 0.5, safe
    lines = stdout.rstrip().splitlines()
    assert lines[-1] == f"paygo-bench: INCOMPLETE: {rec['verdict_reason']}", lines[-1]
    assert lines[-2].startswith("paygo-bench: supply off, confirmed: rail measured at "), lines[-2]
    on, volts = seen["psu"]  # the truth, from the PSU itself
    assert not on and volts < 0.5, (on, volts)
    assert any(x.text == "OUTP OFF" for x in seen["lines"]) and seen["lines"][-1].text in ("0", "OUTP?")


# -- the PSU's connection closed mid-run --------------------------------------------------------


@background.scenario
def connection_closed_twice(tmp: Path) -> dict:
    out = tmp / "run"
    with proxied() as (sim, proxy):
        rig = rig_file(tmp, sim, proxy.resource)
        when_seen(proxy, "OUTP ON", proxy.close_connections)  # bring-up switched the DUT on
        when_seen(proxy, "OUTP OFF", lambda: proxy.set_mode(ScpiMode.CLOSE, after=2), nth=2)  # bring-up's: the 1st
        return after_the_run(sim, proxy, run_bench(rig, out, POWER_TESTS), out)


def test_a_connection_closed_mid_run_is_reopened_and_the_run_goes_on(request):
    """Dropped while idle (bring-up waiting for the boot banner) and closed on a command (the first
    test's switch-off, polling the rail): the driver reconnects once each time and retries; the
    tests pass, the supply ends off."""
    seen = background.result(request, connection_closed_twice)
    proc, out = seen["proc"], seen["out"]
    rec = record_of(out)
    assert proc.returncode == 2 and rec["verdict"] == "INCOMPLETE", proc.stdout[-3000:]  # -k: not all required
    assert [t["outcome"] for t in rec["tests"]] == ["passed", "passed"], rec["tests"]
    assert seen["connections"] == 3, [x for x in seen["lines"] if x.action == "closed"]
    logs = "".join(p.read_text(encoding="utf-8") for p in (out / "logs").glob("*.log"))
    assert logs.count("reconnecting once") == 2, logs[-3000:]
    safe = rec["safe_state"]
    assert safe["confirmed"] is True and safe["volts"] < 0.5, safe
    assert seen["psu"] == (False, 0.0)


@background.scenario
def psu_gone(tmp: Path) -> dict:
    out = tmp / "run"
    with proxied() as (sim, proxy):
        rig = rig_file(tmp, sim, proxy.resource)
        when_seen(proxy, "OUTP ON", lambda: proxy.set_mode(ScpiMode.REFUSE))
        return after_the_run(sim, proxy, run_bench(rig, out, POWER_TESTS), out)


def test_a_psu_gone_for_good_is_bench_error_and_the_supply_not_confirmed(request):
    seen = background.result(request, psu_gone)
    proc, resource = seen["proc"], seen["resource"]
    rec = record_of(seen["out"])
    assert_never_the_device(rec, proc, resource)
    assert "reconnect" in rec["verdict_reason"], rec["verdict_reason"]
    safe = rec["safe_state"]
    assert (safe["confirmed"], safe["volts"], safe["output"]) == (False, None, None), safe
    assert safe["detail"].startswith(f"PSU at {resource}: ") and "reconnect" in safe["detail"], safe
    supply = last_lines(proc)[0]
    assert supply == f"paygo-bench: supply NOT confirmed off: {safe['detail']}", supply
    assert seen["psu"][0], "the bench could not switch it off: said so, and true"


# -- an output relay that does not open -----------------------------------------------------------


@background.scenario
def stuck_relay(tmp: Path) -> dict:
    out = tmp / "run"
    with proxied() as (sim, proxy):
        rig = rig_file(tmp, sim, proxy.resource)
        proxy.set_mode(ScpiMode.STUCK_OFF)  # bring-up still works: the output starts off
        return after_the_run(sim, proxy, run_bench(rig, out, POWER_TESTS), out)


def test_a_stuck_relay_is_bench_error_with_both_readings_and_the_supply_not_confirmed(request):
    seen = background.result(request, stuck_relay)
    proc, resource = seen["proc"], seen["resource"]
    rec = record_of(seen["out"])
    assert_never_the_device(rec, proc, resource)
    assert "the switch-off did not take (a stuck output relay" in rec["verdict_reason"], rec["verdict_reason"]
    safe = rec["safe_state"]
    assert (safe["confirmed"], safe["output"]) == (False, "on") and safe["volts"] > 11.5, safe
    assert "output still at 12.000 V" in safe["detail"] and "it reports its output on" in safe["detail"], safe
    assert last_lines(proc)[0] == f"paygo-bench: supply NOT confirmed off: {safe['detail']}"
    reason = rec["verdict_reason"]  # the power cycle found it first; the safe state met it again
    assert reason.startswith(f"rig broken: PSU at {resource}: output still at 12.000 V"), reason
    assert "; supply NOT confirmed off: " in reason, reason
    on, volts = seen["psu"]
    assert on and volts > 11.5, "the relay never opened: the record says so, and it is true"


# -- an output-state query that answers the wrong state -----------------------------------------


@background.scenario
def lying_output_query(tmp: Path) -> dict:
    out = tmp / "run"
    with proxied() as (sim, proxy):
        rig = rig_file(tmp, sim, proxy.resource)
        when_seen(proxy, "SIM:TRIG:NVM", lambda: proxy.set_mode(ScpiMode.INVERT_STATE))
        return after_the_run(sim, proxy, run_bench(rig, out, "test_power_cuts"), out)


def test_a_lying_output_query_is_bench_error_never_a_silent_device(request):
    """The power-cut test relies on OUTP? to see its cut: from its first trigger on, the PSU
    answers the opposite state. The bench names the PSU and both readings; the device is not
    blamed; the supply is off (measured, and in truth) yet not confirmed: one reading lies."""
    seen = background.result(request, lying_output_query)
    proc, resource = seen["proc"], seen["resource"]
    rec = record_of(seen["out"])
    assert_never_the_device(rec, proc, resource)
    assert "its output-state query and its measurement disagree" in rec["verdict_reason"], rec["verdict_reason"]
    (cut,) = rec["tests"]
    assert cut["outcome"] == "failed" and "reports its output" in cut["reason"], cut
    safe = rec["safe_state"]
    assert (safe["confirmed"], safe["output"]) == (False, "on") and safe["volts"] < 0.5, safe
    assert f"PSU at {resource} reports its output on, yet measures 0." in safe["detail"], safe
    assert seen["psu"] == (False, 0.0)


# -- a test that never ends -----------------------------------------------------------------------

STUCK_TEST = """
import time


def test_swallows_everything(dut, power_cycle):
    power_cycle.sample("running")  # the supply is on
    while True:
        try:
            time.sleep(0.2)
        except BaseException:
            pass
"""


@background.scenario
def watchdog_stop(tmp: Path) -> tuple[subprocess.CompletedProcess, tuple[bool, float]]:
    (tmp / "test_stuck.py").write_text(STUCK_TEST, encoding="utf-8")
    with simulator() as sim:
        rig = rig_file(tmp, sim, sim.visa)
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", str(tmp / "test_stuck.py"), "-p", "no:cacheprovider", "--no-plots"]
            + ["--rig", str(rig), "--time-limit", "1", "--report-dir", str(tmp / "run")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
        return proc, psu_now(sim)


def test_a_run_the_watchdog_stops_leaves_the_supply_off(request):
    """A test that swallows even the watchdog's interruption: before the run is stopped (exit 3)
    the supply is put in its safe state and that is said; the simulated PSU confirms it is off."""
    proc, psu = background.result(request, watchdog_stop)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "paygo-bench: supply off, confirmed" in proc.stderr, proc.stderr[-2000:]
    assert psu == (False, pytest.approx(0.0, abs=0.05))


# -- an instrument slow within its timeout --------------------------------------------------------


# Slow, but well inside the timeout: 0.9 s of margin for a loaded machine (0.3 s of a 0.5 s
# timeout was once exceeded while the self-tests ran side by side).
SLOW_DELAY_S, SLOW_TIMEOUT_S = 1.1, 2.0


@background.scenario
def slow_psu(tmp: Path) -> dict:
    with proxied() as (sim, proxy):
        proxy.set_mode(ScpiMode.SLOW)
        proxy.delay_s = SLOW_DELAY_S
        out = tmp / "run"
        # every readback takes SLOW_DELAY_S: the rail's fall is seen a few of them later
        rig = rig_file(tmp, sim, proxy.resource, psu_timeout_s=SLOW_TIMEOUT_S, settle_timeout_s=8 * SLOW_DELAY_S)
        return after_the_run(sim, proxy, run_bench(rig, out, "test_power_cycle_reboots_device"), out)


@background.scenario
def brisk_psu(tmp: Path) -> dict:
    with proxied() as (sim, proxy):
        out = tmp / "run"
        return after_the_run(
            sim, proxy, run_bench(rig_file(tmp, sim, proxy.resource), out, "test_power_cycle_reboots_device"), out
        )


def test_a_psu_answering_near_its_timeout_is_said(request):
    """A PSU that answers every query in 1.1 s of its 2 s timeout: no error (it is within its
    rights), the run passes, and the end of the run says the PSU answers slowly and how slowly,
    so hours of run time are not left unexplained."""
    seen = background.result(request, slow_psu)
    proc, resource = seen["proc"], seen["resource"]
    assert proc.returncode == 2 and "1 passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]  # one test
    said = [line for line in proc.stdout.splitlines() if line.startswith(f"the PSU at {resource} answered")]
    assert len(said) == 1 and f"of its {SLOW_TIMEOUT_S:g} s timeout (psu.timeout_s)" in said[0], proc.stdout[-3000:]
    took = float(said[0].split(" in ", 1)[1].split(" s,", 1)[0])
    assert SLOW_DELAY_S <= took < SLOW_TIMEOUT_S


def test_a_psu_answering_briskly_is_not_called_slow(request):
    proc = background.result(request, brisk_psu)["proc"]
    assert proc.returncode == 2 and "1 passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]  # one test
    assert "slow instrument" not in proc.stdout
