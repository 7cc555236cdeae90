"""When the rig breaks, the bench says what broke and skips the rest instead of failing each test,
and the run ends BENCH ERROR (exit 3), never blamed on the device; a silent DUT is reported naming
the port and what was last seen."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.report.junit import read_junit
from tests.selftest import background
from tests.selftest.device_suite import ROOT
from tests.selftest.sigint import sigint_default


def run_scenario(tmp_path, name: str, *args: str):
    """tests/selftest/scenarios/<name>.py in a child pytest, SIGINT at its default (the
    interrupted scenario sends itself one)."""
    junit = tmp_path / "junit.xml"
    proc = subprocess.run(
        sigint_default(
            [
                sys.executable,
                "-m",
                "pytest",
                f"tests/selftest/scenarios/{name}.py",
                "-p",
                "no:cacheprovider",
                "--report-dir",
                str(tmp_path / "run"),
                f"--junitxml={junit}",
                "-o",
                "junit_family=xunit2",
                *args,
            ]
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return read_junit(junit), proc.stdout + proc.stderr, proc.returncode


@background.scenario
def broken_rig(tmp: Path):
    return tmp, *run_scenario(tmp, "broken_rig")


@background.scenario
def unpowered(tmp: Path):
    return tmp, *run_scenario(tmp, "unpowered")


@background.scenario
def interrupted(tmp: Path):
    return tmp, *run_scenario(tmp, "interrupted")


@background.scenario
def bad_rig_file(tmp: Path) -> subprocess.CompletedProcess:
    rig = tmp / "bad.toml"
    rig.write_text('[station]\nid = "lab-1"\n[psu]\nresource = "virtual"\nvolatge = 12\n')
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests/device", "--rig", str(rig), "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def verdict_of(tmp_path, code: int) -> tuple[str, str]:
    """The record's verdict and reason; the exit code the session ended with is the record's."""
    rec = json.loads((tmp_path / "run" / "record.json").read_text(encoding="utf-8"))
    assert rec["exit_status"] == code, (rec["exit_status"], code)
    return rec["verdict"], rec["verdict_reason"]


def test_vanished_port_skips_the_remaining_device_tests(request):
    tmp_path, results, output, code = background.result(request, broken_rig)
    prefix = "tests/selftest/scenarios/broken_rig.py::"
    first = results[prefix + "test_port_vanishes"]
    assert first.outcome == "failed", output
    assert "vanished" in first.message, first.message
    for name in ("test_after_one", "test_after_two"):
        r = results[prefix + name]
        assert r.outcome == "skipped", (name, r, output)
        assert r.message.startswith("rig broken: serial port") and "vanished" in r.message, r.message
    assert results[prefix + "test_without_rig"].outcome == "passed"
    assert "Traceback" not in output.split("short test summary")[-1]
    # the test whose port vanished failed, but the rig broke: the run says so, not that the DUT failed
    verdict, reason = verdict_of(tmp_path, code)
    assert (verdict, code) == ("BENCH ERROR", 3), (verdict, reason)
    assert reason.startswith("rig broken: serial port") and "vanished" in reason, reason
    assert output.rstrip().splitlines()[-1] == f"paygo-bench: BENCH ERROR: {reason}"


def test_unpowered_dut_is_reported_as_silent_naming_the_port(request):
    tmp_path, results, output, code = background.result(request, unpowered)
    r = results["tests/selftest/scenarios/unpowered.py::test_request_while_off"]
    assert r.outcome == "failed", output
    assert "no reply to 'PING'" in r.message and "silent" in r.message, r.message
    assert "/dev/pts/" in r.message or "socket://" in r.message, r.message
    assert verdict_of(tmp_path, code)[0] == "FAILED" and code == 1


def test_bad_rig_file_is_one_line_naming_the_key(request):
    proc = background.result(request, bad_rig_file)
    # pytest's usage error: without a rig there is no record (paygo-bench run says BENCH ERROR, exit 3)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, err
    assert "bad.toml" in err[0] and "psu.volatge" in err[0], err[0]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_interrupted_run_leaves_the_psu_in_its_safe_state(request):
    """Ctrl-C mid-test: pytest still tears the session down, the PSU output is switched off (the
    virtual rig's safe_state) and nothing switches it on again; the rail is measured down and the
    PSU asked, and the record, the log and the output say so."""
    tmp_path, results, output, code = background.result(request, interrupted)
    assert "KeyboardInterrupt" in output or "Interrupted" in output, output
    verdict, reason = verdict_of(tmp_path, code)
    assert (verdict, code) == ("INCOMPLETE", 2) and reason.startswith("interrupted ("), reason
    session_log = (tmp_path / "run" / "logs" / "session.log").read_text()
    psu_commands = [line.split(" PTX ", 1)[1] for line in session_log.splitlines() if " PTX " in line]
    off = len(psu_commands) - 1 - psu_commands[::-1].index("OUTP OFF")
    assert "OUTP ON" not in psu_commands[off:] and psu_commands[-1] == "OUTP?", session_log[-2000:]
    assert "-- safe state: supply off, confirmed: rail measured at " in session_log, session_log[-2000:]
    safe = json.loads((tmp_path / "run" / "record.json").read_text(encoding="utf-8"))["safe_state"]
    assert (safe["wanted"], safe["confirmed"], safe["output"]) == ("off", True, "off") and safe["volts"] < 0.5, safe
    assert "paygo-bench: supply off, confirmed: rail measured at " in output
