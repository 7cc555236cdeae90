"""Several server processes on one SQLite file (`paygo-bench serve --workers N`, docs/server.md
"Workers"): each keeps the device state it last committed, and the store's compare-and-set makes
a plan made on a stale one plan again, so replays are refused exactly once, no token count is
issued twice and formats registered through one process are found by the others; the refusal
audit stays bounded; a locked store answers 503; Ctrl-C / SIGTERM stop every worker with the
file whole, and a worker that dies stops the server with one line."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.fixtures.metrics_server import http_request
from bench.openpaygo.metrics.condense import build_request
from bench.openpaygo.metrics.errors import MetricsError
from bench.openpaygo.metrics.format import parse_data_format
from bench.secret import Secret
from bench.server import workers
from bench.server.app import create_app
from bench.server.config import MetricsServerConfig
from bench.server.devices import Device, DeviceRegistry
from bench.server.store import RefusalQuota, RequestRecord, Store
from tests.selftest.sigint import sigint_default

ROOT = Path(__file__).resolve().parents[2]
KEY_HEX = "a29ab82edc5fbbc41ec9530f6dac86b1"  # the public quick-test key (docs/tokens.md "Quick test")
KEY = Secret(KEY_HEX, "test key")
SERIAL = "WORKER-1"
START_DEADLINE_S = 30.0
JSON = {"Content-Type": "application/json"}

linux_only = pytest.mark.skipif(not workers.available(), reason="worker processes fork: Linux only")


def serve(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """`paygo-bench serve` on the test's db and device file; (process, url) once it listens."""
    devices = tmp_path / "devices.toml"
    devices.write_text(
        f'[[device]]\nserial_number = "{SERIAL}"\nsecret_key = "{KEY_HEX}"\nstarting_code = 123456789\n'
        "count = 1\nactive_until = 2099-01-01T00:00:00Z\n"
    )
    cmd = [sys.executable, "-m", "bench.cli", "serve", "--db", str(tmp_path / "m.db"), "--port", "0"]
    proc = subprocess.Popen(  # SIGINT at its default: one test stops it with Ctrl-C (tests/selftest/sigint.py)
        sigint_default([*cmd, "--devices", str(devices), *extra]),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, proc


def url_of(proc: subprocess.Popen) -> tuple[str, str]:
    line = proc.stdout.readline()  # type: ignore[union-attr]
    m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
    assert m, f"serve printed {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"  # type: ignore[union-attr]
    return m.group(1), line


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    for f in (proc.stdout, proc.stderr):
        if f:
            f.close()


def post(url: str, rc: int, token_count: int | None = None, fmt=None, data=None) -> tuple[int, dict]:
    values = dict(data or {"x": rc})
    if token_count is not None:
        values["token_count"] = token_count
    req = build_request(SERIAL, data=values, request_count=rc, data_format=fmt, auth_method="ra", key=KEY)
    answer = http_request(url + "/dd", "POST", req.body, {"Content-Type": req.content_type})
    return answer.status, json.loads(answer.body)


def state(db: Path) -> tuple[int, int, list]:
    """The stored (token_count, last_request_count, last_tokens) of the device."""
    with sqlite3.connect(db) as conn:
        count, rc, tokens = conn.execute(
            "SELECT token_count, last_request_count, last_tokens FROM devices WHERE serial_number = ?", (SERIAL,)
        ).fetchone()
    return count, rc, json.loads(tokens)


@linux_only
def test_two_processes_on_one_file_plan_from_the_stores_state(tmp_path):
    """Two server processes (each its own waitress, app and Store: what a worker is), addressed
    one by one, with requests of one device interleaved between them."""
    (pa, _), (pb, _) = serve(tmp_path, "--workers", "1"), serve(tmp_path, "--workers", "1")
    try:
        (a, _), (b, _) = url_of(pa), url_of(pb)
        db = tmp_path / "m.db"
        issued: dict[int, str] = {}

        def record_tokens() -> int:
            count, _, tokens = state(db)
            for t in tokens:
                assert issued.setdefault(t["count"], t["code"]) == t["code"], f"count {t['count']} issued twice"
            return count

        # A issues the first tokens; A now remembers that state (count c1)
        status, reply = post(a, 1, token_count=1)
        assert status == 201 and reply["tkl"], reply
        c1 = record_tokens()
        # the device reports 10 above (someone else gave it tokens): B issues new ones beyond
        status, reply_b = post(b, 2, token_count=c1 + 10)
        assert status == 201 and reply_b["tkl"], reply_b
        c2 = record_tokens()
        assert c2 > c1 + 10
        # A, whose memory still says c1, hears the device report c1: planned on A's state it would
        # resend the first tokens and set the count back; the store's says resend B's
        status, reply = post(a, 3, token_count=c1)
        assert status == 201 and reply["tkl"] == reply_b["tkl"], (reply, reply_b)
        assert record_tokens() == c2
        # B remembers rc 2: rc 3 (A accepted it) passes B's memory, the store refuses it
        assert post(b, 3)[0] == 409
        assert post(a, 2)[0] == 409
        # the same request to both at once, ten times: each accepted exactly once
        with ThreadPoolExecutor(2) as pool:
            for rc in range(4, 14):
                got = sorted(s for s, _ in pool.map(lambda u, rc=rc: post(u, rc), (a, b)))
                assert got == [201, 409], (rc, got)
        assert state(db)[0] == c2 and state(db)[1] == 13
        # a format registered through A, unknown to B a moment before, is found by B
        fmt_json = {"data_order": ["x", "y"]}
        assert post(b, 20, fmt=parse_data_format(fmt_json).with_id(1), data={"x": 1, "y": 2})[0] == 422
        answer = http_request(a + "/data_format", "POST", json.dumps(fmt_json).encode(), JSON)
        fid = json.loads(answer.body)["id"]
        assert post(b, 21, fmt=parse_data_format(fmt_json).with_id(fid), data={"x": 1, "y": 2})[0] == 201
    finally:
        stop(pa)
        stop(pb)
    with sqlite3.connect(tmp_path / "m.db") as conn:
        accepted = conn.execute("SELECT COUNT(*) FROM requests WHERE kind = 'device_data' AND status = 201").fetchone()
        assert accepted == (3 + 10 + 1,)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_the_refusal_audit_stays_bounded_with_two_writers(tmp_path):
    quota = RefusalQuota(excerpt_bytes=64, max_rows=5)
    err = MetricsError("unknown_device", "serial unknown", "sn")
    with Store(tmp_path / "m.db") as one, Store(tmp_path / "m.db") as two:
        for i in range(20):
            (one if i % 2 else two).record(
                RequestRecord(
                    received_at=datetime.now(UTC),
                    remote="127.0.0.1",
                    method="POST",
                    route="/dd",
                    kind="device_data",
                    content_type=None,
                    body=b"x" * i,
                    status=403,
                    error=err,
                ),
                quota,
            )
    with sqlite3.connect(tmp_path / "m.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM requests WHERE verdict = 'rejected'").fetchone() == (5,)
        assert conn.execute("SELECT value FROM meta WHERE key = 'refused_rows'").fetchone() == ("5",)


def test_a_store_locked_past_the_busy_timeout_answers_503_at_once(tmp_path):
    store = Store(tmp_path / "m.db", busy_timeout_s=0.2)
    registry = DeviceRegistry([Device(SERIAL, KEY, 123456789)], store)
    client = create_app(MetricsServerConfig(auth="none"), store, registry).test_client()
    other = Store(tmp_path / "m.db")  # another worker, in the middle of a commit
    try:
        with other.transaction():
            t = time.monotonic()
            answer = client.post("/dd", data=b'{"sn":"X","rc":1,"d":{"a":1}}', content_type="application/json")
            assert answer.status_code == 503 and answer.get_json()["error"] == "storage_unavailable"
            assert time.monotonic() - t < 2.0  # one busy timeout, not one for the row and one for its refusal
        assert store.requests() == []  # not stored: the store is what failed
        answer = client.post("/dd", data=b'{"sn":"X","rc":1,"d":{"a":1}}', content_type="application/json")
        assert answer.status_code == 201
    finally:
        other.close()
        store.close()


def test_workers_fall_back_to_one_process_where_they_cannot_run(monkeypatch):
    assert workers.resolve(None, tls=False) == (1, None)
    assert workers.resolve(3, tls=True)[0] == 1
    monkeypatch.setattr(workers.sys, "platform", "win32")
    n, why = workers.resolve(4, tls=False)
    assert n == 1 and why is not None and "win32" in why
    with pytest.raises(ValueError):
        workers.resolve(0, tls=False)


def worker_pids(line: str) -> list[int]:
    m = re.search(r"pids ([\d ]+)\)", line)
    assert m, line
    return [int(p) for p in m.group(1).split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]


@linux_only
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_workers_stop_cleanly(tmp_path, sig):
    proc, _ = serve(tmp_path, "--workers", "2", "--auth", "none")
    try:
        url, line = url_of(proc)
        pids = worker_pids(line)
        assert len(pids) == 2
        for rc in range(1, 7):  # a new connection each: either worker may take it
            body = json.dumps({"sn": "FREE", "rc": rc, "d": {"n": rc}}).encode()
            assert http_request(url + "/dd", "POST", body, JSON).status == 201
        proc.send_signal(sig)
        assert proc.wait(20) == 0
        assert not [p for p in pids if alive(p)]
    finally:
        stop(proc)
    with sqlite3.connect(tmp_path / "m.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM requests WHERE status = 201").fetchone() == (6,)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@linux_only
def test_a_worker_that_dies_stops_the_server_with_one_line(tmp_path):
    proc, _ = serve(tmp_path, "--workers", "2", "--auth", "none")
    try:
        _, line = url_of(proc)
        pids = worker_pids(line)
        os.kill(pids[1], signal.SIGKILL)
        assert proc.wait(20) == 3
        err = proc.stderr.read()  # type: ignore[union-attr]
        ended = [x for x in err.splitlines() if "ended" in x]
        assert ended == [
            f"paygo-bench serve: BENCH ERROR: worker 2 of 2 (pid {pids[1]}) ended (signal 9); the server stopped (docs/server.md, Workers)"
        ], err
        assert not alive(pids[0])
    finally:
        stop(proc)
