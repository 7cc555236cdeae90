"""The run index: reports/history.sqlite, a cache of every reports/<run-id>/record.json.

Each run is keyed by its run_id and the SHA-256 of its record file: a record rewritten later
(a run indexed while `running`, then finished) has a new hash and is indexed again; an unchanged
one is not read past its hash. A run whose directory is gone is dropped. The records stay the
truth: deleting the index only costs one rebuild. The file's layout is versioned with
PRAGMA user_version; an older layout is rebuilt, a newer one (a newer bench) is refused.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path

from bench.history.model import MeasurementRow, RunData, RunRow, TestRow
from bench.history.reader import RecordSkipped, parse_record
from bench.record.model import Counts, iso_utc
from bench.record.writer import RECORD_NAME

INDEX_NAME = "history.sqlite"
INDEX_VERSION = 2  # 2: verdict, suite and the tests hash per run

_SCHEMA = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, record_path TEXT NOT NULL UNIQUE, record_sha256 TEXT NOT NULL,
    station TEXT NOT NULL, rig_file TEXT, rig_sha256 TEXT, sim_faults TEXT NOT NULL, operator TEXT NOT NULL,
    status TEXT NOT NULL, status_reason TEXT, verdict TEXT, verdict_reason TEXT, suite TEXT,
    suite_required INTEGER, suite_covered INTEGER, tests_sha256 TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT,
    bench_version TEXT NOT NULL, dut_serial TEXT NOT NULL, dut_model TEXT NOT NULL, dut_firmware TEXT NOT NULL,
    collected INTEGER NOT NULL, passed INTEGER NOT NULL, failed INTEGER NOT NULL, error INTEGER NOT NULL,
    skipped INTEGER NOT NULL, not_covered INTEGER NOT NULL, interrupted INTEGER NOT NULL
);
CREATE INDEX runs_started ON runs (started_at);
CREATE TABLE tests (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, nodeid TEXT NOT NULL, outcome TEXT NOT NULL, reason TEXT,
    duration_s REAL, PRIMARY KEY (run_id, seq)
);
CREATE TABLE measurements (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, nodeid TEXT NOT NULL, name TEXT NOT NULL, value REAL,
    value_text TEXT, unit TEXT NOT NULL, low REAL, high REAL, outcome TEXT NOT NULL, PRIMARY KEY (run_id, seq)
);
CREATE INDEX measurements_name ON measurements (name);
"""
_COUNT_COLUMNS = tuple(f.name for f in fields(Counts))  # RunRow.counts, one column each
_RUN_COLUMNS = (
    "run_id",
    "record_path",
    "record_sha256",
    "station",
    "rig_file",
    "rig_sha256",
    "sim_faults",
    "operator",
    "status",
    "status_reason",
    "verdict",
    "verdict_reason",
    "suite",
    "suite_required",
    "suite_covered",
    "tests_sha256",
    "started_at",
    "ended_at",
    "bench_version",
    "dut_serial",
    "dut_model",
    "dut_firmware",
) + _COUNT_COLUMNS


class HistoryIndexError(Exception):
    """The index cannot be used (written by a newer bench, not SQLite); the message says what to do."""


@dataclass(frozen=True)
class Skipped:
    path: str  # the record file, as the user named the reports directory
    reason: str


@dataclass
class UpdateResult:
    indexed: list[str] = field(default_factory=list)  # run ids (re)indexed now
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)  # run ids whose record is gone
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True)
class RunFilter:
    station: str | None = None
    rig_sha256: str | None = None  # the exact rig file (docs/history.md)

    def where(self) -> tuple[str, list]:
        clauses, params = [], []
        if self.station is not None:
            clauses.append("station = ?")
            params.append(self.station)
        if self.rig_sha256 is not None:
            clauses.append("rig_sha256 = ?")
            params.append(self.rig_sha256)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


class HistoryIndex:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.con = sqlite3.connect(path, timeout=10.0)
            version = self.con.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise HistoryIndexError(
                f"{path}: not a history index ({e}); delete it to rebuild it from the records"
            ) from None
        if version > INDEX_VERSION:
            self.con.close()
            raise HistoryIndexError(
                f"{path} was written by a newer paygo-bench (index version {version}, this one reads up to "
                f"{INDEX_VERSION}); update the bench, or delete the file to rebuild it from the records"
            )
        if version < INDEX_VERSION:
            self._create()

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> HistoryIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _create(self) -> None:
        """A missing or older layout: rebuilt from scratch (the records hold everything)."""
        with self.con:
            for table in ("runs", "tests", "measurements"):
                self.con.execute(f"DROP TABLE IF EXISTS {table}")
            self.con.executescript(_SCHEMA)
            self.con.execute(f"PRAGMA user_version = {INDEX_VERSION}")

    # -- updating from the records ------------------------------------------------------------
    def update(self, reports: Path, shown_as: str | None = None) -> UpdateResult:
        """Index every reports/*/record.json that is new or changed; drop runs whose record is gone."""
        result = UpdateResult()
        known = {
            path: (run_id, sha)
            for run_id, path, sha in self.con.execute("SELECT run_id, record_path, record_sha256 FROM runs")
        }
        seen: set[str] = set()
        prefix = shown_as if shown_as is not None else str(reports)
        for file in sorted(reports.glob(f"*/{RECORD_NAME}")):
            rel = file.relative_to(reports).as_posix()
            shown = f"{prefix.rstrip('/')}/{rel}"
            seen.add(rel)
            try:
                data = file.read_bytes()
            except OSError as e:
                result.skipped.append(Skipped(shown, f"cannot be read ({e.strerror or e})"))
                continue
            sha = hashlib.sha256(data).hexdigest()
            if known.get(rel, (None, None))[1] == sha:
                result.unchanged += 1
                continue
            try:
                run = parse_record(data, rel, sha)
            except RecordSkipped as e:
                result.skipped.append(Skipped(shown, str(e)))
                if rel in known:  # it was readable before: its old rows no longer say what the file does
                    self._delete(known[rel][0])
                continue
            other = self.con.execute(
                "SELECT record_path FROM runs WHERE run_id = ? AND record_path != ?", (run.run.run_id, rel)
            ).fetchone()
            if other is not None and (reports / other[0]).is_file():
                result.skipped.append(Skipped(shown, f"run_id {run.run.run_id} is also {other[0]} (a copy?)"))
                continue
            self._store(run, known.get(rel, (None, None))[0])
            result.indexed.append(run.run.run_id)
        for rel, (run_id, _) in known.items():
            if rel not in seen:
                self._delete(run_id)
                result.removed.append(run_id)
        return result

    def _delete(self, run_id: str) -> None:
        with self.con:
            for table in ("runs", "tests", "measurements"):
                self.con.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))

    def _store(self, data: RunData, previous_id: str | None) -> None:
        r = data.run
        row = {c: getattr(r, c) for c in _RUN_COLUMNS if c not in _COUNT_COLUMNS} | asdict(r.counts)
        row["sim_faults"] = json.dumps(list(r.sim_faults))
        row["started_at"] = iso_utc(r.started_at)
        row["ended_at"] = iso_utc(r.ended_at) if r.ended_at else None
        with self.con:
            for run_id in {r.run_id, previous_id} - {None}:
                for table in ("runs", "tests", "measurements"):
                    self.con.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            self.con.execute(
                f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({', '.join('?' * len(_RUN_COLUMNS))})",
                [row[c] for c in _RUN_COLUMNS],
            )
            self.con.executemany(
                "INSERT INTO tests VALUES (?, ?, ?, ?, ?, ?)",
                [(r.run_id, i, t.nodeid, t.outcome, t.reason, t.duration_s) for i, t in enumerate(data.tests)],
            )
            self.con.executemany(
                "INSERT INTO measurements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (r.run_id, i, m.nodeid, m.name, m.value, m.value_text, m.unit, m.low, m.high, m.outcome)
                    for i, m in enumerate(data.measurements)
                ],
            )

    # -- reading -------------------------------------------------------------------------------
    def runs(self, where: RunFilter = RunFilter()) -> list[RunRow]:
        """Every run matching, oldest first (by start time, then run id)."""
        sql, params = where.where()
        cur = self.con.execute(f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs{sql} ORDER BY started_at, run_id", params)
        return [_run_row(dict(zip(_RUN_COLUMNS, values))) for values in cur]

    def load(self, run: RunRow) -> RunData:
        tests = tuple(
            TestRow(*row)
            for row in self.con.execute(
                "SELECT nodeid, outcome, reason, duration_s FROM tests WHERE run_id = ? ORDER BY seq", (run.run_id,)
            )
        )
        measurements = tuple(
            MeasurementRow(*row)
            for row in self.con.execute(
                "SELECT nodeid, name, value, value_text, unit, low, high, outcome FROM measurements "
                "WHERE run_id = ? ORDER BY seq",
                (run.run_id,),
            )
        )
        return RunData(run, tests, measurements)


def _run_row(row: dict) -> RunRow:
    row["sim_faults"] = tuple(json.loads(row["sim_faults"]))
    row["started_at"] = datetime.fromisoformat(row["started_at"])
    row["ended_at"] = datetime.fromisoformat(row["ended_at"]) if row["ended_at"] else None
    row["counts"] = Counts(**{c: row.pop(c) for c in _COUNT_COLUMNS})
    return RunRow(**row)
