"""The results database (bench/history/index.py, publish.py, docs/history.md "The results
database"): idempotent writes, the queue of records a run could not send, the lab-wide view of
firmware x suite profile, and the same answers from SQLite and a real PostgreSQL server."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.history import command
from bench.history.db import RESULTS_DB_ENV, shown
from bench.history.index import INDEX_VERSION, META, HistoryIndex, HistoryIndexError
from bench.history.publish import QUEUE_DIR, deliver, publish_run
from bench.locations import REPORTS_ENV_VAR
from bench.secret import Secret
from tests.selftest import background
from tests.selftest.pg_server import PASSWORD
from tests.selftest.test_history import _record, _write

ROOT = Path(__file__).resolve().parents[2]


def rig_with(url: str | None):
    return SimpleNamespace(station=SimpleNamespace(results_db=Secret(url) if url else None))


def dead_url(url: str) -> str:
    """The same database on a loopback port nobody listens on: a server that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if url.startswith("sqlite"):
        return f"sqlite:////nonexistent-{port}/results.sqlite"
    return re.sub(r"@127\.0\.0\.1:\d+/", f"@127.0.0.1:{port}/", url)


def lab_record(run_id: str, started: str, station: str, model: str, firmware: str, suite: str, verdict: str) -> dict:
    doc = _record(run_id, started, "passed" if verdict == "PASSED" else "failed")
    doc["station"]["id"] = station
    doc["dut"].update(hardware_model=model, firmware_version=firmware)
    doc["suite"]["name"] = suite
    doc["verdict"] = verdict
    doc["exit_status"] = {"PASSED": 0, "FAILED": 1, "INCOMPLETE": 2, "BENCH ERROR": 3}[verdict]
    return doc


def test_the_same_record_twice_is_one_run_and_an_older_copy_changes_nothing(tmp_path, shared_db):
    record = _write(tmp_path, _record("r1", "2026-12-01T22:00:00.000Z"))
    lines = [deliver(shared_db, tmp_path, record).lines for _ in range(2)]
    assert lines == [
        [f"results: run r1 stored in {shown(shared_db)}"],
        [f"results: run r1 already in {shown(shared_db)}"],
    ]
    with HistoryIndex(shared_db) as db:
        assert [r.run_id for r in db.runs()] == ["r1"] and len(db.load(db.runs()[0]).tests) == 1
        assert db.update(tmp_path, mirror=False).unchanged == 1  # --upload of the same record: nothing new
    newer = _record("r1", "2026-12-01T22:00:00.000Z", drift=40.0)
    newer["updated_at"] = "2026-12-01T22:05:00.000Z"  # the run rewrote its record later
    older = _record("r1", "2026-12-01T22:00:00.000Z", drift=7.0)  # an earlier snapshot, late from a queue
    _write(tmp_path, newer)
    assert deliver(shared_db, tmp_path, record).lines == [f"results: run r1 stored in {shown(shared_db)}"]
    _write(tmp_path, older)
    assert deliver(shared_db, tmp_path, record).lines == [
        f"results: run r1 not stored: a newer record of it is already in {shown(shared_db)}"
    ]
    with HistoryIndex(shared_db) as db:
        (run,) = db.runs()
        assert [m.value for m in db.load(run).measurements] == [40.0]


def test_a_run_that_cannot_reach_the_database_queues_its_record_and_the_next_run_sends_it(tmp_path, shared_db, capsys):
    down = dead_url(shared_db)
    first = _write(tmp_path, _record("r1", "2026-12-01T22:00:00.000Z"))
    line = publish_run(first, rig_with(down))
    queued = tmp_path / QUEUE_DIR / "r1.json"
    assert line.startswith(f"results: record queued in {queued} (") and line.endswith(
        "; sent at the next run, or by paygo-bench history --upload"
    ), line
    assert "\n" not in line and PASSWORD not in line and queued.read_bytes() == first.read_bytes()
    second = _write(tmp_path, _record("r2", "2026-12-02T22:00:00.000Z"))
    assert publish_run(second, rig_with(down)).startswith("results: 1 queued run(s) not sent (")
    assert sorted(p.name for p in (tmp_path / QUEUE_DIR).iterdir()) == ["r1.json", "r2.json"]

    third = _write(tmp_path, _record("r3", "2026-12-03T22:00:00.000Z"))
    assert publish_run(third, rig_with(shared_db)).splitlines() == [
        f"results: 2 queued run(s) sent to {shown(shared_db)}: r1, r2",
        f"results: run r3 stored in {shown(shared_db)}",
    ]
    assert not list((tmp_path / QUEUE_DIR).iterdir())
    with HistoryIndex(shared_db) as db:
        assert [r.run_id for r in db.runs()] == ["r1", "r2", "r3"]

    fourth = _write(tmp_path, _record("r4", "2026-12-04T22:00:00.000Z"))
    publish_run(fourth, rig_with(down))
    capsys.readouterr()
    assert command.main(["--reports", str(tmp_path), "--db", shared_db, "--no-plot"]) == 0  # sends the queue first
    out = capsys.readouterr().out
    assert out.startswith(f"results: 1 queued run(s) sent to {shown(shared_db)}: r4\n"), out
    assert f"results database {shown(shared_db)}: 4 matching runs" in out and PASSWORD not in out


def test_the_lab_wide_view_is_firmware_by_suite_over_every_station(tmp_path, shared_db, capsys):
    runs = [
        ("a1", "2026-12-01T22:00:00.000Z", "lab-1", "PG-1", "2.3.0", "full", "FAILED"),
        ("a2", "2026-12-02T22:00:00.000Z", "lab-1", "PG-1", "2.3.1", "full", "PASSED"),
        ("b1", "2026-12-02T23:00:00.000Z", "lab-2", "PG-1", "2.3.1", "full", "PASSED"),
        ("b2", "2026-12-03T22:00:00.000Z", "lab-2", "PG-1", "2.3.1", "quick", "INCOMPLETE"),
        ("c1", "2026-12-03T23:00:00.000Z", "lab-3", "SHS-9", "1.0", "full", "BENCH ERROR"),
    ]
    for args in runs:
        _write(tmp_path / "runs", lab_record(*args))
    assert command.main(["--reports", str(tmp_path / "runs"), "--db", shared_db, "--upload", "--no-plot"]) == 0
    out = capsys.readouterr().out
    view = out[out.index("firmware x suite profile") :].splitlines()
    assert view[0] == "firmware x suite profile, every station (5 runs; verdict counts, newest run):"
    rows = [line.split() for line in view[2:]]
    assert (
        view[1].split()
        == "product firmware suite passed failed incomplete bench error running stations last run last verdict".split()
    )
    assert rows == [
        ["PG-1", "2.3.0", "full", "0", "1", "0", "0", "0", "lab-1", "a1", "FAILED"],
        ["PG-1", "2.3.1", "full", "2", "0", "0", "0", "0", "lab-1,lab-2", "b1", "PASSED"],
        ["PG-1", "2.3.1", "quick", "0", "0", "1", "0", "0", "lab-2", "b2", "INCOMPLETE"],
        ["SHS-9", "1.0", "full", "0", "0", "0", "1", "0", "lab-3", "c1", "BENCH", "ERROR"],
    ], view
    assert (
        command.main(
            [
                "--reports",
                str(tmp_path / "runs"),
                "--db",
                shared_db,
                "--no-plot",
                "--product",
                "PG-1",
                "--firmware",
                "2.3.1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "3 matching runs" in out and not re.search(r"^(a1|c1) ", out, re.M)
    assert re.search(r"^b2 .* INCOMPLETE +quick ", out, re.M), out


def test_sqlite_and_postgresql_give_the_same_answers(tmp_path, pg_url, capsys):
    for n, verdict in enumerate(["PASSED", "FAILED", "PASSED"]):
        _write(
            tmp_path / "runs", lab_record(f"r{n}", f"2026-12-0{n + 1}T22:00:00.000Z", "lab", "M", "1", "full", verdict)
        )
    doc = _record("odd", "2026-12-05T22:00:00.000Z")
    doc["tests"][0]["measurements"][0].update(value=float("nan"))
    doc["tests"][0]["reason"] = "ünïcode ✓ 'quoted' \\ back"
    (tmp_path / "runs" / "odd").mkdir()
    (tmp_path / "runs" / "odd" / "record.json").write_text(json.dumps(doc, allow_nan=True), encoding="utf-8")
    outputs, stored = [], []
    for url in (f"sqlite:///{tmp_path / 'lab.sqlite'}", pg_url):
        assert command.main(["--reports", str(tmp_path / "runs"), "--db", url, "--upload", "--no-plot"]) == 0
        outputs.append(capsys.readouterr().out.replace(shown(url), "DB"))
        with HistoryIndex(url) as db:
            stored.append([db.load(r) for r in db.runs()])
    assert outputs[0] == outputs[1]
    assert stored[0] == stored[1] and len(stored[0]) == 4
    assert "new failures in r2 since r1 (station lab, built-in rig, suite full): none\nfixed in r2: 1" in outputs[0]
    assert re.search(r"^odd .* nan +-$", outputs[0], re.M), outputs[0]  # a NaN stays text on both


def test_a_database_that_cannot_be_used_is_one_line_without_its_password(tmp_path, pg_url, capsys):
    wrong = pg_url.replace(PASSWORD, "not-the-" + PASSWORD[::-1])
    assert command.main(["--reports", str(tmp_path), "--db", wrong, "--no-plot"]) == 2
    out, err = capsys.readouterr()
    assert (
        err.startswith("paygo-bench history: postgresql://bench:***@127.0.0.1:")
        and "password authentication failed" in err
    )
    assert PASSWORD not in out + err and PASSWORD[::-1] not in out + err and len(err.strip().splitlines()) == 1
    with HistoryIndex(pg_url) as db, db.engine.begin() as con:  # a database written by a newer bench
        con.execute(META.update().values(value=str(INDEX_VERSION + 1)))
    with pytest.raises(HistoryIndexError, match=r"newer paygo-bench \(index version 4, this one reads up to 3\)"):
        HistoryIndex(pg_url)


# -- paygo-bench run, its database down --------------------------------------------------------


@background.scenario
def run_with_the_database_down(tmp: Path):
    env = {
        **os.environ,
        REPORTS_ENV_VAR: str(tmp / "reports"),
        RESULTS_DB_ENV: "postgresql://bench:Sw0rdfish-9@127.0.0.1:9/x",
    }
    args = [sys.executable, "-m", "bench.cli", "run", "-k", "identity"]
    return tmp / "reports", subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)


def test_a_run_whose_database_is_down_keeps_its_verdict_and_queues_its_record(request, tmp_path, capsys):
    reports, proc = background.result(request, run_with_the_database_down)
    out = proc.stdout + proc.stderr
    (run_dir,) = [d for d in reports.iterdir() if d.is_dir() and d.name != QUEUE_DIR]
    verdict = json.loads((run_dir / "record.json").read_text(encoding="utf-8"))["verdict"]
    assert proc.returncode == {"PASSED": 0, "INCOMPLETE": 2}[verdict], out[-3000:]  # -k: never the database's doing
    assert proc.stdout.splitlines()[-1].startswith(f"paygo-bench: {verdict}: "), out[-2000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("paygo-bench: results:")]
    assert line.startswith(f"paygo-bench: results: record queued in {reports / QUEUE_DIR / run_dir.name}.json ("), line
    assert "Sw0rdfish-9" not in out and "bench:***@127.0.0.1:9" in line
    url = f"sqlite:///{tmp_path / 'lab.sqlite'}"
    assert command.main(["--reports", str(reports), "--db", url, "--no-plot"]) == 0
    assert f"1 queued run(s) sent to {url}: {run_dir.name}" in capsys.readouterr().out


RACE = """
import sys, time
from pathlib import Path
from bench.history.publish import deliver
url, reports, record, start = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4])
while time.time() < start:
    pass
print("\\n".join(deliver(url, reports, record).lines))
"""


def test_stations_storing_into_a_new_database_at_the_same_instant_all_get_stored(tmp_path, shared_db):
    """Four runs finishing together on a database nobody has used yet (a new lab's first night,
    or stations sharing one reports/): one lays the tables out while the others wait; none is
    refused with "table runs already exists" and queued."""
    records = [_write(tmp_path / f"s{i}", _record(f"r{i}", f"2026-12-01T22:0{i}:00.000Z")) for i in range(4)]
    start = str(time.time() + 1.0)  # every process is up and spinning before the instant
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, shared_db, str(tmp_path), str(r), start],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in records
    ]
    said = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert said == [f"results: run r{i} stored in {shown(shared_db)}" for i in range(4)], said
    assert not (tmp_path / QUEUE_DIR).exists()
    with HistoryIndex(shared_db) as db:
        assert sorted(r.run_id for r in db.runs()) == ["r0", "r1", "r2", "r3"]
