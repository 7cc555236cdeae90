"""`paygo-bench run`, the main job: wraps pytest, shows progress, says where the evidence is and
ends with one honest verdict, PASSED, FAILED, INCOMPLETE or BENCH ERROR, each with its own exit
code (README, docs/record.md); all through the real command in a subprocess."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.cli import build_parser, run_verdict, supply_line
from bench.fixtures.rig import soaked
from bench.locations import REPORTS_ENV_VAR
from bench.record.verdict import EXIT_CODES, USAGE_EXIT
from bench.rig import VIRTUAL_DUT_KEY, virtual_rig
from bench.station.virtual_rig import VirtualRigProcess, sim_options, start_virtual_rig
from tests.selftest import background
from tests.selftest.device_suite import ROOT

QUICK_REQUIRED = 7  # bench/suites/quick.toml


def paygo_bench(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def record_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "record.json").read_text(encoding="utf-8"))


@background.scenario
def quick_suite(tmp: Path):
    out = tmp / "run"
    return out, paygo_bench("run", "--suite", "quick", "--report-dir", str(out), "--operator", "ana")


def test_quick_suite_on_the_virtual_rig_passes_with_progress_and_evidence(request):
    out, proc = background.result(request, quick_suite)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    progress = [line for line in lines if line.rstrip().endswith("/9]") and " PASSED " in line]
    assert len(progress) == 9, "\n".join(lines[-30:])  # one line per test as it finishes
    assert "test_quick_test_scenario_1" in proc.stdout
    assert f"paygo-bench: report {out / 'report.html'}" in lines
    assert f"paygo-bench: record {out / 'record.json'}" in lines
    verdict = f"paygo-bench: PASSED: {QUICK_REQUIRED} of {QUICK_REQUIRED} required tests ran and passed (suite quick)"
    assert lines[-1] == verdict, lines[-1]
    assert lines.count(verdict) == 2, "pytest's own output should end with the verdict too"
    supply = lines[-2]  # where the supply was left, measured, before the verdict (twice too)
    assert supply.startswith("paygo-bench: supply off, confirmed: rail measured at ") and lines.count(supply) == 2
    for name in ("report.html", "record.json", "junit.xml"):
        assert (out / name).is_file(), name
    page = (out / "report.html").read_text(encoding="utf-8")
    assert (
        f'<title id="head-title">PASSED - DUT SIM000001 - station virtual - {QUICK_REQUIRED} of {QUICK_REQUIRED} '
        "required (suite quick)</title>"
    ) in page
    record = record_of(out)
    assert (record["verdict"], record["status"], record["exit_status"]) == ("PASSED", "finished", 0)
    assert record["suite"] == {
        "name": "quick",
        "title": "Quick check",
        "required": QUICK_REQUIRED,
        "covered": QUICK_REQUIRED,
        "missing": [],
    }
    assert record["station"]["operator"] == "ana"
    assert {t["nodeid"] for t in record["tests"]} >= {
        "tests/device/test_token_procedure.py::test_quick_test_scenario_1"
    }


@background.scenario
def failing_device(tmp: Path):
    out = tmp / "run"
    return out, paygo_bench("run", "--suite", "quick", "--report-dir", str(out), "--sim-fault", "count_not_persisted")


def test_a_failing_device_exits_1_naming_the_failed_test(request):
    out, proc = background.result(request, failing_device)
    assert proc.returncode == 1, proc.stdout[-3000:]
    last = proc.stdout.splitlines()[-1]
    assert last.startswith(
        "paygo-bench: FAILED: 1 failed (test_persistence.py::test_token_state_survives_power_cycle: "
    ), last
    assert record_of(out)["verdict"] == "FAILED" and record_of(out)["exit_status"] == 1


@background.scenario
def nothing_selected(tmp: Path):
    out = tmp / "run"
    return out, paygo_bench("run", "-k", "nomatch", "--report-dir", str(out))


def test_nothing_selected_is_incomplete_exit_2_never_passed(request):
    out, proc = background.result(request, nothing_selected)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-2000:]
    last = proc.stdout.splitlines()[-1]
    rec = record_of(out)
    m = rec["suite"]["required"]
    assert m >= 45 and rec["suite"]["covered"] == 0 and len(rec["suite"]["missing"]) == m, rec["suite"]
    assert (
        last
        == f"paygo-bench: INCOMPLETE: no device test ran (all {m} deselected); 0 of {m} required tests ran (suite full)"
    )
    assert (rec["verdict"], rec["exit_status"], rec["status"]) == ("INCOMPLETE", 2, "finished")
    assert {x["why"] for x in rec["suite"]["missing"]} == {"deselected (-k, -m or --deselect)"}


@background.scenario
def status_only_dut(tmp: Path):
    rig = tmp / "status-only.toml"
    rig.write_text('[station]\nid = "lab-ts"\n[dut]\ncapabilities = ["status"]\nsuite = "quick"\n', encoding="utf-8")
    out = tmp / "run"
    return out, paygo_bench("run", "--rig", str(rig), "--report-dir", str(out))


def test_a_required_test_the_dut_cannot_be_given_is_incomplete_naming_it(request):
    """A DUT that reports its status but takes no tokens over the link (a rig that declares only
    `status`), quick suite required: every token test is not covered, the verdict INCOMPLETE."""
    out, proc = background.result(request, status_only_dut)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-2000:]
    rec = record_of(out)
    missing = {x["nodeid"]: x["why"] for x in rec["suite"]["missing"]}
    assert rec["verdict"] == "INCOMPLETE" and rec["suite"]["name"] == "quick", rec["verdict_reason"]
    assert "tests/device/test_tokens.py::test_valid_token_accepted" in missing, missing
    assert all(why.startswith("not covered: ") and "'token'" in why for why in missing.values()), missing
    assert rec["suite"]["covered"] == QUICK_REQUIRED - len(missing) >= 1, rec["suite"]
    assert not any(t["outcome"] in ("failed", "error") for t in rec["tests"])
    last = proc.stdout.splitlines()[-1]
    assert last.startswith(
        f"paygo-bench: INCOMPLETE: {rec['suite']['covered']} of {QUICK_REQUIRED} required tests "
        "ran (suite quick); missing: "
    ), last
    assert "(not covered: " in last and "'token'" in last


# -- the rig broke: never the device's fault -------------------------------------------------------


def closed_port() -> int:
    """A loopback TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def real_rig_file(path: Path, port: str, psu: str, profile: str = "paygo-sim") -> Path:
    """A real (not virtual) rig: its port and PSU are whatever the test names."""
    path.write_text(
        f'[station]\nid = "lab-broken"\n[link]\nport = "{port}"\nboot_timeout_s = 2.0\n'
        f'[psu]\nresource = "{psu}"\nprofile = "{profile}"\ntimeout_s = 1.0\n'
        f'[dut]\nserial_number = "SIM000001"\nstarting_code = 123456789\nsecret_key = "{VIRTUAL_DUT_KEY}"\n'
        "token_count = 1\ntime_divider = 1\nrestricted_digits = false\n",
        encoding="utf-8",
    )
    return path


@contextmanager
def simulator() -> Iterator[VirtualRigProcess]:
    """The simulated device and PSU, started by hand: a working port and a working PSU to pair
    with a broken one."""
    with tempfile.TemporaryDirectory(prefix="paygo-sim-") as state_dir:
        proc = start_virtual_rig(sim_options(virtual_rig(), state_dir))
        try:
            yield proc
        finally:
            proc.stop()


def assert_bench_error(proc: subprocess.CompletedProcess, out: Path, names: str) -> dict:
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-2000:]
    last = proc.stdout.splitlines()[-1]
    assert last.startswith("paygo-bench: BENCH ERROR: rig broken: ") and names in last, last
    rec = record_of(out)
    assert (rec["verdict"], rec["exit_status"]) == ("BENCH ERROR", 3) and names in rec["verdict_reason"]
    assert not any(t["outcome"] == "failed" for t in rec["tests"]), rec["tests"]  # never blamed on the device
    assert VIRTUAL_DUT_KEY not in proc.stdout + proc.stderr
    return rec


@background.scenario
def missing_serial_port(tmp: Path):
    with simulator() as sim:
        rig = real_rig_file(tmp / "lab.toml", "/dev/paygo-no-such-port", sim.visa)  # a PSU that works
        out = tmp / "run"
        return out, paygo_bench("run", "--rig", str(rig), "--suite", "quick", "--report-dir", str(out))


def test_a_missing_serial_port_is_bench_error_naming_the_port(request):
    out, proc = background.result(request, missing_serial_port)
    rec = assert_bench_error(proc, out, "cannot open serial port /dev/paygo-no-such-port")
    skipped = [t for t in rec["tests"] if t["outcome"] == "skipped"]
    assert skipped and all(t["reason"].startswith("rig broken: ") for t in skipped), rec["tests"]


@background.scenario
def silent_psu(tmp: Path):
    resource = f"TCPIP0::127.0.0.1::{closed_port()}::SOCKET"
    with simulator() as sim:
        rig = real_rig_file(tmp / "lab.toml", sim.port, resource)  # a port that works
        out = tmp / "run"
        return resource, out, paygo_bench("run", "--rig", str(rig), "--suite", "quick", "--report-dir", str(out))


def test_a_silent_psu_is_bench_error_naming_the_psu(request):
    resource, out, proc = background.result(request, silent_psu)
    assert_bench_error(proc, out, f"PSU at {resource}")


def test_a_bad_rig_file_is_bench_error_in_one_line_exit_3(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[station]\nid = 3\n", encoding="utf-8")
    proc = paygo_bench("run", "--rig", str(bad))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("paygo-bench: BENCH ERROR: ") and "bad.toml: station.id" in err[0], err
    assert "Traceback" not in proc.stdout + proc.stderr


def test_an_unknown_suite_in_the_rig_file_is_bench_error_naming_file_and_key(tmp_path):
    rig = tmp_path / "lab.toml"
    rig.write_text('[station]\nid = "lab-1"\n[dut]\nsuite = "certify"\n', encoding="utf-8")
    proc = paygo_bench("run", "--rig", str(rig))
    assert proc.returncode == 3
    assert proc.stderr.strip() == (
        f"paygo-bench: BENCH ERROR: {rig}: dut.suite: no suite profile 'certify'; known: full, quick, soak, token"
    ), proc.stderr


@pytest.mark.parametrize("args", [["run", "--suite", "nope"], ["run", "--bogus"], ["nope"], []])
def test_command_line_usage_errors_exit_4(args):
    proc = paygo_bench(*args)
    assert proc.returncode == USAGE_EXIT == 4, proc.stderr
    assert "usage: paygo-bench" in proc.stderr and "Traceback" not in proc.stderr


def test_an_unknown_sim_fault_is_refused_before_anything_starts(tmp_path):
    """One line naming the fault and the known ones, exit 4, and no run directory made."""
    reports = tmp_path / "reports"
    proc = paygo_bench(
        "run", "--sim-fault", "count_not_persisted", "--sim-fault", "nope", env={REPORTS_ENV_VAR: str(reports)}
    )
    assert proc.returncode == USAGE_EXIT == 4, proc.stdout + proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "paygo-bench run: error: --sim-fault: unknown simulator fault(s) nope; known: "
    )
    assert "count_not_persisted" in err[0] and "Traceback" not in proc.stdout + proc.stderr
    assert not reports.exists() or not any(reports.iterdir()), list(reports.iterdir())


def installed_copy(site: Path) -> Path:
    """The bench laid out as its wheel installs it (pyproject's package-dir: fixtures/ as
    bench/fixtures, tests/device/ as bench/device_suite), with no checkout around it."""
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "bench", site / "bench", ignore=skip)
    shutil.copytree(ROOT / "fixtures", site / "bench" / "fixtures", ignore=skip)
    shutil.copytree(ROOT / "tests" / "device", site / "bench" / "device_suite", ignore=skip)
    return site


@background.scenario
def outside_a_checkout(tmp: Path):
    site, lab = installed_copy(tmp / "site"), tmp / "lab"
    lab.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in (REPORTS_ENV_VAR, "PAYGO_BENCH_RIG")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "--suite", "quick"],
        cwd=lab,
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "PYTHONPATH": str(site)},
    )
    return site, lab, proc


def test_outside_a_checkout_a_good_device_passes(request):
    """Installed, run from an empty folder: the suite in the package judges the device (an
    earlier bench exited 1, 'device failed', for want of the checkout's files)."""
    site, lab, proc = background.result(request, outside_a_checkout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert (
        proc.stdout.splitlines()[-1]
        == f"paygo-bench: PASSED: {QUICK_REQUIRED} of {QUICK_REQUIRED} required tests ran and passed (suite quick)"
    ), out
    # ./reports: no checkout to hold them (and the embedded results database, history.sqlite)
    (run_dir,) = [d for d in (lab / "reports").iterdir() if d.is_dir()]
    assert record_of(run_dir)["verdict"] == "PASSED" and (run_dir / "report.html").is_file()
    assert f"rootdir: {site / 'bench' / 'device_suite'}" in proc.stdout, out  # the package's suite, not ours


def test_version_names_the_package_and_exits_0():
    proc = paygo_bench("--version")
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"paygo-bench \d+\.\d+\.\d+(\+[0-9a-f]+)?\n", proc.stdout), proc.stdout


def test_without_a_record_from_this_run_the_verdict_is_never_the_devices(tmp_path):
    record = tmp_path / "record.json"
    assert run_verdict(record, 4)[0] == "BENCH ERROR"  # pytest refused to start: no record
    assert run_verdict(record, 2)[0] == "INCOMPLETE"  # Ctrl-C before the session began
    record.write_text(json.dumps({"verdict": "PASSED", "verdict_reason": "7 of 7", "exit_status": 0}), encoding="utf-8")
    assert run_verdict(record, 0) == ("PASSED", "PASSED: 7 of 7")
    verdict, line = run_verdict(record, 0, stale=True)  # left by an earlier run in the same directory
    assert verdict == "BENCH ERROR" and "not written by this run" in line
    verdict, line = run_verdict(record, 3)  # its last write failed: pytest ended otherwise
    assert verdict == "BENCH ERROR" and "it says PASSED (exit status 0), pytest ended with 3" in line
    record.write_text(json.dumps({"verdict": None, "verdict_reason": None, "status": "running"}), encoding="utf-8")
    assert "no verdict (status 'running')" in run_verdict(record, 0)[1]
    assert supply_line(record) == "supply not switched by this run (no test opened the PSU)"
    record.write_text(
        json.dumps({"safe_state": {"wanted": "off", "confirmed": False, "detail": "PSU at X: output still at 12 V"}}),
        encoding="utf-8",
    )
    assert supply_line(record) == "supply NOT confirmed off: PSU at X: output still at 12 V"
    assert supply_line(record, stale=True).startswith("supply state not known (no record from this run)")
    assert supply_line(tmp_path / "none.json").startswith("supply state not known")


# -- help --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "check", "sim", "serve", "history", "selftest"])
def test_every_command_help_shows_examples(command, capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and f"paygo-bench {command}" in text.split("examples:", 1)[1]


def test_the_run_help_lists_the_exit_codes_the_run_uses(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    text = capsys.readouterr().out
    codes = text.split("exit status", 1)[1]
    listed = {
        m.group(2): int(m.group(1))
        for m in re.finditer(r"^  (\d)  (PASSED|FAILED|INCOMPLETE|BENCH ERROR|usage error) ", codes, re.M)
    }
    assert listed == {**EXIT_CODES, "usage error": USAGE_EXIT}, listed
    assert "--suite {full,quick,soak,token}" in text


def test_soak_scales_only_the_endurance_settings():
    rig = virtual_rig()
    soak = soaked(rig, 10)
    assert soak.dut.power_cut_cycles == 10 * rig.dut.power_cut_cycles
    assert soak.dut.rtc_drift_observe_s == 10 * rig.dut.rtc_drift_observe_s
    assert soak.dut.rtc_drift_max_observe_s == 10 * rig.dut.rtc_drift_max_observe_s
    assert soaked(rig, 1) is rig
    assert (soak.dut.rtc_drift_limit_ppm, soak.psu, soak.link) == (rig.dut.rtc_drift_limit_ppm, rig.psu, rig.link)
    with pytest.raises(pytest.UsageError, match="--soak-factor: got 0"):
        soaked(rig, 0)
