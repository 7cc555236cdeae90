"""The server's SQLite store: WAL, every row whole or absent, state kept across restarts."""

from __future__ import annotations

import os
import sqlite3
import threading
from datetime import UTC, datetime

import pytest

from bench.openpaygo.metrics.errors import MetricsError
from bench.openpaygo.metrics.format import parse_data_format
from bench.server import store as store_module
from bench.server.store import DeviceState, IssuedToken, RequestRecord, Store

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def record(status=201, error=None, **kw) -> RequestRecord:
    base = dict(
        received_at=T0,
        remote="127.0.0.1",
        method="POST",
        route="/dd",
        kind="device_data",
        content_type="application/json",
        body=b'{"sn":"X"}',
        status=status,
        error=error,
    )
    base.update(kw)
    return RequestRecord(**base)


def test_wal_mode_and_utc_rows(tmp_path):
    with Store(tmp_path / "m.db") as store:
        rid = store.record(
            record(
                serial_number="X",
                simple={"serial_number": "X"},
                data_times=(5, 9),
                reply=b"{}",
                reply_content_type="application/json",
                auth="ra",
            )
        )
        (row,) = store.requests()
        assert row.id == rid and row.received_at == "2026-01-02T03:04:05.678901Z"
        assert row.verdict == "accepted" and row.simple == {"serial_number": "X"} and row.body == b'{"sn":"X"}'
    conn = sqlite3.connect(tmp_path / "m.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_rejected_rows_carry_the_error(tmp_path):
    with Store(tmp_path / "m.db") as store:
        store.record(record(403, MetricsError("auth_invalid", "no", "a")))
        (row,) = store.requests()
        assert (row.status, row.verdict, row.error_code, row.error_where) == (403, "rejected", "auth_invalid", "a")


def test_inconsistent_rows_are_refused_whole(tmp_path):
    with Store(tmp_path / "m.db") as store:
        with pytest.raises(ValueError):
            store.record(record(403, None))
        with pytest.raises(ValueError):
            store.record(record(201, MetricsError("replay", "x")))
        assert store.requests() == []


def test_a_failed_transaction_leaves_nothing(tmp_path):
    with Store(tmp_path / "m.db") as store:
        with pytest.raises(RuntimeError):
            with store.transaction() as tx:
                tx.insert_request(record())
                tx.put_device_state(DeviceState("X", 3, 100.0, 4))
                raise RuntimeError("crash between the two writes")
        assert store.requests() == [] and store.device_state("X") is None


def test_failed_work_that_joined_an_open_batch_leaves_the_batch_s_other_work(tmp_path):
    """Work that opens a batch is rolled back whole; work that joins one (here nested, as a
    concurrent request joins) is undone alone, and the rest of the batch is committed."""
    with Store(tmp_path / "m.db") as store:
        with store.transaction() as outer:
            outer.put_device_state(DeviceState("KEPT", 1))
            with pytest.raises(RuntimeError):
                with store.transaction() as inner:
                    inner.insert_request(record())
                    inner.put_device_state(DeviceState("X", 3, 100.0, 4))
                    raise RuntimeError("crash between the two writes")
        assert store.requests() == [] and store.device_state("X") is None
        assert store.device_state("KEPT") == DeviceState("KEPT", 1)


def test_a_device_state_is_swapped_only_from_exactly_the_stored_one(tmp_path):
    token = IssuedToken("123456789", 3, "set_time", 7)
    stored = DeviceState("X", 3, 1700000000.0, 42, None, 1800000000.5, (token,))
    new = DeviceState("X", 4, 1700000001.0, 43, None, 1800000000.5, ())
    with Store(tmp_path / "m.db") as store:
        with store.transaction() as tx:
            assert not tx.swap_device_state(DeviceState("X", 0), new)  # no row: nothing written
        assert store.device_state("X") is None
        store.put_device_state(stored)
        others = [
            DeviceState("X", 2, 1700000000.0, 42, None, 1800000000.5, (token,)),
            DeviceState("X", 3, None, 42, None, 1800000000.5, (token,)),
            DeviceState("X", 3, 1700000000.0, 41, None, 1800000000.5, (token,)),
            DeviceState("X", 3, 1700000000.0, 42, 0.0, 1800000000.5, (token,)),
            DeviceState("X", 3, 1700000000.0, 42, None, 1800000000.0, (token,)),
            DeviceState("X", 3, 1700000000.0, 42, None, 1800000000.5, ()),
            DeviceState("Y", 3, 1700000000.0, 42, None, 1800000000.5, (token,)),
        ]
        for other in others:
            with store.transaction() as tx:
                assert not tx.swap_device_state(other, new), other
            assert store.device_state("X") == stored
        with store.transaction() as tx:  # the same state, its ts read back as a whole number
            assert tx.swap_device_state(DeviceState("X", 3, 1700000000, 42, None, 1800000000.5, (token,)), new)
        assert store.device_state("X") == new


def test_device_state_survives_a_restart(tmp_path):
    token = IssuedToken("123456789", 3, "set_time", 7)
    with Store(tmp_path / "m.db") as store:
        store.put_device_state(DeviceState("X", 3, 1700000000.5, 42, 1800000000.0, 1800000000.0, (token,)))
    with Store(tmp_path / "m.db") as store:
        state = store.device_state("X")
    assert state == DeviceState("X", 3, 1700000000.5, 42, 1800000000.0, 1800000000.0, (token,))


def test_data_formats_get_ids_and_the_same_format_keeps_its_id(tmp_path):
    fmt = parse_data_format({"data_order": ["token_count", "x"], "historical_data_interval": -60})
    with Store(tmp_path / "m.db") as store:
        first = store.add_data_format(fmt)
        assert store.add_data_format(fmt) == first
        assert store.add_data_format(parse_data_format({"data_order": ["y"]}), id=12) == 12
    with Store(tmp_path / "m.db") as store:
        assert store.data_format(first).data_order == ("token_count", "x")
        assert store.data_format(12).id == 12 and store.data_format(99) is None


def test_time_range_query(tmp_path):
    with Store(tmp_path / "m.db") as store:
        store.record(record(serial_number="A", simple={}, data_times=(100, 200)))
        store.record(record(serial_number="B", simple={}, data_times=(300, 400)))
        store.record(record(403, MetricsError("auth_invalid", "x"), serial_number="A", data_times=(100, 200)))
        assert [r.serial_number for r in store.device_data_between(150, 350)] == ["A", "B"]
        assert [r.serial_number for r in store.device_data_between(201, 299)] == []
        assert [r.serial_number for r in store.device_data_between(0, 1000, "B")] == ["B"]


def test_naive_times_are_refused(tmp_path):
    with Store(tmp_path / "m.db") as store:
        with pytest.raises(ValueError, match="UTC"):
            store.record(record(received_at=datetime(2026, 1, 1)))


@pytest.mark.skipif(store_module.fcntl is None, reason="Windows: the store keeps synchronous=FULL (no fcntl)")
def test_a_commit_is_answered_only_after_its_log_is_flushed_outside_the_write_lock(tmp_path, monkeypatch):
    """Durability moved out of SQLite's COMMIT (synchronous=NORMAL) into the store's own flush of
    `<db>-wal`: a power cut cannot be made here, so this holds the order that makes it safe. The
    transaction returns only after the flush of the log file; while the flush runs another
    process can take the file's write lock and another thread can use the connection (the
    overlap that is the point)."""
    db = tmp_path / "m.db"
    seen: list[tuple[str, bool, bool]] = []
    real_fsync = os.fsync

    def spying_fsync(fd: int) -> None:
        name = "wal" if store._wal is not None and fd == store._wal._fd else "other"
        lock_fd = os.open(str(db) + "-lock", os.O_RDWR)
        try:
            store_module.fcntl.flock(lock_fd, store_module.fcntl.LOCK_EX | store_module.fcntl.LOCK_NB)
            file_lock_free = True  # another process could commit now
            store_module.fcntl.flock(lock_fd, store_module.fcntl.LOCK_UN)
        except BlockingIOError:
            file_lock_free = False
        finally:
            os.close(lock_fd)
        got = store._lock.acquire(blocking=False)  # the connection: free for another thread
        if got:
            store._lock.release()
        seen.append((name, file_lock_free, got))
        real_fsync(fd)

    store = Store(db)
    try:
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: the flush is the store's
        monkeypatch.setattr(store_module.os, "fsync", spying_fsync)
        done = threading.Event()

        def write() -> None:
            store.record(record(serial_number="X"))
            done.set()

        writer = threading.Thread(target=write)
        writer.start()
        writer.join(10)
        assert done.is_set()
        wal_flushes = [s for s in seen if s[0] == "wal"]
        assert wal_flushes, seen  # the commit's log was flushed before record() returned
        assert all(free and conn for _, free, conn in wal_flushes), wal_flushes
    finally:
        monkeypatch.undo()
        store.close()


def test_a_failed_flush_is_not_answered_as_stored(tmp_path, monkeypatch):
    """A commit whose log flush failed (an I/O error) is not known to be on the disk: the request
    is answered as not stored (the store raises), never as stored."""
    if store_module.fcntl is None:
        pytest.skip("Windows: the store keeps synchronous=FULL (no fcntl)")
    with Store(tmp_path / "m.db") as store:
        store.record(record(serial_number="X"))  # the log exists and its name is durable

        def failing_sync() -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(store._wal, "sync", failing_sync)
        with pytest.raises(sqlite3.OperationalError, match="could not commit: .*Input/output error"):
            store.record(record(serial_number="Y"))
        monkeypatch.undo()
        store.record(record(serial_number="Z"))  # the next commit flushes again


def test_a_failed_flush_of_the_logs_name_is_made_again_by_the_next_commit(tmp_path, monkeypatch):
    """The first flush also makes the log's directory entry durable; if that fails, that commit
    is answered as not stored (the flush raises) and the next flush makes the directory entry
    durable again (before, the failure was never retried: the log's name could stay volatile
    for the server's life)."""
    if store_module.fcntl is None:
        pytest.skip("Windows: the store keeps synchronous=FULL (no fcntl)")
    with Store(tmp_path / "m.db") as store:
        store.record(record(serial_number="X"))  # the log exists
        synced: list[str] = []
        real = store_module._sync_directory

        def failing_once(folder) -> None:
            synced.append(str(folder))
            if len(synced) == 1:
                raise OSError(5, "Input/output error")
            real(folder)

        monkeypatch.setattr(store_module, "_sync_directory", failing_once)
        wal = store_module.WalSync(tmp_path / "m.db")  # a process's first flush, as at its start
        with pytest.raises(OSError, match="Input/output error"):
            wal.sync()
        wal.sync()
        wal.sync()
        wal.close()
    assert synced == [str(tmp_path)] * 2  # failed, made again by the next flush, then kept


def test_without_a_write_ahead_log_sqlite_flushes_each_commit_itself(tmp_path):
    """A file system where SQLite cannot use WAL keeps its rollback journal: then there is no
    log for the store to flush, and SQLite's own synchronous=FULL makes each commit durable."""
    db = tmp_path / "m.db"
    real_connect = sqlite3.connect

    class NoWal(sqlite3.Connection):
        def execute(self, sql, *args):  # type: ignore[override]
            if sql.strip().upper() == "PRAGMA JOURNAL_MODE=WAL":
                return super().execute("PRAGMA journal_mode=DELETE")
            return super().execute(sql, *args)

    def connect(*args, **kw):
        return real_connect(*args, factory=NoWal, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store_module.sqlite3, "connect", connect)
        with Store(db) as store:
            assert store._wal is None
            assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
            store.record(record(serial_number="X"))
            assert store.requests()[0].serial_number == "X"
