"""The results database: every run's record.json as rows, in SQLite (the embedded default,
reports/history.sqlite) or PostgreSQL (a lab's shared one), one schema written with SQLAlchemy
Core so both answer alike (docs/history.md, "The results database").

A run is keyed by its run_id and the SHA-256 of its record: the same record stored twice is one
row; a changed record with the same run id replaces the rows when it is not older (its
`updated_at`) than the stored one, so a run stored while `running` and finished later is
current, and a stale copy arriving late from the queue changes nothing. The embedded index of a
reports directory is also kept equal to it (`update`): a run whose record is gone is dropped
there, never from a shared database. The records stay the truth: an embedded index of an older
layout is rebuilt from them; one from a newer bench, or a shared database of a newer layout, is
refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.history.db import CONNECT_TIMEOUT_S, ResultsDbUrlError, scrub, shown, sqlalchemy_url
from bench.history.model import MeasurementRow, RunData, RunRow, TestRow
from bench.history.reader import RecordSkipped, parse_record
from bench.record.model import Counts, iso_utc
from bench.record.writer import RECORD_NAME

INDEX_NAME = "history.sqlite"
INDEX_VERSION = 3  # 2: verdict, suite and the tests hash per run; 3: updated_at, one schema for SQLite and PostgreSQL

_meta = sa.MetaData()
_T, _I, _F = sa.Text, sa.Integer, sa.Double
RUNS = sa.Table(
    "runs",
    _meta,
    sa.Column("run_id", _T, primary_key=True),
    *(sa.Column(c, _T, nullable=False) for c in ("record_path", "record_sha256", "station")),
    *(sa.Column(c, _T) for c in ("rig_file", "rig_sha256")),
    *(sa.Column(c, _T, nullable=False) for c in ("sim_faults", "operator", "status")),
    *(sa.Column(c, _T) for c in ("status_reason", "verdict", "verdict_reason", "suite")),
    *(sa.Column(c, _I) for c in ("suite_required", "suite_covered")),
    sa.Column("tests_sha256", _T, nullable=False),
    sa.Column("started_at", _T, nullable=False),  # UTC, ISO 8601 with Z: the same text on every backend
    sa.Column("ended_at", _T),
    sa.Column("updated_at", _T),
    *(sa.Column(c, _T, nullable=False) for c in ("bench_version", "dut_serial", "dut_model", "dut_firmware")),
    *(sa.Column(f.name, _I, nullable=False) for f in fields(Counts)),
    sa.Index("runs_started", "started_at"),
    sa.Index("runs_product", "dut_model", "dut_firmware"),
)
TESTS = sa.Table(
    "tests",
    _meta,
    sa.Column("run_id", _T, primary_key=True),
    sa.Column("seq", _I, primary_key=True),
    *(sa.Column(c, _T, nullable=False) for c in ("nodeid", "outcome")),
    sa.Column("reason", _T),
    sa.Column("duration_s", _F),
)
MEASUREMENTS = sa.Table(
    "measurements",
    _meta,
    sa.Column("run_id", _T, primary_key=True),
    sa.Column("seq", _I, primary_key=True),
    *(sa.Column(c, _T, nullable=False) for c in ("nodeid", "name")),
    sa.Column("value", _F),
    sa.Column("value_text", _T),
    sa.Column("unit", _T, nullable=False),
    *(sa.Column(c, _F) for c in ("low", "high")),
    sa.Column("outcome", _T, nullable=False),
    sa.Index("measurements_name", "name"),
)
# The layout version of a shared database (SQLite keeps it in PRAGMA user_version, as before).
META = sa.Table("bench_meta", _meta, sa.Column("key", _T, primary_key=True), sa.Column("value", _T, nullable=False))
_TABLES = (RUNS, TESTS, MEASUREMENTS)
_COUNT_COLUMNS = tuple(f.name for f in fields(Counts))  # RunRow.counts, one column each
_RUN_COLUMNS = tuple(c.name for c in RUNS.columns)


class HistoryIndexError(Exception):
    """The database cannot be used (written by a newer bench, not a results database, cannot be
    reached); the message says what to do and never holds a password."""


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
    older: list[str] = field(default_factory=list)  # run ids the database holds a newer record of


@dataclass(frozen=True)
class RunFilter:
    station: str | None = None
    rig_sha256: str | None = None  # the exact rig file (docs/history.md)
    product: str | None = None  # the DUT's model
    firmware: str | None = None

    def clauses(self) -> list:
        pairs = (
            (RUNS.c.station, self.station),
            (RUNS.c.rig_sha256, self.rig_sha256),
            (RUNS.c.dut_model, self.product),
            (RUNS.c.dut_firmware, self.firmware),
        )
        return [col == value for col, value in pairs if value is not None]


_WRITE = "paygo_write"
_LAYOUT_LOCK = 0x7061_7967_6F  # PostgreSQL advisory lock id held while the layout is checked and made


def _write_lock_first(engine: sa.Engine) -> None:
    """SQLite: a writing transaction takes the write lock at its BEGIN (BEGIN IMMEDIATE). Two runs
    sharing one reports/ (stations started together) otherwise both read "no tables yet" and the
    second's CREATE TABLE fails, or a read-then-write deadlocks with SQLITE_BUSY at once instead of
    waiting out the busy timeout. The driver's own implicit BEGIN is switched off so this one is
    the only one (SQLAlchemy's documented recipe for pysqlite transactions)."""

    @sa.event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(con) -> None:
        con.exec_driver_sql("BEGIN IMMEDIATE" if con.get_execution_options().get(_WRITE) else "BEGIN")


class HistoryIndex:
    """A results database. `where`: a SQLAlchemy URL (sqlite:///..., postgresql://...) or the
    path of an embedded SQLite file."""

    def __init__(self, where: str | Path) -> None:
        self.url = f"sqlite:///{Path(where).resolve()}" if isinstance(where, Path) else where
        self.shown = str(where) if isinstance(where, Path) else shown(where)
        try:
            u = sqlalchemy_url(self.url)
        except ResultsDbUrlError as e:
            raise HistoryIndexError(str(e)) from None
        self.sqlite = u.get_backend_name() == "sqlite"
        args: dict[str, Any] = {"timeout": 10.0} if self.sqlite else {"connect_timeout": CONNECT_TIMEOUT_S}
        self.engine = sa.create_engine(u, connect_args=args, poolclass=sa.pool.NullPool if self.sqlite else None)
        if self.sqlite:
            _write_lock_first(self.engine)
        self.writer = self.engine.execution_options(**{_WRITE: True})
        try:
            self._open()
        except sa.exc.SQLAlchemyError as e:
            self.engine.dispose()
            raise HistoryIndexError(self.describe_error(e)) from None
        except HistoryIndexError:
            self.engine.dispose()
            raise

    def describe_error(self, e: BaseException) -> str:
        """One line naming the database (password masked) and what the driver said."""
        orig = getattr(e, "orig", None) or e
        text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        if self.sqlite and isinstance(e, sa.exc.DatabaseError) and "not a database" in text:
            return f"{self.shown}: not a history index ({text}); delete it to rebuild it from the records"
        return scrub(f"{self.shown}: {type(orig).__name__}: {text}", self.url)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> HistoryIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the layout ------------------------------------------------------------------------------
    def _open(self) -> None:
        with self.writer.begin() as con:
            if not self.sqlite:  # stations opening a new database together: one lays it out, the others wait
                con.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LAYOUT_LOCK})
            version = self._version(con)
            if version > INDEX_VERSION:
                where = "the file" if self.sqlite else "the database"
                raise HistoryIndexError(
                    f"{self.shown} was written by a newer paygo-bench (index version {version}, this one reads up "
                    f"to {INDEX_VERSION}); update the bench"
                    + (", or delete the file to rebuild it from the records" if self.sqlite else "")
                    + ("" if self.sqlite else f" (or point it at another {where})")
                )
            if version == INDEX_VERSION:
                return
            if self.sqlite:  # an older embedded index: rebuilt from scratch (the records hold everything)
                for table in (*_TABLES, META):
                    con.execute(sa.text(f"DROP TABLE IF EXISTS {table.name}"))
            elif version:  # no older shared layout exists yet: a migration goes here when one does
                raise HistoryIndexError(f"{self.shown}: layout version {version} has no migration to {INDEX_VERSION}")
            elif sa.inspect(con).has_table("runs"):
                raise HistoryIndexError(f"{self.shown}: has a runs table but no bench_meta: not a results database")
            _meta.create_all(con)
            if self.sqlite:
                con.execute(sa.text(f"PRAGMA user_version = {INDEX_VERSION}"))
            else:
                con.execute(META.insert().values(key="layout_version", value=str(INDEX_VERSION)))

    def _version(self, con) -> int:
        if self.sqlite:
            return int(con.execute(sa.text("PRAGMA user_version")).scalar_one())
        if not sa.inspect(con).has_table(META.name):
            return 0
        value = con.execute(sa.select(META.c.value).where(META.c.key == "layout_version")).scalar()
        return int(value or 0)

    # -- writing ---------------------------------------------------------------------------------
    def store(self, data: RunData, *, replace_older: bool = False, previous_id: str | None = None) -> str:
        """Store one run: "stored", "unchanged" (this very record is there) or "older" (the
        database holds a newer record of this run: kept). `replace_older`: the record file is the
        truth whatever its age (the embedded index of its reports directory)."""
        r = data.run
        with self.writer.begin() as con:
            held = con.execute(
                sa.select(RUNS.c.record_sha256, RUNS.c.updated_at).where(RUNS.c.run_id == r.run_id)
            ).first()
            if held is not None and held.record_sha256 == r.record_sha256 and previous_id in (None, r.run_id):
                return "unchanged"
            new = iso_utc(r.updated_at) if r.updated_at else None
            if held is not None and not replace_older and held.updated_at and (new is None or new < held.updated_at):
                return "older"
            for run_id in {r.run_id, previous_id} - {None}:
                for table in _TABLES:
                    con.execute(table.delete().where(table.c.run_id == run_id))
            con.execute(RUNS.insert(), [_run_values(r)])
            if data.tests:
                con.execute(
                    TESTS.insert(),
                    [{"run_id": r.run_id, "seq": i, **asdict(t)} for i, t in enumerate(data.tests)],
                )
            if data.measurements:
                con.execute(
                    MEASUREMENTS.insert(),
                    [{"run_id": r.run_id, "seq": i, **asdict(m)} for i, m in enumerate(data.measurements)],
                )
        return "stored"

    def update(self, reports: Path, shown_as: str | None = None, mirror: bool = True) -> UpdateResult:
        """Store every reports/*/record.json that is new or changed. `mirror` (the embedded index of
        this directory): a record rewritten in place wins whatever its age, and a run whose record
        is gone is dropped. Otherwise (a shared database) runs of other stations are never touched."""
        result = UpdateResult()
        with self.engine.connect() as con:
            rows = con.execute(sa.select(RUNS.c.run_id, RUNS.c.record_path, RUNS.c.record_sha256)).all()
        known = {path: (run_id, sha) for run_id, path, sha in rows} if mirror else {}
        held = {run_id: sha for run_id, _path, sha in rows}
        seen: set[str] = set()
        prefix = shown_as if shown_as is not None else str(reports)
        for file in sorted(reports.glob(f"*/{RECORD_NAME}")):
            rel = file.relative_to(reports).as_posix()
            shown_path = f"{prefix.rstrip('/')}/{rel}"
            seen.add(rel)
            try:
                data = file.read_bytes()
            except OSError as e:
                result.skipped.append(Skipped(shown_path, f"cannot be read ({e.strerror or e})"))
                continue
            sha = hashlib.sha256(data).hexdigest()
            if known.get(rel, (None, None))[1] == sha or (not mirror and sha in held.values()):
                result.unchanged += 1
                continue
            try:
                run = parse_record(data, rel, sha)
            except RecordSkipped as e:
                result.skipped.append(Skipped(shown_path, str(e)))
                if rel in known:  # it was readable before: its old rows no longer say what the file does
                    self.delete(known[rel][0])
                continue
            if mirror:
                other = next((p for p, (i, _) in known.items() if i == run.run.run_id and p != rel), None)
                if other is not None and (reports / other).is_file():
                    result.skipped.append(Skipped(shown_path, f"run_id {run.run.run_id} is also {other} (a copy?)"))
                    continue
            outcome = self.store(run, replace_older=mirror, previous_id=known.get(rel, (None, None))[0])
            if outcome == "stored":
                result.indexed.append(run.run.run_id)
            elif outcome == "older":
                result.older.append(run.run.run_id)
            else:
                result.unchanged += 1
        for rel, (run_id, _) in known.items():
            if rel not in seen:
                self.delete(run_id)
                result.removed.append(run_id)
        return result

    def delete(self, run_id: str) -> None:
        with self.writer.begin() as con:
            for table in _TABLES:
                con.execute(table.delete().where(table.c.run_id == run_id))

    # -- reading ---------------------------------------------------------------------------------
    def runs(self, where: RunFilter = RunFilter()) -> list[RunRow]:
        """Every run matching, oldest first (by start time, then run id: sorted here, so every
        backend's collation gives the same order)."""
        with self.engine.connect() as con:
            rows = con.execute(sa.select(RUNS).where(*where.clauses())).mappings().all()
        return sorted((_run_row(dict(row)) for row in rows), key=lambda r: (r.started_at, r.run_id))

    def load(self, run: RunRow) -> RunData:
        with self.engine.connect() as con:
            tests = con.execute(
                sa.select(TESTS.c.nodeid, TESTS.c.outcome, TESTS.c.reason, TESTS.c.duration_s)
                .where(TESTS.c.run_id == run.run_id)
                .order_by(TESTS.c.seq)
            ).all()
            measurements = con.execute(
                sa.select(*(MEASUREMENTS.c[f.name] for f in fields(MeasurementRow)))
                .where(MEASUREMENTS.c.run_id == run.run_id)
                .order_by(MEASUREMENTS.c.seq)
            ).all()
        return RunData(run, tuple(TestRow(*t) for t in tests), tuple(MeasurementRow(*m) for m in measurements))


def _run_values(r: RunRow) -> dict:
    row = {c: getattr(r, c) for c in _RUN_COLUMNS if c not in _COUNT_COLUMNS} | asdict(r.counts)
    row["sim_faults"] = json.dumps(list(r.sim_faults))
    for name in ("started_at", "ended_at", "updated_at"):
        row[name] = iso_utc(row[name]) if row[name] else None
    return row


def _run_row(row: dict) -> RunRow:
    row["sim_faults"] = tuple(json.loads(row["sim_faults"]))
    for name in ("started_at", "ended_at", "updated_at"):
        row[name] = datetime.fromisoformat(row[name]) if row[name] else None
    row["counts"] = Counts(**{c: row.pop(c) for c in _COUNT_COLUMNS})
    return RunRow(**row)
