"""`paygo-bench run`, the main job: wraps pytest, shows progress, says where the evidence is and
what it concluded, and exits non-zero when the device fails (README, issue 7 "CLI polish")."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.cli import SUITES, build_parser
from bench.rig import virtual_rig
from fixtures.rig import soaked
from tests.selftest.device_suite import ROOT


def paygo_bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_quick_suite_on_the_virtual_rig_passes_with_progress_and_evidence(tmp_path):
    out = tmp_path / "run"
    proc = paygo_bench("run", "--suite", "quick", "--report-dir", str(out), "--operator", "ana")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    progress = [line for line in lines if line.rstrip().endswith("/9]") and " PASSED " in line]
    assert len(progress) == 9, "\n".join(lines[-30:])  # one line per test as it finishes
    assert "test_quick_test_scenario_1" in proc.stdout
    assert f"paygo-bench: report {out / 'report.html'}" in lines
    assert f"paygo-bench: record {out / 'record.json'}" in lines
    assert lines[-1] == "paygo-bench: DEVICE PASSED (9 passed)", lines[-1]
    for name in ("report.html", "record.json", "junit.xml"):
        assert (out / name).is_file(), name
    record = json.loads((out / "record.json").read_text(encoding="utf-8"))
    assert record["status"] == "passed" and record["station"]["operator"] == "ana"
    assert {t["nodeid"] for t in record["tests"]} >= {"tests/device/test_token_procedure.py::test_quick_test_scenario_1"}


def test_a_failing_device_exits_1_naming_the_failed_test(tmp_path):
    out = tmp_path / "run"
    proc = paygo_bench("run", "--suite", "quick", "--report-dir", str(out), "--sim-fault", "count_not_persisted")
    assert proc.returncode == 1, proc.stdout[-3000:]
    last = proc.stdout.splitlines()[-1]
    assert last.startswith("paygo-bench: DEVICE FAILED (8 passed, 1 failed)"), last
    assert "test_persistence.py::test_token_state_survives_power_cycle" in last, last


def test_a_bad_rig_file_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[station]\nid = 3\n", encoding="utf-8")
    proc = paygo_bench("run", "--rig", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "bad.toml" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", ["run", "sim", "serve", "history", "selftest"])
def test_every_command_help_shows_examples(command, capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and f"paygo-bench {command}" in text.split("examples:", 1)[1]


def test_suites_are_what_the_help_says():
    assert set(SUITES) == {"quick", "full", "soak"}
    assert SUITES["quick"] == ["-m", "quick"] and SUITES["full"] == []
    assert SUITES["soak"] == ["--soak-factor", "10"]


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
