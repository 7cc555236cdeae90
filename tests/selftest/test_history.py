"""`paygo-bench history` (bench/history, docs/history.md): the analysis on synthetic runs, the
SQLite index on records (2.x, and 1.x from before verdicts), and three real device-suite runs on
the virtual rig end to end."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.history import command
from bench.history.analysis import compare, flaky_tests, key_value, latest_changes, trend
from bench.history.index import INDEX_NAME, INDEX_VERSION, HistoryIndex, HistoryIndexError
from bench.history.model import MeasurementRow, RunData, RunRow, TestRow
from bench.history.reader import hash_of_tests
from bench.history.view import no_comparison
from bench.record.model import Counts
from tests.selftest import background
from tests.selftest.device_suite import run_device_suite

T0 = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
A = "tests/device/test_a.py::test_a"
B = "tests/device/test_b.py::test_b"


def run(
    n: int,
    outcomes: dict[str, str] | list[tuple[str, str]],
    *,
    station="lab",
    rig="r1",
    bench="0.1.0",
    serial="S1",
    faults=(),
    measurements=(),
    suite="full",
) -> RunData:
    items = outcomes.items() if isinstance(outcomes, dict) else outcomes
    row = RunRow(
        run_id=f"run{n}",
        record_path=f"run{n}/record.json",
        record_sha256="0" * 64,
        station=station,
        rig_file=None,
        rig_sha256=rig,
        sim_faults=tuple(faults),
        operator="",
        status="finished",
        status_reason=None,
        verdict="PASSED",
        verdict_reason="x",
        suite=suite,
        suite_required=1,
        suite_covered=1,
        tests_sha256=hash_of_tests(nodeid for nodeid, _ in items),
        started_at=T0 + timedelta(days=n),
        ended_at=None,
        bench_version=bench,
        dut_serial=serial,
        dut_model="M",
        dut_firmware="1.0",
    )
    tests = tuple(TestRow(nodeid, o, None if o == "passed" else f"{o} because", 1.0) for nodeid, o in items)
    return RunData(row, tests, tuple(measurements))


def m(name, value, outcome="PASS", unit="ppm", low=-100.0, high=100.0, nodeid=A):
    return MeasurementRow(nodeid, name, value, None, unit, low, high, outcome)


# -- analysis ------------------------------------------------------------------------------------


def test_new_failures_and_fixed_compare_with_the_previous_run_only():
    before = run(1, {A: "passed", B: "failed"})
    now = run(2, {A: "failed", B: "passed", "c": "error"})  # c was not run before: not "new"
    ch = compare(before, now)
    assert [c.nodeid for c in ch.new_failures] == [A]
    assert ch.new_failures[0].reason == "failed because"
    assert [c.nodeid for c in ch.fixed] == [B]
    assert compare(None, now).new_failures == ()


def test_latest_changes_are_per_station_rig_and_suite():
    runs = [
        run(1, {A: "passed"}),
        run(2, {A: "passed"}, rig="r2"),
        run(3, {A: "failed"}),
        run(4, {A: "passed"}, rig="r2"),
        run(5, {A: "passed"}, suite="quick"),
    ]
    by_run = {c.run_id: c for c in latest_changes(runs)}
    assert set(by_run) == {"run3", "run4", "run5"}
    assert by_run["run3"].previous_id == "run1" and [c.nodeid for c in by_run["run3"].new_failures] == [A]
    assert by_run["run4"].previous_id == "run2" and by_run["run4"].new_failures == ()
    assert by_run["run5"].previous_id is None and by_run["run5"].earlier == 0  # another suite: not compared


def test_a_run_is_compared_with_the_last_earlier_run_given_the_same_tests():
    runs = [run(1, {A: "passed", B: "passed"}), run(2, {A: "passed"}), run(3, {A: "failed", B: "passed"})]
    (ch,) = latest_changes(runs)
    assert ch.previous_id == "run1" and [c.nodeid for c in ch.new_failures] == [A], ch  # run2 ran other tests
    (ch,) = latest_changes(runs[1:])
    assert ch.previous_id is None and ch.earlier == 1
    assert no_comparison(ch) == (
        "none of the 1 earlier run of this station, rig file and suite was given the same "
        "tests: nothing to compare with"
    )
    (first,) = latest_changes(runs[:1])
    assert no_comparison(first) == "the first run of this station, rig file and suite: nothing to compare with"


def test_flaky_is_fail_then_pass_with_nothing_changed():
    runs = [run(1, {A: "failed", B: "failed"}), run(2, {A: "passed", B: "failed"}), run(3, {A: "failed", B: "passed"})]
    flaky = {f.nodeid: f for f in flaky_tests(runs)}
    assert set(flaky) == {A, B}
    assert [(x.failed_in, x.passed_in) for x in flaky[A].flips] == [("run1", "run2")]
    assert [(x.failed_in, x.passed_in) for x in flaky[B].flips] == [("run2", "run3")]


@pytest.mark.parametrize("change", [{"bench": "0.2.0"}, {"serial": "S2"}, {"faults": ("slow_decode",)}])
def test_a_fix_after_a_bench_dut_or_fault_change_is_not_flaky(change):
    runs = [run(1, {A: "failed"}), run(2, {A: "passed"}, **change)]
    assert flaky_tests(runs) == []


def test_a_rerun_inside_one_run_is_flaky():
    assert [f.nodeid for f in flaky_tests([run(1, [(A, "failed"), (A, "passed"), (B, "passed")])])] == [A]


def test_key_value_of_a_glob_is_the_largest_and_fails_if_any_failed():
    ms = [m("G8A_decode_time", 0.2, unit="s"), m("G8B_decode_time", 6.0, "FAIL", unit="s"), m("rtc_drift", -40.0)]
    kv = key_value(ms, "G8*_decode_time")
    assert (kv.value, kv.outcome, kv.matched, kv.unit) == (6.0, "FAIL", 2, "s")
    assert key_value(ms, "rtc_drift").value == -40.0
    assert key_value(ms, "boot_time") is None


def test_trend_leaves_gaps_for_runs_without_the_measurement():
    runs = [
        run(1, {A: "passed"}, measurements=[m("rtc_drift", 10.0)]),
        run(2, {A: "passed"}),
        run(3, {A: "failed"}, measurements=[m("rtc_drift", 150.0, "FAIL")]),
    ]
    (series,) = trend(runs, ["rtc_drift"])
    assert [(p.run_id, p.value, p.outcome) for p in series.points] == [("run1", 10.0, "PASS"), ("run3", 150.0, "FAIL")]
    assert series.unit == "ppm" and series.points[0].high == 100.0


# -- the index, on a record file -----------------------------------------------------------------
# `db`: None for the embedded index of the reports directory, else a results database URL (an
# SQLite file, and a real PostgreSQL server: tests/selftest/pg_server.py); the fixtures are in
# tests/selftest/conftest.py.


def history(reports: Path, db: str | None, *args: str) -> int:
    """`paygo-bench history` on `reports`: its own index, or the database with the records uploaded."""
    where = ["--db", db, "--upload"] if db else []
    return command.main(["--reports", str(reports), "--no-plot", *where, *args])


def _record(run_id: str, started: str, outcome: str = "passed", drift: float = 12.5) -> dict:
    passed = outcome == "passed"
    return {
        "schema": "paygo-bench/record",
        "schema_version": "2.0",
        "run_id": run_id,
        "verdict": "PASSED" if passed else "FAILED",
        "verdict_reason": "1 of 1 required tests ran and passed (suite quick)" if passed else f"1 failed ({A}: x)",
        "suite": {
            "name": "quick",
            "title": "Quick check",
            "required": 1,
            "covered": int(passed),
            "missing": [] if passed else [{"nodeid": A, "why": "failed: AssertionError: x"}],
        },
        "status": "finished",
        "status_reason": None,
        "exit_status": 0 if passed else 1,
        "started_at": started,
        "ended_at": started,
        "updated_at": started,
        "duration_s": 1.0,
        "bench": {"version": "0.1.0", "python": "3.11", "pytest": "9"},
        "station": {
            "id": "virtual",
            "location": "",
            "host": "h",
            "operator": "",
            "rig_file": None,
            "rig_sha256": None,
            "virtual": True,
            "sim_faults": [],
        },
        "dut": {
            "adapter": "reference",
            "profile_serial": "SIM1",
            "hardware_model": "",
            "firmware_version": "",
            "identity": None,
        },
        "instruments": [],
        "counts": {
            "collected": 1,
            "passed": int(outcome == "passed"),
            "failed": int(outcome != "passed"),
            "error": 0,
            "skipped": 0,
            "not_covered": 0,
            "interrupted": 0,
        },
        "tests": [
            {
                "nodeid": A,
                "outcome": outcome,
                "reason": None if outcome == "passed" else "AssertionError: x",
                "started_at": started,
                "ended_at": started,
                "duration_s": 1.0,
                "attachments": [],
                "measurements": [
                    {
                        "name": "rtc_drift",
                        "value": drift,
                        "unit": "ppm",
                        "low": -685,
                        "high": 685,
                        "expected": None,
                        "limits": "[-685, 685] ppm",
                        "outcome": "PASS",
                        "doc": "",
                    }
                ],
            }
        ],
        "attachments": [],
    }


def _record_v1(run_id: str, started: str, status: str) -> dict:
    """A record as the bench wrote it before verdicts (schema 1.0)."""
    doc = _record(run_id, started, "passed" if status == "passed" else "failed")
    for key in ("verdict", "verdict_reason", "suite"):
        del doc[key]
    doc.update(
        schema_version="1.0",
        status=status,
        status_reason=None if status == "passed" else f"{status}: why",
        exit_status={"passed": 0, "failed": 1, "interrupted": 2, "error": 3}[status],
    )
    return doc


def _write(reports: Path, doc: dict) -> Path:
    path = reports / doc["run_id"] / "record.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_the_index_reindexes_a_rewritten_record_and_drops_a_removed_one(tmp_path, db):
    """The embedded index is kept equal to its reports directory; a shared database never drops
    a run because one station's copy of its record is gone."""
    first = _write(tmp_path, _record("r1", "2026-12-01T22:00:00.000Z"))
    _write(tmp_path, _record("r2", "2026-12-02T22:00:00.000Z"))
    mirror = db is None
    with HistoryIndex(db or tmp_path / INDEX_NAME) as index:
        assert sorted(index.update(tmp_path, mirror=mirror).indexed) == ["r1", "r2"]
        second = index.update(tmp_path, mirror=mirror)
        assert (second.indexed, second.unchanged) == ([], 2)
        _write(tmp_path, _record("r2", "2026-12-02T22:00:00.000Z", drift=99.0))  # the run finished later
        assert index.update(tmp_path, mirror=mirror).indexed == ["r2"]
        assert [x.value for x in index.load(index.runs()[-1]).measurements] == [99.0]
        assert index.runs()[-1].counts == Counts(collected=1, passed=1)  # the record's counts, through the database
        first.unlink()
        assert index.update(tmp_path, mirror=mirror).removed == (["r1"] if mirror else [])
        assert [r.run_id for r in index.runs()] == (["r2"] if mirror else ["r1", "r2"])


def test_an_index_from_a_newer_bench_is_refused_with_what_to_do(tmp_path):
    con = sqlite3.connect(tmp_path / INDEX_NAME)
    con.execute(f"PRAGMA user_version = {INDEX_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(HistoryIndexError, match="newer paygo-bench.*delete the file"):
        HistoryIndex(tmp_path / INDEX_NAME)
    assert command.main(["--reports", str(tmp_path), "--no-plot"]) == 2


def test_an_index_of_the_previous_layout_is_rebuilt_from_the_records(tmp_path, capsys):
    _write(tmp_path, _record("r1", "2026-12-01T22:00:00.000Z"))
    con = sqlite3.connect(tmp_path / INDEX_NAME)  # as bench 0.1.0 left it: layout 2, no updated_at
    con.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, record_path TEXT)")
    con.execute("INSERT INTO runs VALUES ('gone', 'gone/record.json')")
    con.execute("PRAGMA user_version = 2")
    con.commit()
    con.close()
    assert command.main(["--reports", str(tmp_path), "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "1 new or updated, 0 unchanged" in out and "r1" in out and "gone" not in out


def test_a_corrupt_record_is_skipped_naming_the_file(tmp_path, capsys, db):
    _write(tmp_path, _record("good", "2026-12-01T22:00:00.000Z"))
    bad = tmp_path / "broken" / "record.json"
    bad.parent.mkdir()
    bad.write_text('{"schema": "paygo-bench/record", "tests": [', encoding="utf-8")
    wrong = _record("wrong", "2026-12-02T22:00:00.000Z")
    wrong["tests"][0]["outcome"] = "sort of"
    _write(tmp_path, wrong)
    assert history(tmp_path, db) == 0
    out, err = capsys.readouterr()
    assert f"skipped {tmp_path}/broken/record.json: not valid JSON" in err
    assert re.search(
        rf"skipped {re.escape(str(tmp_path))}/wrong/record.json: does not match the record schema at "
        r"tests/0/outcome",
        err,
    )
    assert "Traceback" not in out + err
    assert "good" in out and "\nwrong " not in out


@pytest.mark.parametrize(
    "status, verdict",
    [("passed", "PASSED"), ("failed", "FAILED"), ("interrupted", "INCOMPLETE"), ("error", "BENCH ERROR")],
)
def test_a_1x_record_is_read_with_the_verdict_its_status_stood_for(tmp_path, capsys, status, verdict, db):
    _write(tmp_path, _record_v1("old", "2026-11-30T22:00:00.000Z", status))
    _write(tmp_path, _record("new", "2026-12-01T22:00:00.000Z"))
    with HistoryIndex(db or tmp_path / INDEX_NAME) as index:
        assert sorted(index.update(tmp_path, mirror=db is None).indexed) == ["new", "old"]
        old, new = index.runs()
    assert (old.verdict, old.suite, old.suite_required) == (verdict, None, None)
    assert old.status == ("interrupted" if status == "interrupted" else "finished")
    assert (new.verdict, new.suite, new.suite_covered, new.status) == ("PASSED", "quick", 1, "finished")
    assert old.group != new.group  # no suite then: not compared with a run of a known suite
    assert history(tmp_path, db) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^old .* {verdict} +- +- ", out, re.M), out
    assert re.search(r"^new .* PASSED +quick +1/1 ", out, re.M), out


def test_a_record_of_an_unknown_major_is_skipped_saying_which_it_reads(tmp_path, capsys):
    doc = _record("future", "2026-12-01T22:00:00.000Z")
    doc["schema_version"] = "3.0"
    _write(tmp_path, doc)
    assert command.main(["--reports", str(tmp_path), "--no-plot"]) == 0
    assert "schema_version 3.0: this bench reads 1.x and 2.x records" in capsys.readouterr().err


def test_an_empty_reports_directory_says_no_runs(tmp_path, capsys):
    assert command.main(["--reports", str(tmp_path)]) == 0
    assert "no runs" in capsys.readouterr().out
    assert not (tmp_path / "history").exists()


def test_rig_filters_by_the_rig_files_hash(tmp_path, capsys, db):
    import hashlib

    rig = tmp_path / "lab.toml"
    rig.write_text("[station]\nid = 'lab'\n", encoding="utf-8")
    doc = _record("on-lab", "2026-12-01T22:00:00.000Z")
    doc["station"].update(id="lab", rig_file=str(rig), rig_sha256=hashlib.sha256(rig.read_bytes()).hexdigest())
    reports = tmp_path / "reports"
    _write(reports, doc)
    _write(reports, _record("on-virtual", "2026-12-02T22:00:00.000Z"))
    assert history(reports, db, "--rig", str(rig)) == 0
    out = capsys.readouterr().out
    assert "on-lab" in out and "on-virtual" not in out
    assert history(reports, db, "--station", "virtual") == 0
    out = capsys.readouterr().out
    assert "on-virtual" in out and "on-lab" not in out


# -- three real runs on the virtual rig -----------------------------------------------------------

DRIFT_TEST = "tests/device/test_rtc_drift.py::test_rtc_drift_within_limit"


@background.scenario
def nights(tmp: Path) -> tuple[Path, list[str]]:
    """Two good nights, then one with an RTC far out of its limit (in that order: the history
    sorts them by start)."""
    reports = tmp / "reports"
    reports.mkdir()
    ids = []
    for n, faults in enumerate(([], [], ["rtc_drift_beyond_limit"])):
        run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + f"-virtual{n}"
        (tmp / f"run{n}").mkdir()
        run_device_suite(
            tmp / f"run{n}",
            faults=faults,
            args=("--report-dir", str(reports / run_id), "-k", "rtc_drift or identity"),
        )
        ids.append(run_id)
    return reports, ids


@pytest.fixture(scope="module")
def three_runs(request) -> tuple[Path, list[str]]:
    reports, ids = background.result(request, nights)
    for run_id in ids:
        assert (reports / run_id / "record.json").is_file()
    return reports, ids


def test_three_runs_show_in_order_with_verdict_drift_and_the_new_failure(three_runs, capsys):
    reports, ids = three_runs
    assert command.main(["--reports", str(reports)]) == 0
    out = capsys.readouterr().out
    lines = {i: next(line for line in out.splitlines() if line.startswith(i)) for i in ids}
    assert [out.index(lines[i]) for i in ids] == sorted(out.index(lines[i]) for i in ids)
    drifts = {}
    for i, verdict in zip(ids, ("INCOMPLETE", "INCOMPLETE", "FAILED")):  # -k: the full suite was not covered
        cells = lines[i].split()
        assert cells[3:5] == [verdict, "full"] and re.fullmatch(r"\d/\d\d", cells[5]), lines[i]
        drifts[i] = cells[-2]  # rtc_drift, then G8*_decode_time ("-": not run here)
        assert cells[-1] == "-"
    records = {i: json.loads((reports / i / "record.json").read_text()) for i in ids}
    for i in ids:
        (drift,) = [x["value"] for t in records[i]["tests"] for x in t["measurements"] if x["name"] == "rtc_drift"]
        assert drifts[i].rstrip("!") == f"{drift:.4g}"
    assert drifts[ids[2]].endswith("!") and not drifts[ids[0]].endswith("!")
    assert f"new failures in {ids[2]} since {ids[1]}" in out
    assert re.search(rf"^  {re.escape(DRIFT_TEST)} \(passed -> failed\)", out, re.M)

    png = reports / "history" / "trend.png"
    page = reports / "history" / "index.html"
    assert f"trend plot: {png}" in out and f"page: {page}" in out
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
    import base64

    html = page.read_text(encoding="utf-8")
    assert base64.b64encode(data).decode() in html
    assert all(i in html for i in ids) and DRIFT_TEST in html


def test_the_index_is_reused_on_the_next_call(three_runs, capsys):
    reports, ids = three_runs
    assert command.main(["--reports", str(reports), "--no-plot"]) == 0
    capsys.readouterr()
    assert command.main(["--reports", str(reports), "--no-plot", "--last", "2"]) == 0
    out = capsys.readouterr().out
    assert "0 new or updated, 3 unchanged" in out
    assert ids[0] not in out and ids[1] in out and "(last 2 of 3)" in out


def test_add_parser_wires_the_subcommand_as_bench_cli_calls_it(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser(prog="paygo-bench")
    command.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["history", "--reports", str(tmp_path), "--last", "3", "--measure", "boot_time"])
    assert (args.last, args.measure) == (3, ["boot_time"])
    assert args.func(args, []) == 0  # bench/cli.py's main calls args.func(args, extra)
    assert "no runs" in capsys.readouterr().out
