"""Durable storage for the Metrics server: one SQLite file (stdlib) in WAL mode.

Every request the server answers (accepted or refused, any route) becomes exactly one row,
written and committed BEFORE the reply leaves: a server killed right after answering still has
the row. A row and the device state it changes (replay counters, token count, tokens issued) are
written in one transaction, so a crash never leaves half of it. `synchronous=FULL` makes each
commit survive a power cut, not only a killed process.

Times are UTC: ISO 8601 text for people, UNIX seconds for queries."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.openpaygo.metrics.errors import MetricsError
from bench.openpaygo.metrics.format import DataFormat, parse_data_format
from bench.openpaygo.metrics.wire import canonical_json

SCHEMA_VERSION = 1
SQLITE_MAX_INT = 2**63 - 1  # the largest integer an SQLite INTEGER holds
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,            -- ISO 8601 UTC with microseconds
    received_unix REAL NOT NULL,
    remote TEXT NOT NULL,
    method TEXT NOT NULL,
    route TEXT NOT NULL,                  -- path and query string as received
    kind TEXT NOT NULL,                   -- device_data | data_format | query | other
    content_type TEXT,
    body BLOB NOT NULL,                   -- the raw bytes (empty if refused unread: too large)
    body_length INTEGER NOT NULL,
    status INTEGER NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('accepted', 'rejected')),
    error_code TEXT,
    error_message TEXT,
    error_where TEXT,
    serial_number TEXT,
    auth TEXT,                            -- how it was authenticated: ra, da (...), jwt, none
    simple_json TEXT,                     -- the request expanded to the simple form
    data_time_min REAL,
    data_time_max REAL,
    reply BLOB,
    reply_content_type TEXT,
    CHECK ((verdict = 'accepted') = (status < 400)),
    CHECK ((error_code IS NULL) = (verdict = 'accepted'))
);
CREATE INDEX IF NOT EXISTS requests_data_time ON requests (kind, data_time_min, data_time_max);
CREATE INDEX IF NOT EXISTS requests_serial ON requests (serial_number, id);
CREATE TABLE IF NOT EXISTS data_formats (
    id INTEGER PRIMARY KEY,
    canonical TEXT NOT NULL UNIQUE,       -- compact JSON of the simple Data Format object
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    serial_number TEXT PRIMARY KEY,
    token_count INTEGER NOT NULL,         -- the last count the server issued (or the device reported)
    last_timestamp REAL,                  -- replay protection: the highest accepted ts ...
    last_request_count INTEGER,           -- ... and rc
    target_until REAL,                    -- where tokens should bring the device (UNIX UTC), NULL: none
    synced_target REAL,                   -- the target the last tokens were issued for
    last_tokens TEXT NOT NULL DEFAULT '[]',
    updated_at TEXT NOT NULL
);
"""


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    if dt.tzinfo is None:
        raise ValueError("times recorded by the bench must be timezone-aware (UTC)")
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class IssuedToken:
    code: str
    count: int
    kind: str  # "set_time" | "add_time"
    value: int  # raw activation value (days x time divider)


@dataclass(frozen=True)
class DeviceState:
    serial_number: str
    token_count: int
    last_timestamp: float | None = None
    last_request_count: int | None = None
    target_until: float | None = None
    synced_target: float | None = None
    last_tokens: tuple[IssuedToken, ...] = ()


@dataclass(frozen=True, kw_only=True)
class RequestFields:
    """What the server writes of a request and what it reads back alike: the request as received
    and what it was answered."""

    remote: str
    method: str
    route: str
    kind: str
    content_type: str | None
    body: bytes
    status: int
    serial_number: str | None = None
    auth: str | None = None
    reply_content_type: str | None = None


@dataclass(frozen=True, kw_only=True)
class RequestRecord(RequestFields):
    """One request and what the server answered, as it will be stored."""

    received_at: datetime
    error: MetricsError | None = None
    simple: dict | None = None
    data_times: tuple[float, float] | None = None
    reply: bytes | None = None
    body_length: int | None = None  # when the body was not read (too large)


@dataclass(frozen=True, kw_only=True)
class StoredRequest(RequestFields):
    """One stored row: the request as the store keeps it (times as text and UNIX, the verdict)."""

    id: int
    received_at: str
    received_unix: float
    body_length: int
    verdict: str
    error_code: str | None
    error_message: str | None
    error_where: str | None
    simple: dict | None = field(repr=False)
    reply: bytes | None = field(repr=False)


class Tx:
    """Operations inside one transaction (see Store.transaction)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def insert_request(self, rec: RequestRecord) -> int:
        err = rec.error
        if (err is None) != (rec.status < 400):
            raise ValueError("a refused request needs its error, an accepted one none")
        times = rec.data_times or (None, None)
        cur = self._c.execute(
            "INSERT INTO requests (received_at, received_unix, remote, method, route, kind, content_type, body,"
            " body_length, status, verdict, error_code, error_message, error_where, serial_number, auth,"
            " simple_json, data_time_min, data_time_max, reply, reply_content_type)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                iso(rec.received_at),
                rec.received_at.timestamp(),
                rec.remote,
                rec.method,
                rec.route,
                rec.kind,
                rec.content_type,
                rec.body,
                rec.body_length if rec.body_length is not None else len(rec.body),
                rec.status,
                "accepted" if err is None else "rejected",
                err.code if err else None,
                err.message if err else None,
                err.where if err else None,
                rec.serial_number,
                rec.auth,
                json.dumps(rec.simple) if rec.simple is not None else None,
                times[0],
                times[1],
                rec.reply,
                rec.reply_content_type,
            ),
        )
        return int(cur.lastrowid)  # type: ignore[arg-type]

    def device_state(self, serial: str) -> DeviceState | None:
        row = self._c.execute(
            "SELECT serial_number, token_count, last_timestamp, last_request_count, target_until, synced_target,"
            " last_tokens FROM devices WHERE serial_number = ?",
            (serial,),
        ).fetchone()
        if row is None:
            return None
        tokens = tuple(IssuedToken(**t) for t in json.loads(row[6]))
        return DeviceState(row[0], row[1], row[2], row[3], row[4], row[5], tokens)

    def put_device_state(self, s: DeviceState) -> None:
        tokens = json.dumps([t.__dict__ for t in s.last_tokens])
        self._c.execute(
            "INSERT INTO devices (serial_number, token_count, last_timestamp, last_request_count, target_until,"
            " synced_target, last_tokens, updated_at) VALUES (?,?,?,?,?,?,?,?)"
            " ON CONFLICT (serial_number) DO UPDATE SET token_count = excluded.token_count,"
            " last_timestamp = excluded.last_timestamp, last_request_count = excluded.last_request_count,"
            " target_until = excluded.target_until, synced_target = excluded.synced_target,"
            " last_tokens = excluded.last_tokens, updated_at = excluded.updated_at",
            (
                s.serial_number,
                s.token_count,
                s.last_timestamp,
                s.last_request_count,
                s.target_until,
                s.synced_target,
                tokens,
                iso(utc_now()),
            ),
        )

    def add_data_format(self, fmt: DataFormat, id: int | None = None) -> int:
        """Register a format; the same format registered twice keeps its first id."""
        canonical = canonical_json(fmt.to_json())
        row = self._c.execute("SELECT id FROM data_formats WHERE canonical = ?", (canonical,)).fetchone()
        if row is not None:
            if id is not None and row[0] != id:
                raise ValueError(f"this data format is already registered as id {row[0]}")
            return int(row[0])
        cur = self._c.execute(
            "INSERT INTO data_formats (id, canonical, created_at) VALUES (?,?,?)", (id, canonical, iso(utc_now()))
        )
        return int(cur.lastrowid)  # type: ignore[arg-type]


class Store:
    """The server's SQLite file. One connection, serialised by a lock: SQLite has one writer at
    a time anyway, and a short critical section keeps replay checks and token counts exact."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=10)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._formats: dict[int, DataFormat] = {}
        with self._lock:
            self._conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
        with self.transaction() as tx:
            version = tx._c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if version is None:
                tx._c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(version[0]) != SCHEMA_VERSION:
                raise RuntimeError(f"{self.path}: store schema {version[0]}, this bench reads {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back whole on any exception."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # -- single-transaction helpers ------------------------------------------------------------
    def record(self, rec: RequestRecord) -> int:
        with self.transaction() as tx:
            return tx.insert_request(rec)

    def add_data_format(self, fmt: DataFormat, id: int | None = None) -> int:
        with self.transaction() as tx:
            return tx.add_data_format(fmt, id)

    def data_format(self, id: int) -> DataFormat | None:
        """A registered format (formats never change once registered, so they are cached)."""
        if id in self._formats:
            return self._formats[id]
        if not 0 <= id <= SQLITE_MAX_INT:
            return None  # no id SQLite can hold: registered ids are all within its INTEGER
        with self._lock:
            row = self._conn.execute("SELECT canonical FROM data_formats WHERE id = ?", (id,)).fetchone()
        if row is None:
            return None
        fmt = parse_data_format(json.loads(row[0])).with_id(id)
        self._formats[id] = fmt
        return fmt

    def device_state(self, serial: str) -> DeviceState | None:
        with self._lock:
            return Tx(self._conn).device_state(serial)

    def put_device_state(self, state: DeviceState) -> None:
        with self.transaction() as tx:
            tx.put_device_state(state)

    # -- queries -------------------------------------------------------------------------------
    _COLUMNS = (
        "id, received_at, received_unix, remote, method, route, kind, content_type, body, body_length,"
        " status, verdict, error_code, error_message, error_where, serial_number, auth, simple_json,"
        " reply, reply_content_type"
    )

    def _rows(self, where: str, args: tuple) -> list[StoredRequest]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {self._COLUMNS} FROM requests WHERE {where} ORDER BY id", args
            ).fetchall()
        names = [c.strip() for c in self._COLUMNS.split(",")]
        out = []
        for r in rows:
            row = dict(zip(names, r))
            simple = row.pop("simple_json")
            out.append(StoredRequest(**row, simple=json.loads(simple) if simple is not None else None))
        return out

    def requests(self, after_id: int = 0) -> list[StoredRequest]:
        """Every stored request with an id above `after_id`, oldest first."""
        return self._rows("id > ?", (after_id,))

    def last_request_id(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM requests").fetchone()[0])

    def device_data_between(self, start: float, end: float, serial: str | None = None) -> list[StoredRequest]:
        """Accepted device-data requests holding any data timed within [start, end]."""
        where = "kind = 'device_data' AND verdict = 'accepted' AND data_time_max >= ? AND data_time_min <= ?"
        args: tuple = (start, end)
        if serial is not None:
            where += " AND serial_number = ?"
            args += (serial,)
        return self._rows(where, args)
