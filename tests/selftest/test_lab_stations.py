"""Several stations from one host (docs/lab.md): `paygo-bench run --rig a --rig b ...` runs one
isolated `paygo-bench run` per station at once; a faulty device makes the lab FAILED while the
other stations still PASSED in the table and in their own record; a broken station is BENCH
ERROR without stopping the others; Ctrl-C stops every station with its supply left safe; a
mistaken lab is refused before anything starts, every mistake at once."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from bench.lab.child import ChildRun
from bench.lab.lab import lab_verdict
from bench.lab.plan import LabError, Station, from_lab_file, from_rig_files
from bench.rig import virtual_rig
from tests.selftest import background
from tests.selftest.device_suite import ROOT
from tests.selftest.sigint import sigint_default
from tests.selftest.test_cli_run import paygo_bench, record_of

RIGS = ROOT / "docs" / "rigs"
FOUR = [str(RIGS / f"lab-virtual-{x}.toml") for x in "abcd"]  # lab-c's device accepts a used token again
BROKEN = """[station]
id = "broken"
[link]
port = "/dev/paygo-bench-no-such-port"
[psu]
resource = "TCPIP0::127.0.0.1::9::SOCKET"
timeout_s = 0.5
[dut]
serial_number = "LAB000001"
starting_code = 123456789
secret_key = "a29ab82edc5fbbc41ec9530f6dac86b1"
"""


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@background.scenario
def five_stations(tmp: Path):
    broken = tmp / "broken.toml"
    broken.write_text(BROKEN, encoding="utf-8")
    out = tmp / "lab"
    args = [a for rig in [*FOUR, str(broken)] for a in ("--rig", rig)]
    return out, paygo_bench("run", *args, "--suite", "quick", "--report-dir", str(out), timeout=300)


def test_four_virtual_stations_one_faulty_and_a_broken_one_from_one_command(request):
    out, proc = background.result(request, five_stations)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-2000:]  # FAILED: the worst verdict
    assert lines[-1].startswith("paygo-bench: FAILED: 5 stations in "), lines[-1]
    assert lines[-1].endswith(": 1 FAILED (lab-c), 1 BENCH ERROR (broken), 3 PASSED"), lines[-1]
    ids = ("lab-a", "lab-b", "lab-c", "lab-d", "broken")
    table = {line.split()[0]: line.split()[2] for line in lines if line.split()[:1] and line.split()[0] in ids}
    assert table == {
        "lab-a": "PASSED",
        "lab-b": "PASSED",
        "lab-c": "FAILED",
        "lab-d": "PASSED",
        "broken": "BENCH",
    }, table
    lab = json.loads((out / "lab.json").read_text(encoding="utf-8"))
    assert (lab["verdict"], lab["exit_status"]) == ("FAILED", 1)
    verdicts = {s["station"]: s["verdict"] for s in lab["stations"]}
    assert verdicts == {
        "lab-a": "PASSED",
        "lab-b": "PASSED",
        "lab-c": "FAILED",
        "lab-d": "PASSED",
        "broken": "BENCH ERROR",
    }
    spans = []
    for station, verdict in verdicts.items():  # each station's own run directory and record
        record = record_of(out / station)
        assert record["station"]["id"] == station and record["verdict"] == verdict, (station, record["verdict"])
        if station != "broken":
            assert record["status"] == "finished" and record["suite"]["name"] == "quick", station
            assert record["safe_state"]["confirmed"] is True, station
            spans.append((_time(record["started_at"]), _time(record["ended_at"])))
    assert record_of(out / "lab-c")["station"]["sim_faults"] == ["reused_token_accepted"]
    failed = {t["nodeid"] for t in record_of(out / "lab-c")["tests"] if t["outcome"] == "failed"}
    assert "tests/device/test_tokens.py::test_reused_token_refused" in failed
    assert "cannot open serial port /dev/paygo-bench-no-such-port" in record_of(out / "broken")["verdict_reason"]
    # side by side, not one after another: every run started before any of the four ended
    assert max(s for s, _ in spans) < min(e for _, e in spans), spans
    assert "test 9 of 9" in proc.stdout  # the live lines (one per change: not a terminal)


@background.scenario
def stopped_lab(tmp: Path):
    out = tmp / "lab"
    argv = [sys.executable, "-m", "bench.cli", "run", "--rig", FOUR[0], "--rig", FOUR[1], "--report-dir", str(out)]
    proc = subprocess.Popen(sigint_default(argv), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen: list[str] = []
    running: set[str] = set()
    deadline = time.monotonic() + 120
    for line in proc.stdout:  # both stations in their suite: then Ctrl-C
        seen.append(line)
        if " test " in line and " of " in line:
            running.add(line.split()[1])
        if running >= {"lab-a", "lab-b"} or time.monotonic() > deadline:
            proc.send_signal(signal.SIGINT)
            break
    seen += proc.stdout.readlines()
    return out, proc.wait(timeout=180), "".join(seen)


def test_ctrl_c_stops_every_station_each_record_interrupted_and_its_supply_safe(request):
    out, code, text = background.result(request, stopped_lab)
    assert code == 2, text[-4000:]
    assert "paygo-bench: Ctrl-C: stopping every station" in text
    assert text.splitlines()[-1].startswith("paygo-bench: INCOMPLETE: 2 stations in "), text[-2000:]
    for station in ("lab-a", "lab-b"):
        record = record_of(out / station)
        assert (record["status"], record["verdict"]) == ("interrupted", "INCOMPLETE"), station
        assert record["safe_state"]["confirmed"] is True and record["safe_state"]["output"] == "off", station


def test_a_lab_file_lists_its_stations_and_every_mistake_at_once_with_file_and_line(tmp_path):
    stations = from_lab_file(str(RIGS / "lab-4-virtual.toml"))
    assert [s.id for s in stations] == ["lab-a", "lab-b", "lab-c", "lab-d"]
    assert [s.rig.sim.faults for s in stations] == [(), (), ("reused_token_accepted",), ()]
    assert stations[2].operator == "ana"
    lab = tmp_path / "lab.toml"
    lab.write_text(
        f'name = "x"\n\n[[station]]\nrig = "{FOUR[0]}"\nsuite = "quik"\n\n[[station]]\nrig = "{FOUR[0]}"\n\n'
        '[[station]]\nrgi = "a.toml"\n\n[[station]]\nrig = "missing.toml"\n',
        encoding="utf-8",
    )
    with pytest.raises(LabError) as e:
        from_lab_file(str(lab))
    where = f"{lab}: line "
    assert [line.split(": ", 2)[1] for line in e.value.lines] == [
        "line 1",
        "line 5",
        "line 8",
        "line 10",
        "line 11",
        "line 14",
    ], e.value.lines
    assert all(line.startswith(where) for line in e.value.lines)
    text = "\n".join(e.value.lines)
    for part in ("name: unknown key", "suite: no suite profile 'quik'", "station.id: lab-a also in", "rig: missing",
                 "rgi: unknown key", f"{tmp_path / 'missing.toml'}: not found"):  # fmt: skip
        assert part in text, text
    proc = paygo_bench("run", "--lab", str(lab))  # the command: exit 3, no stack trace, nothing started
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.splitlines()[-1] == "paygo-bench: BENCH ERROR: 6 error(s) above; no station started"


def test_two_stations_on_one_serial_port_are_refused_before_anything_starts(tmp_path):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(BROKEN.replace('"broken"', '"bench-a"'), encoding="utf-8")
    b.write_text(
        BROKEN.replace('"broken"', '"bench-b"').replace("::9::", "::10::").replace("LAB000001", "LAB000002"),
        encoding="utf-8",
    )
    with pytest.raises(LabError) as e:
        from_rig_files([str(a), str(b)])
    assert e.value.lines == [
        f"{b}: link.port: /dev/paygo-bench-no-such-port also in {a} (station 'bench-a'); expected each station "
        "its own (two runs on one would each judge a device the other changes)"
    ]


def test_the_lab_verdict_is_the_worst_and_a_child_that_dies_is_bench_error(tmp_path):
    assert lab_verdict(["PASSED", "BENCH ERROR", "FAILED"]) == "FAILED"
    assert lab_verdict(["PASSED", "INCOMPLETE", "BENCH ERROR"]) == "BENCH ERROR"
    assert lab_verdict(["PASSED", "INCOMPLETE"]) == "INCOMPLETE"
    assert lab_verdict(["PASSED", "PASSED"]) == "PASSED"
    station = Station(virtual_rig(), "virtual", "virtual")
    dies = "import os, signal; print('paygo-bench: PASSED: so far', flush=True); os.kill(os.getpid(), signal.SIGKILL)"
    lies = "print('paygo-bench: PASSED: all fine'); raise SystemExit(3)"
    for code, expected in ((dies, "was killed by signal 9 without a verdict"), (lies, "ended with exit status 3")):
        events: queue.Queue = queue.Queue()
        run = ChildRun(station, [sys.executable, "-c", code], tmp_path, tmp_path / "station.log", events)
        run.start()
        deadline = time.monotonic() + 30
        while not run.finished and time.monotonic() < deadline:
            events.get(timeout=30)
        assert run.verdict == "BENCH ERROR" and expected in run.line, run.line
