"""record.json, one per DUT run (docs/record.md): valid against its schema however the run ends
(finished, failed, Ctrl-C, killed, crashed), with its verdict and the suite's coverage, in
agreement with the JUnit XML, its files tied by SHA-256, its times in UTC, and never holding a
device key."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from bench.fixtures.dut import log_name
from bench.measure.measurement import Measurement
from bench.record.model import (
    DutRecord,
    MeasurementRecord,
    RunRecord,
    StationRecord,
    TestRecord,
    utc_now,
)
from bench.record.schema import SCHEMA, SCHEMA_FILE, SCHEMA_VERSION, schema_json
from bench.record.writer import RECORD_NAME, write_json_atomic, write_record
from bench.rig import VIRTUAL_DUT_KEY
from bench.version import bench_version
from tests.selftest import background
from tests.selftest.device_suite import ROOT, run_device_suite
from tests.selftest.sigint import sigint_default

VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
JUNIT_OUTCOME = {
    "passed": "passed",
    "failed": "failed",
    "error": "error",
    "skipped": "skipped",
    "not covered": "skipped",
}
POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals (SIGINT/SIGKILL to a child)")
# The scenario of a POSIX-only test: started in the background only where its test can run.
posix_scenario = background.scenario if sys.platform != "win32" else (lambda fn: fn)


def assert_valid(doc: dict) -> None:
    errors = sorted(VALIDATOR.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "record.json does not match its schema:\n" + "\n".join(
        f"  {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors[:10]
    )


def load_record(run_dir: Path) -> dict:
    doc = json.loads((run_dir / RECORD_NAME).read_text(encoding="utf-8"))
    assert_valid(doc)
    return doc


def utc(text: str) -> datetime:
    assert text.endswith("Z"), f"{text!r} is not marked UTC"
    when = datetime.fromisoformat(text)
    assert when.utcoffset() == timedelta(0), text
    return when


# -- a whole run, checked against its JUnit XML ---------------------------------------------------


@background.scenario
def passing_run(tmp: Path) -> dict:
    before = datetime.now(UTC)
    results, output = run_device_suite(tmp, args=("--report-dir", str(tmp), "-k", "identity or keeps_time"))
    return {"tmp": tmp, "results": results, "output": output, "before": before, "after": datetime.now(UTC)}


def test_record_of_a_passing_run_is_valid_and_agrees_with_junit(request):
    seen = background.result(request, passing_run)
    tmp_path, results, output, before, after = (seen[k] for k in ("tmp", "results", "output", "before", "after"))
    rec = load_record(tmp_path)
    assert rec["status"] == "finished" and rec["status_reason"] is None, output
    # every selected test passed, but the full suite requires them all: -k left most out
    assert rec["verdict"] == "INCOMPLETE" and rec["exit_status"] == 2, rec["verdict_reason"]
    suite = rec["suite"]
    assert suite["name"] == "full" and suite["covered"] == len(results) and suite["required"] >= 45, suite
    assert len(suite["missing"]) == suite["required"] - suite["covered"]
    assert {m["why"] for m in suite["missing"]} == {"deselected (-k, -m or --deselect)"}, suite["missing"]
    assert rec["verdict_reason"].startswith(
        f"{len(results)} of {suite['required']} required tests ran (suite full); missing: "
    ), rec["verdict_reason"]
    assert rec["schema_version"] == SCHEMA_VERSION and rec["run_id"] == tmp_path.name
    assert rec["bench"]["version"] == bench_version()
    assert rec["station"]["id"] == "virtual" and rec["station"]["virtual"] is True
    assert rec["dut"]["profile_serial"] == "SIM000001" and rec["dut"]["identity"]["model"], rec["dut"]
    assert rec["instruments"][0]["idn"], rec["instruments"]
    safe = rec["safe_state"]  # switched off at the end and measured so
    assert (safe["wanted"], safe["confirmed"], safe["output"]) == ("off", True, "off") and safe["volts"] < 0.5, safe

    # the same tests with the same outcomes as junit.xml, and counts that add up
    assert {t["nodeid"]: JUNIT_OUTCOME[t["outcome"]] for t in rec["tests"]} == {
        n: r.outcome for n, r in results.items()
    }
    assert len(rec["tests"]) == rec["counts"]["collected"] == rec["counts"]["passed"] == len(results) >= 3

    # every measurement has its value, unit, limits and outcome
    measurements = [m for t in rec["tests"] for m in t["measurements"]]
    limited = [m for m in measurements if m["low"] is not None or m["high"] is not None]
    assert limited, f"no measurement with limits recorded: {measurements}"
    for m in limited:
        assert isinstance(m["value"], (int, float)) and m["unit"] and m["limits"] != "(no limit)", m
        assert m["outcome"] == "PASS", m

    # every file named exists with the recorded hash; the serial logs and junit.xml are among them
    files = [a for t in rec["tests"] for a in t["attachments"]] + rec["attachments"]
    for a in files:
        data = (tmp_path / a["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == a["sha256"] and len(data) == a["size"], a["path"]
    assert all(any(a["title"] == "serial traffic log" for a in t["attachments"]) for t in rec["tests"])
    assert any(a["path"] == "junit.xml" for a in rec["attachments"]), [a["path"] for a in rec["attachments"]]
    assert not any(a["path"] == RECORD_NAME for a in files)

    # times: UTC, inside the run, in order
    start, end = utc(rec["started_at"]), utc(rec["ended_at"])
    assert before - timedelta(seconds=1) <= start <= end <= after + timedelta(seconds=1), (start, end)
    assert rec["duration_s"] >= sum(t["duration_s"] for t in rec["tests"]) * 0.9
    for t in rec["tests"]:
        assert start <= utc(t["started_at"]) <= utc(t["ended_at"]) <= end, t["nodeid"]
    assert VIRTUAL_DUT_KEY.lower() not in (tmp_path / RECORD_NAME).read_text(encoding="utf-8").lower()


@background.scenario
def faulty_device(tmp: Path):
    return tmp, *run_device_suite(
        tmp, faults=["count_not_persisted"], args=("--report-dir", str(tmp), "-k", "persistence")
    )


def test_record_of_a_faulty_device_says_failed_with_each_reason(request):
    tmp_path, results, output = background.result(request, faulty_device)
    rec = load_record(tmp_path)
    failed = {n: r for n, r in results.items() if r.outcome == "failed"}
    assert failed, output
    assert rec["verdict"] == "FAILED" and rec["exit_status"] == 1 and rec["status"] == "finished", rec["verdict"]
    assert rec["station"]["sim_faults"] == ["count_not_persisted"]
    by_id = {t["nodeid"]: t for t in rec["tests"]}
    assert {n for n, t in by_id.items() if t["outcome"] == "failed"} == set(failed)
    for nodeid, result in failed.items():
        reason = by_id[nodeid]["reason"]
        assert reason and "\n" not in reason and "Traceback" not in reason, reason
        assert reason == result.message.splitlines()[0].strip(), (reason, result.message)
    assert rec["counts"]["failed"] == len(failed) and rec["verdict_reason"].startswith(f"{len(failed)} failed (")


@background.scenario
def hdk_identity(tmp: Path):
    return tmp, *run_device_suite(
        tmp, args=("--report-dir", str(tmp), "--rig", "docs/rigs/hdk-virtual.toml", "-k", "test_identity")
    )


def test_not_covered_checks_are_recorded_as_such(request):
    """On the HDK adapter the identity checks cannot be made: 'not covered', never 'passed'."""
    tmp_path, results, output = background.result(request, hdk_identity)
    rec = load_record(tmp_path)
    assert results and all(r.outcome == "skipped" for r in results.values()), output
    assert {t["outcome"] for t in rec["tests"]} == {"not covered"}, rec["tests"]
    assert all(t["reason"].startswith("not covered: the hdk adapter") for t in rec["tests"]), rec["tests"]
    assert rec["verdict"] == "INCOMPLETE" and rec["exit_status"] == 2  # nothing ran: never PASSED
    assert rec["verdict_reason"].startswith("no device test ran (every one skipped or not covered)"), rec[
        "verdict_reason"
    ]
    rig_file = ROOT / "docs" / "rigs" / "hdk-virtual.toml"
    assert rec["station"]["rig_sha256"] == hashlib.sha256(rig_file.read_bytes()).hexdigest()


@background.scenario
def reported_identity(tmp: Path):
    run_dir = tmp / "run"
    return run_dir, *finish(start_suite(run_dir, "-k", "provisioning_round_trip"))


def test_the_identity_the_dut_reported_is_recorded(request):
    """Bring-up reads the DUT's ID (fixtures/dut.py); the record carries it in place of the boot
    banner's partial account, with the capabilities the DUT declared."""
    run_dir, returncode, output = background.result(request, reported_identity)
    assert returncode == 2, output  # INCOMPLETE: one test of the full suite
    rec = load_record(run_dir)
    assert rec["tests"][0]["outcome"] == "passed", rec["tests"]
    ident = rec["dut"]["identity"]
    assert ident["source"] == "ID", ident
    assert ident["model"] == "PAYGO-SIM" and "token" in ident["capabilities"], ident
    assert ident["serial_number"] in (None, "SIM000001"), ident  # None: factory-blank at bring-up


# -- runs that do not end normally ----------------------------------------------------------------


def start_suite(run_dir: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """The device suite in a child, SIGINT at its default (the Ctrl-C test sends it one)."""
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "tests/device",
        "-q",
        "-p",
        "no:cacheprovider",
        "--no-plots",
        "--report-dir",
        str(run_dir),
        f"--junitxml={run_dir / 'junit.xml'}",
        *args,
    ]
    return subprocess.Popen(
        sigint_default(cmd), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )


def finish(proc: subprocess.Popen, timeout_s: float = 60) -> tuple[int, str]:
    """Its exit status and output, once it has ended."""
    output, _ = proc.communicate(timeout=timeout_s)
    return proc.returncode, output


def wait_for_tests_done(proc: subprocess.Popen, run_dir: Path, n: int, timeout_s: float = 20.0) -> dict:
    """Poll record.json (readable at any moment: it is replaced atomically) until n tests are in."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the suite ended before it could be stopped:\n{proc.stdout.read()}"
        try:
            doc = json.loads((run_dir / RECORD_NAME).read_text(encoding="utf-8"))
        except FileNotFoundError:
            doc = None
        if doc is not None:
            assert_valid(doc)  # every intermediate state is a valid record
            if len(doc["tests"]) >= n:
                return doc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no {n} tests recorded within {timeout_s} s")


@posix_scenario
def ctrl_c(tmp: Path) -> dict:
    # two quick identity tests, then the RTC test that holds the DUT off for ~2 s: stopped there
    proc = start_suite(tmp, "-k", "identity or keeps_time")
    try:
        running = wait_for_tests_done(proc, tmp, 2)
        # the record is written as test 2 ends, before test 3 starts: wait until test 3 has its log
        # (its dut fixture opened it), or the signal could land between the two and stop no test
        third = tmp / "logs" / log_name("tests/device/test_timekeeping.py::test_rtc_keeps_time_while_unpowered")
        deadline = time.monotonic() + 20.0
        while not third.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert third.exists(), "the RTC test never started"
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return {"tmp": tmp, "running": running, "returncode": proc.returncode, "output": output}


@POSIX_ONLY
def test_ctrl_c_leaves_a_valid_record_marked_interrupted(request):
    seen = background.result(request, ctrl_c)
    running, output = seen["running"], seen["output"]
    assert running["status"] == "running" and running["ended_at"] is None
    rec = load_record(seen["tmp"])
    assert rec["status"] == "interrupted" and rec["exit_status"] == 2, (rec["status"], output)
    assert rec["verdict"] == "INCOMPLETE" and seen["returncode"] == 2
    assert rec["verdict_reason"].startswith("interrupted (KeyboardInterrupt (Ctrl-C or SIGINT)); 2 of "), rec[
        "verdict_reason"
    ]
    assert "KeyboardInterrupt" in rec["status_reason"], rec["status_reason"]
    assert utc(rec["ended_at"]) >= utc(rec["started_at"])
    stopped = [t for t in rec["tests"] if t["outcome"] == "interrupted"]
    assert [t["nodeid"] for t in stopped] == [
        "tests/device/test_timekeeping.py::test_rtc_keeps_time_while_unpowered"
    ], (rec["tests"], output)
    assert "KeyboardInterrupt" in stopped[0]["reason"] and rec["counts"]["interrupted"] == 1
    assert rec["counts"]["passed"] == 2 and rec["counts"]["collected"] == 3


def with_plugin(tmp: Path, name: str, code: str) -> dict:
    """The environment of a child that can load tmp/<name>.py as a plugin (-p name)."""
    (tmp / f"{name}.py").write_text(code, encoding="utf-8")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp), os.environ.get("PYTHONPATH")]))}


CRASHING_PLUGIN = """
def pytest_runtest_logreport(report):
    if report.when == 'call':
        raise RuntimeError('a plugin crashed')
"""


@background.scenario
def crash_inside_pytest(tmp: Path):
    env = with_plugin(tmp, "crashing_plugin", CRASHING_PLUGIN)
    run_dir = tmp / "run"
    proc = start_suite(
        run_dir,
        "-p",
        "crashing_plugin",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        "-k",
        "test_identity",
        env=env,
    )
    return run_dir, *finish(proc)


def test_a_crash_inside_pytest_leaves_a_valid_record_marked_bench_error(request):
    """A bug in a plugin (pytest's INTERNALERROR) ends the run mid-test: the record says BENCH
    ERROR, why, and which test was running."""
    run_dir, returncode, output = background.result(request, crash_inside_pytest)
    assert returncode == 3, output
    rec = load_record(run_dir)
    assert rec["verdict"] == "BENCH ERROR" and rec["exit_status"] == 3 and rec["status"] == "interrupted", rec[
        "verdict"
    ]
    assert rec["verdict_reason"].startswith("internal error: ") and "a plugin crashed" in rec["verdict_reason"]
    assert "a plugin crashed" in rec["status_reason"], rec["status_reason"]
    assert [(t["nodeid"], t["outcome"]) for t in rec["tests"]] == [
        ("tests/device/test_identity.py::test_identity", "interrupted")
    ], rec["tests"]


@posix_scenario
def killed_run(tmp: Path):
    proc = start_suite(tmp, "-k", "identity or keeps_time")
    try:
        running = wait_for_tests_done(proc, tmp, 1)
        proc.kill()  # SIGKILL: no hook runs, no handler, nothing flushed
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return tmp, running


@POSIX_ONLY
def test_a_killed_run_leaves_its_last_valid_record(request):
    tmp_path, running = background.result(request, killed_run)
    rec = load_record(tmp_path)
    assert rec["status"] == "running" and rec["exit_status"] is None and rec["ended_at"] is None
    assert rec["verdict"] is None and rec["verdict_reason"] is None
    # the coverage so far: what the killed run never reached is missing as "not run"
    assert rec["suite"]["covered"] == sum(t["outcome"] == "passed" for t in rec["tests"])
    assert "not run" in {m["why"] for m in rec["suite"]["missing"]}
    assert len(rec["tests"]) >= len(running["tests"]) >= 1
    assert rec["tests"][0]["outcome"] == "passed" and rec["tests"][0]["attachments"]


@background.scenario
def collect_only(tmp: Path):
    return tmp, *finish(start_suite(tmp, "--collect-only", "-q"))


def test_collect_only_is_incomplete_never_passed(request):
    tmp_path, returncode, output = background.result(request, collect_only)
    rec = load_record(tmp_path)
    assert returncode == 2 and rec["verdict"] == "INCOMPLETE" and rec["tests"] == [], output
    assert rec["verdict_reason"] == (
        f"no device test ran (--collect-only); 0 of {rec['suite']['required']} required tests ran (suite full)"
    )
    assert output.rstrip().splitlines()[-1] == f"paygo-bench: INCOMPLETE: {rec['verdict_reason']}"


GIVE_UP = """
import pytest

def pytest_runtest_setup(item):
    pytest.exit("the virtual rig did not start: no free pseudo-terminal", returncode=3)
"""


@background.scenario
def giving_up(tmp: Path):
    env = with_plugin(tmp, "give_up", GIVE_UP)
    run_dir = tmp / "run"
    proc = start_suite(
        run_dir, "-p", "give_up", "-W", "ignore::pytest.PytestAssertRewriteWarning", "-k", "test_identity", env=env
    )
    return run_dir, *finish(proc)


def test_the_bench_giving_up_is_bench_error(request):
    """What fixtures/virtual_rig.py does when the simulator cannot start: pytest.exit(..., 3)."""
    run_dir, returncode, output = background.result(request, giving_up)
    rec = load_record(run_dir)
    assert returncode == 3 and rec["verdict"] == "BENCH ERROR", output
    assert rec["verdict_reason"] == "the virtual rig did not start: no free pseudo-terminal"
    assert rec["status"] == "interrupted"


TAKE_THE_RECORDS_PLACE = """
import os

def pytest_runtest_setup(item):
    record = os.path.join(item.config.getoption("--report-dir"), "record.json")
    if os.path.isfile(record):
        os.remove(record)
        os.mkdir(record)  # the record's place is taken: every later write fails
"""


@background.scenario
def record_place_taken(tmp: Path):
    env = with_plugin(tmp, "take_place", TAKE_THE_RECORDS_PLACE)
    run_dir = tmp / "run"
    proc = start_suite(
        run_dir, "-p", "take_place", "-W", "ignore::pytest.PytestAssertRewriteWarning", "-k", "test_identity", env=env
    )
    return run_dir, *finish(proc)


def test_a_record_that_cannot_be_written_is_bench_error(request):
    """(A full disk, for real: tests/selftest/test_run_files.py.)"""
    run_dir, returncode, output = background.result(request, record_place_taken)
    assert returncode == 3, output
    last = output.rstrip().splitlines()[-1]
    assert last == f"paygo-bench: BENCH ERROR: cannot write {run_dir / RECORD_NAME}: [Errno 21] Is a directory", last
    assert "Traceback" not in output and "1 passed" in output, output[-3000:]  # the test in progress ends


# -- the writer and the schema --------------------------------------------------------------------


def test_a_failing_serialisation_leaves_the_previous_record_intact(tmp_path):
    path = tmp_path / RECORD_NAME
    write_json_atomic(path, {"status": "running", "n": 1})
    before = path.read_bytes()
    with pytest.raises(ValueError):
        write_json_atomic(path, {"status": "running", "value": math.nan})  # JSON has no NaN
    with pytest.raises(TypeError):
        write_json_atomic(path, {"status": "running", "value": object()})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [RECORD_NAME], "a temporary file was left behind"


def test_a_failing_rename_leaves_the_previous_record_intact(tmp_path, monkeypatch):
    path = tmp_path / RECORD_NAME
    write_json_atomic(path, {"n": 1})
    before = path.read_bytes()

    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError):
        write_json_atomic(path, {"n": 2, "padding": "x" * 100_000})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [RECORD_NAME]


def small_record(**changes) -> RunRecord:
    now = utc_now()
    rec = RunRecord(
        run_id="20261205T000000Z-virtual",
        status="running",
        started_at=now,
        bench_version="0.1.0",
        python_version="3.11.7",
        pytest_version="9.0.0",
        station=StationRecord("virtual", "", "host", "ana", None, None, True, []),
        dut=DutRecord("reference", "SIM000001", "", ""),
    )
    for k, v in changes.items():
        setattr(rec, k, v)
    return rec


def test_a_record_never_holds_the_device_key(tmp_path):
    """Even where a reason quotes a DUT that echoed its key, the written record masks it."""
    key = VIRTUAL_DUT_KEY
    rec = small_record(
        tests=[
            TestRecord(
                "tests/device/test_x.py::test_y",
                "failed",
                f"AssertionError: reply 'OK key={key.upper()}'",
                utc_now(),
                utc_now(),
                0.1,
                [MeasurementRecord.of(Measurement("drift", math.nan, "ppm", -50, 50))],
            )
        ]
    )
    path = write_record(tmp_path, rec, secrets=[key])
    text = path.read_text(encoding="utf-8")
    assert key.lower() not in text.lower() and "key=***" in text
    doc = json.loads(text)
    assert_valid(doc)
    assert doc["tests"][0]["measurements"][0]["value"] == "nan"  # recorded, as text: JSON has no NaN
    assert doc["tests"][0]["measurements"][0]["outcome"] == "FAIL"


def test_the_schema_refuses_what_a_record_must_not_be():
    good = json.loads(json.dumps(small_record().to_dict()))
    assert_valid(good)
    ended = {
        **good,
        "status": "finished",
        "ended_at": good["started_at"],
        "duration_s": 1.0,
        "exit_status": 0,
        "verdict": "PASSED",
        "verdict_reason": "1 of 1 required tests ran and passed (suite full)",
    }
    assert_valid(ended)
    bad_cases = {
        "running but ended": {**good, "ended_at": good["started_at"]},
        "running with a verdict": {**good, "verdict": "PASSED"},
        "finished without an end": {**good, "status": "finished", "exit_status": 0},
        "finished without a verdict": {**ended, "verdict": None},
        "a verdict without its reason": {**ended, "verdict_reason": None},
        "PASSED with another exit code": {**ended, "exit_status": 1},
        "INCOMPLETE exiting 0": {**ended, "verdict": "INCOMPLETE"},
        "an unknown verdict": {**ended, "verdict": "OK", "exit_status": 0},
        "a 1.x status": {**ended, "status": "passed"},
        "a missing test without why": {**ended, "suite": {**ended["suite"], "missing": [{"nodeid": "t::x"}]}},
        "local time": {**good, "started_at": good["started_at"].replace("Z", "+02:00")},
        "unknown status": {**good, "status": "crashed"},
        "failed test without a reason": {
            **good,
            "tests": [
                {
                    "nodeid": "t::x",
                    "outcome": "failed",
                    "reason": None,
                    "started_at": good["started_at"],
                    "ended_at": good["started_at"],
                    "duration_s": 0,
                    "measurements": [],
                    "attachments": [],
                }
            ],
        },
    }
    for name, doc in bad_cases.items():
        assert list(VALIDATOR.iter_errors(doc)), f"the schema accepts a record that is {name}"
    assert_valid({**good, "a_field_from_2_2": True})  # readers of 2.1 must accept later 2.x


def test_the_safe_state_is_recorded_as_measured_and_checked_by_the_schema():
    from bench.record.model import SafeStateRecord, utc_now
    from bench.station.safe_state import SafeStateOutcome

    rec = small_record()
    outcome = SafeStateOutcome("off", False, 12.0000004, True, "PSU at X: output still at 12.000 V\ntraceback")
    rec.safe_state = SafeStateRecord.of(outcome, utc_now())
    doc = json.loads(json.dumps(rec.to_dict()))
    assert_valid(doc)
    safe = doc["safe_state"]
    assert (safe["wanted"], safe["confirmed"], safe["volts"], safe["output"]) == ("off", False, 12.0, "on")
    assert safe["detail"] == "PSU at X: output still at 12.000 V" and safe["checked_at"].endswith("Z")
    assert rec.safe_state.line() == "supply NOT confirmed off: PSU at X: output still at 12.000 V"
    bad = {
        "unchanged yet confirmed": {**safe, "wanted": "unchanged", "confirmed": True},
        "off with nothing said of it": {**safe, "confirmed": None},
        "an unknown safe state": {**safe, "wanted": "standby"},
        "no detail": {**safe, "detail": ""},
        "local time": {**safe, "checked_at": safe["checked_at"].replace("Z", "+02:00")},
    }
    for name, value in bad.items():
        assert list(VALIDATOR.iter_errors({**doc, "safe_state": value})), f"the schema accepts a safe state {name}"
    assert_valid({**doc, "safe_state": None})
    assert "safe_state" not in SCHEMA["required"]  # added in 2.1: a 2.0 record has none
    assert "`safe_state`" in (ROOT / "docs" / "record.md").read_text(encoding="utf-8")


def test_the_schema_file_in_docs_is_the_schema_in_code():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_json(), (
        "docs/record.schema.json is stale: regenerate it with "
        'python -c "from bench.record.schema import write_schema_file; write_schema_file()"'
    )
    doc = (ROOT / "docs" / "record.md").read_text(encoding="utf-8")
    assert f"`{SCHEMA_VERSION}`" in doc, "docs/record.md does not name the current schema version"
    for name in SCHEMA["required"]:
        assert f"`{name}`" in doc, f"docs/record.md does not document {name}"
