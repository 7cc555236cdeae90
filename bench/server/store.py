"""Durable storage for the Metrics server: one SQLite file (stdlib) in WAL mode.

Every request the server answers (accepted or refused, any route) becomes exactly one row,
written and committed BEFORE the reply leaves: a server killed right after answering still has
the row. A row and the device state it changes (replay counters, token count, tokens issued) are
written in one transaction, so a crash never leaves half of it. Each commit survives a power cut,
not only a killed process: the write-ahead log is flushed to the disk (fsync) before any request
of the commit is answered (`WalSync`).

Accepted requests are kept whole, forever. Refused ones are an audit, bounded whatever a device
sends (`RefusalQuota`): their metadata and a capped excerpt of the body, the oldest dropped once
the refused rows exceed their quota (docs/server.md "Storage").

Times are UTC: ISO 8601 text for people, UNIX seconds for queries."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.openpaygo.metrics.errors import MetricsError
from bench.openpaygo.metrics.format import DataFormat, parse_data_format
from bench.openpaygo.metrics.wire import canonical_json

try:
    import fcntl
except ImportError:  # Windows: one server process, SQLite's busy timeout alone
    fcntl = None  # type: ignore[assignment]

SCHEMA_VERSION = 1
# How long a write waits for SQLite's file lock (held by another process's commit: `serve
# --workers`) before the request is answered 503 storage_unavailable; a commit holds it ~1 ms.
BUSY_TIMEOUT_S = 5.0
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
CREATE INDEX IF NOT EXISTS requests_refused ON requests (id) WHERE verdict = 'rejected';
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


# What a refused row weighs against its quota: the bytes of its variable columns, plus a fixed
# share for the rest (times, status, method, kind, the row's and its index entries' overhead).
REFUSED_ROW_OVERHEAD = 256
_REFUSED_ROW_BYTES = (
    "(length(body) + IFNULL(length(reply), 0) + length(CAST(remote AS BLOB)) + length(CAST(route AS BLOB))"
    " + IFNULL(length(CAST(content_type AS BLOB)), 0) + IFNULL(length(CAST(error_message AS BLOB)), 0)"
    " + IFNULL(length(CAST(error_where AS BLOB)), 0) + IFNULL(length(CAST(serial_number AS BLOB)), 0)"
    f" + {REFUSED_ROW_OVERHEAD})"
)
# A refused row's text columns (route, Content-Type, error message and where, serial, remote)
# and its stored reply are cut to this many bytes each: a 16 KB header or a message quoting a key
# cannot make one row large.
REFUSED_FIELD_BYTES = 1024
_REFUSED_TEXT_FIELDS = 6


@dataclass(frozen=True)
class RefusalQuota:
    """What the store keeps of refused requests. A refusal is an audit entry, not evidence of
    data: anyone reaching the server can send 4 MB bodies or thousands of unknown serials, and
    the bench must stay up and bounded whatever a device sends. So a refused row keeps its
    metadata and the first `excerpt_bytes` of the body (`body_length` keeps the length received),
    and once the refused rows exceed `max_rows` or `max_bytes` (`_REFUSED_ROW_BYTES`) the
    oldest are deleted, the newest never. Accepted rows are not counted and never dropped.

    16 KB of excerpt keeps a device's request whole (the spec's use case sends under 1 KB, the
    simple JSON form of a one-hour session 4.5 KB, the virtual DUT under 6000 bytes), so the
    refusal can still be decoded to see what the device sent wrong; a 4 MB body keeps 0.4%.
    2,000 refusals cover any test run of a misbehaving device; 8 MB caps large ones (about
    400 rows at the full excerpt)."""

    excerpt_bytes: int = 16 * 1024
    max_rows: int = 2000
    max_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.excerpt_bytes < 0:
            raise ValueError("excerpt_bytes must be 0 or more")
        if self.max_rows < 1:
            raise ValueError("max_rows must be at least 1 (the newest refusal is always kept)")
        if self.max_bytes < self.row_bytes_max:
            raise ValueError(f"max_bytes must hold one refused row at least ({self.row_bytes_max} bytes)")

    @property
    def row_bytes_max(self) -> int:
        """The most one refused row can weigh."""
        return self.excerpt_bytes + (_REFUSED_TEXT_FIELDS + 1) * REFUSED_FIELD_BYTES + REFUSED_ROW_OVERHEAD


DEFAULT_REFUSAL_QUOTA = RefusalQuota()


def _cut_text(text: str | None, limit: int = REFUSED_FIELD_BYTES) -> str | None:
    """`text` within `limit` UTF-8 bytes, ending in "..." if it was cut."""
    if text is None or len(text) * 4 <= limit:
        return text
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore") + "..."


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

    @property
    def body_is_excerpt(self) -> bool:
        """True when `body` is not all that was received: a refused request's capped excerpt, or
        nothing of a body refused unread as too large (`body_length` is the length received)."""
        return len(self.body) < self.body_length


def _tokens_json(tokens: tuple[IssuedToken, ...]) -> str:
    return json.dumps([t.__dict__ for t in tokens]) if tokens else "[]"


def _state_columns(s: DeviceState) -> tuple:
    """A state's columns after serial_number, in table order, as stored."""
    return (
        s.token_count,
        s.last_timestamp,
        s.last_request_count,
        s.target_until,
        s.synced_target,
        _tokens_json(s.last_tokens),
    )


class Tx:
    """Operations inside one transaction (see Store.transaction)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def insert_request(self, rec: RequestRecord, quota: RefusalQuota = DEFAULT_REFUSAL_QUOTA) -> int:
        """Store the request; a refused one as its audit entry (`RefusalQuota`): the body cut to
        its excerpt, and the oldest refused rows deleted while the refused rows exceed the quota."""
        err = rec.error
        if (err is None) != (rec.status < 400):
            raise ValueError("a refused request needs its error, an accepted one none")
        body_length = rec.body_length if rec.body_length is not None else len(rec.body)
        if err is not None:
            cut = _cut_text
            err = MetricsError(err.code, cut(err.message) or "", cut(err.where) or "", status=err.status)
            rec = replace(
                rec,
                remote=cut(rec.remote) or "",
                route=cut(rec.route) or "",
                content_type=cut(rec.content_type),
                serial_number=cut(rec.serial_number),
                body=rec.body[: quota.excerpt_bytes],
                reply=rec.reply[:REFUSED_FIELD_BYTES] if rec.reply is not None else None,
            )
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
                body_length,
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
        rid = int(cur.lastrowid)  # type: ignore[arg-type]
        if err is not None:
            self._keep_refusals_within(quota, rid)
        return rid

    def _keep_refusals_within(self, quota: RefusalQuota, newest: int) -> None:
        """Count the refused row `newest` in the totals (meta: refused_rows, refused_bytes) and
        delete the oldest refused rows while the totals exceed the quota; `newest` stays."""
        (size,) = self._c.execute(f"SELECT {_REFUSED_ROW_BYTES} FROM requests WHERE id = ?", (newest,)).fetchone()
        rows, total = self._refused_totals()
        rows, total = rows + 1, total + int(size)
        while rows > quota.max_rows or total > quota.max_bytes:
            oldest = self._c.execute(
                f"SELECT id, {_REFUSED_ROW_BYTES} FROM requests WHERE verdict = 'rejected' AND id < ?"
                " ORDER BY id LIMIT 256",
                (newest,),
            ).fetchall()
            if not oldest:
                break
            last = None
            for rid, weight in oldest:
                if rows <= quota.max_rows and total <= quota.max_bytes:
                    break
                last, rows, total = rid, rows - 1, total - int(weight)
            self._c.execute("DELETE FROM requests WHERE verdict = 'rejected' AND id <= ?", (last,))
        self._set_refused_totals(rows, total)

    def _refused_totals(self) -> tuple[int, int]:
        got = dict(self._c.execute("SELECT key, value FROM meta WHERE key IN ('refused_rows', 'refused_bytes')"))
        return int(got.get("refused_rows", 0)), int(got.get("refused_bytes", 0))

    def _set_refused_totals(self, rows: int, total: int) -> None:
        self._c.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (("refused_rows", str(rows)), ("refused_bytes", str(total))),
        )

    def device_state(self, serial: str) -> DeviceState | None:
        row = self._c.execute(
            "SELECT serial_number, token_count, last_timestamp, last_request_count, target_until, synced_target,"
            " last_tokens FROM devices WHERE serial_number = ?",
            (serial,),
        ).fetchone()
        if row is None:
            return None
        tokens = tuple(IssuedToken(**t) for t in json.loads(row[6])) if row[6] != "[]" else ()
        return DeviceState(row[0], row[1], row[2], row[3], row[4], row[5], tokens)

    def put_device_state(self, s: DeviceState) -> None:
        tokens = _tokens_json(s.last_tokens)
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

    def swap_device_state(self, expected: DeviceState, new: DeviceState) -> bool:
        """Write `new` only if the stored state is exactly `expected` (every column compared, in
        one statement: no read first); False, and nothing written, otherwise (no row either)."""
        cur = self._c.execute(
            "UPDATE devices SET token_count = ?, last_timestamp = ?, last_request_count = ?, target_until = ?,"
            " synced_target = ?, last_tokens = ?, updated_at = ? WHERE serial_number = ? AND serial_number = ?"
            " AND token_count IS ? AND last_timestamp IS ? AND last_request_count IS ? AND target_until IS ?"
            " AND synced_target IS ? AND last_tokens IS ?",
            (
                *_state_columns(new),
                iso(utc_now()),
                new.serial_number,
                expected.serial_number,
                *_state_columns(expected),
            ),
        )
        return cur.rowcount == 1

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


class WriterLock:
    """One writing batch at a time across the processes on this file (`serve --workers`): a
    `flock` on `<db>-lock`, taken before BEGIN IMMEDIATE and released after the COMMIT.

    SQLite serialises writers itself, but a writer that finds the file locked sleeps in its busy
    handler for 1, 2, 5 ... up to 100 ms before trying again, while a commit holds the lock about
    a millisecond: two workers colliding lost a few ms a request, up to 136 ms at p99, and
    gained no throughput. Here a waiter tries again after 0.1 ms, then up to 1 ms, until the
    busy timeout (then the request is answered 503 storage_unavailable). Without fcntl (Windows,
    one process there) there is nothing to take: SQLite's own busy timeout still serialises."""

    def __init__(self, db: Path, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._fd: int | None = os.open(str(db) + "-lock", os.O_RDWR | os.O_CREAT, 0o644) if fcntl is not None else None

    def acquire(self) -> None:
        if self._fd is None or fcntl is None:
            return
        deadline = time.monotonic() + self.timeout_s
        pause = 0.0001
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise sqlite3.OperationalError(
                        f"database is locked: another writer held it over {self.timeout_s} s"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.001)

    def release(self) -> None:
        if self._fd is not None and fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class WalSync:
    """Makes a commit durable after SQLite's write lock is released: the database runs at
    `synchronous=NORMAL` (in WAL mode a commit appends its frames to `<db>-wal` and does not
    flush them; checkpoints still flush the log before copying it into the database and the
    database before the log restarts: https://www.sqlite.org/pragma.html#pragma_synchronous,
    https://www.sqlite.org/wal.html), and the committing thread flushes the log itself before it
    answers. What an fsync flushes is the file's, whoever wrote it, so every frame appended up to
    then is on the disk, the commit's with them; a commit whose flush had not returned was never
    answered, and the log's checksums drop its torn tail at recovery.

    Why: under `synchronous=FULL` SQLite flushes inside COMMIT, holding the write lock, so the
    server's worker processes took turns on the disk (docs/server.md "Workers"). Here one
    process's flush overlaps the next commit of another, and the threads of a process queue
    their next batch while it waits. Without fcntl (Windows) the store keeps `synchronous=FULL`."""

    def __init__(self, db: Path) -> None:
        self.path = Path(str(db) + "-wal")
        self._fd: int | None = None
        self._opening = threading.Lock()  # the threads of a process flush at once: one opens

    def sync(self) -> None:
        fd = self._fd
        if fd is None:  # the log exists once the schema was written; its name made durable once
            with self._opening:
                if self._fd is None:
                    opened = os.open(self.path, os.O_RDONLY)
                    try:
                        _sync_directory(self.path.parent)
                    except BaseException:
                        os.close(opened)  # not kept: the next commit makes the name durable again
                        raise
                    self._fd = opened
                fd = self._fd
        os.fsync(fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _sync_directory(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Store:
    """The server's SQLite file. One connection, serialised by a lock: SQLite has one writer at
    a time anyway, and a short critical section keeps replay checks and token counts exact."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()  # the connection: one statement or unit of work at a time
        self._commit_lock = threading.Lock()  # one COMMIT at a time (group commit: `transaction`)
        self._batch = 1  # the batch new work goes into
        self._committed = 0  # the last batch committed (or failed)
        self._batch_open = False
        self._failed: dict[int, BaseException] = {}
        self._writer = WriterLock(self.path, busy_timeout_s)
        self._conn = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
        )
        mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        # the store flushes the log itself only where there is one (a file system without the
        # shared memory WAL needs keeps SQLite's rollback journal) and fcntl (not Windows)
        self._wal = WalSync(self.path) if fcntl is not None and str(mode).lower() == "wal" else None
        self._conn.execute(f"PRAGMA synchronous={'NORMAL' if self._wal is not None else 'FULL'}")
        self._formats: dict[int, DataFormat] = {}
        with self._lock:
            self._conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
        with self.transaction() as tx:
            version = tx._c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if version is None:
                tx._c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(version[0]) != SCHEMA_VERSION:
                raise RuntimeError(f"{self.path}: store schema {version[0]}, this bench reads {SCHEMA_VERSION}")
            # counted again at every start: a file written before the quota (or by an older
            # bench) gets its true totals, and the next refusal trims it to the quota
            rows, total = tx._c.execute(
                f"SELECT COUNT(*), IFNULL(SUM({_REFUSED_ROW_BYTES}), 0) FROM requests WHERE verdict = 'rejected'"
            ).fetchone()
            tx._set_refused_totals(int(rows), int(total))

    def close(self) -> None:
        with self._commit_lock, self._lock:
            if self._batch_open:  # a unit of work not yet waited for (none, once every caller returned)
                self._conn.execute("COMMIT")
                self._batch_open = False
                self._writer.release()
            self._conn.close()
            self._writer.close()
            if self._wal is not None:
                self._wal.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One unit of work, all or nothing (rolled back whole on any exception), durable when
        this returns: it is committed (fsync) before the caller answers.

        Group commit: the work goes into the batch that is open (BEGIN IMMEDIATE), and one
        COMMIT makes the whole batch durable. While one thread's COMMIT waits on the disk, the
        others queue their work into the next batch, so concurrent requests share one fsync
        instead of waiting for one each; none returns before the batch holding its work is
        committed, and if that COMMIT fails, every transaction in the batch raises. Work that
        joins an open batch is a SAVEPOINT (undone alone); work that opens the batch has it to
        itself until it ends (the lock), so a ROLLBACK undoes it: two statements fewer."""
        with self._lock:
            opened = not self._batch_open
            if opened:
                self._writer.acquire()
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                except BaseException:
                    self._writer.release()
                    raise
                self._batch_open = True
            else:
                self._conn.execute("SAVEPOINT tx")
            try:
                yield Tx(self._conn)
            except BaseException as e:
                if self._conn.in_transaction and not opened:
                    self._conn.execute("ROLLBACK TO tx")
                    self._conn.execute("RELEASE tx")
                elif self._conn.in_transaction:  # the batch holds this work only
                    self._conn.execute("ROLLBACK")
                    self._batch_open = False
                    self._writer.release()
                else:  # SQLite rolled the whole batch back (disk full, I/O error): it is lost
                    self._failed[self._batch] = e
                    self._batch, self._batch_open = self._batch + 1, False
                    self._writer.release()
                raise
            if not opened:
                self._conn.execute("RELEASE tx")
            batch = self._batch
        self._durable(batch)

    def _durable(self, batch: int) -> None:
        """Return once batch `batch` is committed: commit it unless another thread did."""
        with self._commit_lock:
            if self._committed < batch:
                wrote = False
                with self._lock:
                    current, self._batch = self._batch, self._batch + 1
                    try:
                        if self._batch_open:
                            self._conn.execute("COMMIT")
                            wrote = True
                    except BaseException as e:
                        if self._conn.in_transaction:
                            self._conn.execute("ROLLBACK")
                        self._failed[current] = e
                    if self._batch_open:
                        self._writer.release()
                    self._batch_open = False
                if wrote and self._wal is not None:  # the flush, outside the connection and the write lock
                    try:
                        self._wal.sync()
                    except OSError as e:  # committed, not known to be on the disk: not answered as stored
                        self._failed[current] = e
                self._committed = current
                for old in [b for b in self._failed if b < current - 1000]:
                    del self._failed[old]  # long answered
            failed = self._failed.get(batch)
        if failed is not None:
            raise sqlite3.OperationalError(f"the store could not commit: {failed}") from failed

    # -- single-transaction helpers ------------------------------------------------------------
    def record(self, rec: RequestRecord, quota: RefusalQuota = DEFAULT_REFUSAL_QUOTA) -> int:
        with self.transaction() as tx:
            return tx.insert_request(rec, quota)

    def add_data_format(self, fmt: DataFormat, id: int | None = None) -> int:
        with self.transaction() as tx:
            return tx.add_data_format(fmt, id)

    def data_format(self, id: int) -> DataFormat | None:
        """A registered format (formats never change once registered, so they are cached; a miss
        is not: another process on the file may register it next)."""
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
