"""The power-cut device test (tests/device/test_power_cuts.py) on its two paths: the PSU's
NVM-write trigger (the virtual rig's default profile) and random delays cut by the bench (any
other PSU profile); a failure's replay line reproduces it alone."""

from __future__ import annotations

import csv
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.selftest import background
from tests.selftest.device_suite import run_device_suite

NODE = "tests/device/test_power_cuts.py::test_state_survives_power_cuts_during_nvm_writes"
ONLY = ("-k", "test_state_survives_power_cuts_during_nvm_writes")


def random_delay_rig(tmp_path, cycles: int = 120) -> str:
    """The virtual rig with a PSU profile that has no NVM-write trigger, a rail that collapses
    at once (as a MOSFET in the supply line would) and slower page writes (a wider window)."""
    path = tmp_path / "random-cuts.toml"
    path.write_text(
        '[station]\nid = "virtual-random-cuts"\n[psu]\nprofile = "keysight-e36"\n'
        f"[dut]\npower_cut_cycles = {cycles}\n[sim]\npsu_decay_s = 0.0\nnvm_page_write_ms = 2.0\n"
    )
    return str(path)


# the whole command a failure prints: pytest, the test, the rig's faults, the replay point
HINT = r"replay it alone: (pytest \S+ --sim-fault torn_write_corrupts_state --power-cut-replay \d+:\d+:p\d+)"


@background.scenario
def trigger_and_replay(tmp: Path) -> dict:
    """The failing run, then (if it named one) its replay on the faulty and on the good device:
    the faulty one run with exactly the arguments of the printed command, nothing added."""
    seen = {"full": run_device_suite(tmp / "full", faults=["torn_write_corrupts_state"], args=ONLY)}
    results, output = seen["full"]
    m = re.search(HINT, results[NODE].message + output) if NODE in results else None
    if m:
        _, node, *hint_args = shlex.split(m.group(1))
        seen["again"] = run_device_suite(tmp / "replay", args=hint_args, paths=(node,))
        replay = hint_args[hint_args.index("--power-cut-replay") :]
        seen["good"] = run_device_suite(tmp / "good", args=(*ONLY, *replay))
    return seen


def test_trigger_failure_names_a_replay_that_fails_alone(request):
    """torn_write_corrupts_state: the trigger path fails at its first cut and prints the replay
    line; that replay, run alone, fails the same way after one cut, and passes on the good
    device."""
    seen = background.result(request, trigger_and_replay)
    results, output = seen["full"]
    assert results[NODE].outcome == "failed", output
    m = re.search(HINT, results[NODE].message + output)
    assert m, results[NODE].message
    again, output = seen["again"]
    assert again[NODE].outcome == "failed", output
    assert "power cut 1 of 1" in again[NODE].message + output
    good, output = seen["good"]
    assert good[NODE].outcome == "passed", output


@background.scenario
def random_delays(tmp: Path) -> dict:
    rig = random_delay_rig(tmp)
    return {
        "tmp": tmp,
        "good": run_device_suite(tmp / "good", args=ONLY + ("--rig", rig, "--power-cut-seed", "7")),
        "bad": run_device_suite(
            tmp / "bad", faults=["torn_write_corrupts_state"], args=ONLY + ("--rig", rig, "--power-cut-seed", "7")
        ),
    }


def test_random_delay_path_passes_the_good_device_and_catches_a_torn_write(request):
    """Without the PSU trigger the bench cuts at seeded random delays within the time an uncut
    entry takes: the good device passes all of them, the firmware that writes in place is
    caught, with a replay line giving the delay."""
    seen = background.result(request, random_delays)
    good, output = seen["good"]
    assert good[NODE].outcome == "passed", output
    assert_telemetry(seen["tmp"] / "good")
    bad, output = seen["bad"]
    assert bad[NODE].outcome == "failed", output
    assert re.search(
        rf"replay it alone: pytest {NODE} --rig \S+random-cuts.toml --sim-fault torn_write_corrupts_state "
        r"--power-cut-replay 7:\d+:\d+\.\d+ms",
        bad[NODE].message + output,
    ), bad[NODE].message


def assert_telemetry(out_dir) -> None:
    """The run recorded the PSU's readings: summary measurements in the JUnit properties, and a
    trace next to the test's traffic log with a reading after every boot (the simulated board
    draws 45 mA running, nothing while the rail is cut)."""
    props = {
        p.get("name"): p.get("value")
        for case in ET.parse(out_dir / "junit.xml").getroot().iter("testcase")
        for p in case.iter("property")
    }
    for name in ("telemetry_samples", "supply_voltage_min", "supply_voltage_max", "supply_current_running"):
        assert f"measurement:{name}" in props, sorted(props)
    assert props["measurement:supply_current_running"].startswith("45.00 mA")
    (trace,) = (out_dir / "run" / "logs").glob("*power_cuts*.power.csv")
    rows = list(csv.DictReader(trace.open()))
    booted = [r for r in rows if r["label"] == "booted"]
    assert len(booted) >= 40 and all(float(r["amps"]) > 0.04 for r in booted)
    assert any(r["label"] == "cut" and float(r["volts"]) == 0.0 and float(r["amps"]) == 0.0 for r in rows)
    log = next((out_dir / "run" / "logs").glob("*power_cuts*.log")).read_text()
    assert "power: telemetry booted: 12.000 V 45.00 mA" in log


def test_run_short_of_its_planned_entries_is_incomplete(tmp_path):
    """Acknowledged means kept: a run whose cut budget (here 5, used up by the first entry's
    sweep) ends before it has cut an invalid entry and a lockout-starting one before and after
    their replies is not covered, never passed, and its message names what is missing; the
    counts per kind are in its measurements."""
    rig = tmp_path / "few-cuts.toml"
    rig.write_text('[station]\nid = "virtual-few-cuts"\n[dut]\npower_cut_cycles = 5\n')
    results, output = run_device_suite(tmp_path / "run", args=ONLY + ("--rig", str(rig), "--power-cut-seed", "7"))
    case = results[NODE]
    assert case.outcome == "skipped", output
    assert "not covered: the power-cut run ended without" in case.message, case.message
    for missing in ("an invalid entry cut before its reply", "a lockout-starting entry cut after its reply"):
        assert missing in case.message, case.message
    props = {
        p.get("name"): p.get("value")
        for case in ET.parse(tmp_path / "run" / "junit.xml").getroot().iter("testcase")
        for p in case.iter("property")
    }
    assert props.get("measurement:cuts_after_reply_lockout", "").startswith("0"), sorted(props)
