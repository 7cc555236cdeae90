"""Refused requests are a bounded audit (docs/server.md "Storage"): anyone reaching the server
could fill the disk with them before (the issue measured 11.5 MB for 10,000 unknown serials,
106 MB for 25 refused 4 MB bodies). Over real HTTP against a real server and SQLite file, with
the default quota."""

from __future__ import annotations

import http.client
import json
import sqlite3
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.openpaygo.metrics.condense import build_request
from bench.openpaygo.metrics.errors import MetricsError
from bench.openpaygo.metrics.wire import MAX_BODY_BYTES
from bench.report.metrics import requests_table_html
from bench.server import store as store_module  # its RefusalQuota is new: the module imports before the fix
from bench.server.evidence import summary
from bench.server.store import RequestRecord, Store

# The defaults docs/server.md "Storage" states (bench/server/store.py RefusalQuota), as literals:
# these tests ran against the code before the quota existed, to show they fail there.
KEPT_REFUSALS = 2000
EXCERPT_BYTES = 16 * 1024
MB = 1024 * 1024


class Client:
    """One keep-alive HTTP connection to the server (thousands of requests, one socket)."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def post(self, body: bytes, route: str = "/dd") -> tuple[int, bytes]:
        self.conn.request("POST", route, body=body, headers={"Content-Type": "application/json"})
        answer = self.conn.getresponse()
        data = answer.read()
        if answer.will_close:  # the server closed it: the next request opens another
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        return answer.status, data

    def close(self) -> None:
        self.conn.close()


def stranger(i: int) -> bytes:
    """A well-formed request from a serial the registry does not hold: refused unknown_device."""
    return json.dumps({"sn": f"STRANGER-{i:05d}", "rc": 1, "d": {"x": i}}).encode()


def refused_unknown(answer: tuple[int, bytes]) -> bool:
    status, body = answer
    return status == 403 and json.loads(body)["error"] == "unknown_device"


def files_size(db: Path) -> int:
    """What the store occupies on disk: the database file and SQLite's WAL and its index."""
    return sum(
        p.stat().st_size for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")) if p.exists()
    )


@pytest.fixture
def audited(start_metrics_server, tmp_path):
    """A server with the default config on tmp_path/audit.db, and a client to it."""
    db = tmp_path / "audit.db"
    server = start_metrics_server(db=db)
    client = Client(server.url)
    yield server, client, db
    client.close()


def test_ten_thousand_unknown_serials_keep_the_newest_refusals_in_a_bounded_file(audited):
    # Before: every refusal stored whole, and the file grew all along: 9.4 MB after 10,000
    # (database 5.2 MB, growing 0.5 KB a refusal, and the WAL 4.1 MB). After: the newest 2,000
    # kept; once the quota is reached SQLite reuses the pages of the rows deleted (no VACUUM: the
    # file never shrinks, it stops growing), and the WAL stays at its auto-checkpoint size (1000
    # pages, about 4 MB): 5.3 MB (database 1.1 MB), the same after 10,000 refusals as after 5,000.
    server, client, db = audited
    n = 10_000
    sizes = {}
    for i in range(n):
        answer = client.post(stranger(i))
        assert refused_unknown(answer), (i, answer)
        if i + 1 in (n // 2, n):
            sizes[i + 1] = files_size(db)
    assert db.stat().st_size <= 2 * MB, f"the database file is {db.stat().st_size / MB:.1f} MB after {n} refusals"
    assert sizes[n] <= 7 * MB, f"{sizes[n] / MB:.1f} MB with the WAL after {n} refusals"
    assert sizes[n] - sizes[n // 2] <= MB // 2, f"the file grew from {sizes[n // 2]} to {sizes[n]} bytes past the quota"
    refused = [r for r in server.requests() if r.verdict == "rejected"]
    assert len(refused) == KEPT_REFUSALS, f"{len(refused)} refused rows kept, the quota is {KEPT_REFUSALS}"
    assert [r.serial_number for r in refused] == [f"STRANGER-{i:05d}" for i in range(n - KEPT_REFUSALS, n)]
    assert all(r.error_code == "unknown_device" and r.body == stranger(int(r.serial_number[9:])) for r in refused)


def padded_stranger(i: int) -> bytes:
    """A valid request of about 4 MB (JSON whitespace), under the 4096 KB limit: it reaches the
    app and is refused unknown_device."""
    head = json.dumps({"sn": f"BIG-{i:02d}", "rc": 1, "d": {"x": i}}).encode()
    body = head[:-1] + b" " * (MAX_BODY_BYTES - 64 - len(head)) + b"}"
    assert MAX_BODY_BYTES - 128 < len(body) < MAX_BODY_BYTES
    return body


def test_refused_four_megabyte_bodies_add_a_small_bounded_amount(audited):
    # Before: each refused body stored whole, 25 of them added 104 MB. After: a 16 KB excerpt
    # each and the metadata (each text field cut at 1 KB): 25 x 23 KB = 0.6 MB of rows at most;
    # measured 1.1 MB, nearly all WAL (each commit rewrites the pages it touches there).
    server, client, db = audited
    assert refused_unknown(client.post(stranger(0)))  # the tables exist, the WAL is started
    before = files_size(db)
    bodies = [padded_stranger(i) for i in range(25)]
    for body in bodies:
        assert refused_unknown(client.post(body))
    grown = files_size(db) - before
    assert grown <= 2 * MB, f"25 refused bodies of 4 MB added {grown / MB:.1f} MB"
    rows = [r for r in server.requests() if r.serial_number and r.serial_number.startswith("BIG-")]
    assert [r.body_length for r in rows] == [len(b) for b in bodies]  # the length received is kept
    assert [r.body for r in rows] == [b[:EXCERPT_BYTES] for b in bodies]  # and its first bytes
    assert all(r.body_is_excerpt for r in rows)


def test_the_evidence_says_a_refused_body_is_an_excerpt(audited):
    # The report reads rc and ts of a refusal from its body as sent: from a whole body only, and
    # it says when the server kept an excerpt (docs/server.md "Metrics evidence in the report").
    server, client, _ = audited
    big = padded_stranger(1)
    assert refused_unknown(client.post(stranger(7)))
    assert refused_unknown(client.post(big))
    small, excerpt = (summary(r) for r in server.requests())
    whole = len(stranger(7))
    assert (small["request_count"], small["body_bytes"], small["body_stored_bytes"]) == (1, whole, whole)
    assert (excerpt["request_count"], excerpt["body_bytes"], excerpt["body_stored_bytes"]) == (
        None,
        len(big),
        EXCERPT_BYTES,
    )
    table = requests_table_html([small, excerpt])
    assert f"{len(big)} (only the first {EXCERPT_BYTES} stored)" in table
    assert f"<td>{whole} / " in table  # a whole body: its length only


def test_accepted_requests_are_never_dropped_by_the_quota(audited):
    # Accepted rows sit among refusals older and newer than them, and the quota drops refusals
    # around them: every accepted row stays, whole, body included.
    server, client, _ = audited
    (serial,) = server.registry.serials()
    dut = server.registry.get(serial)
    sent = []
    for i in range(KEPT_REFUSALS + 500):
        if i % 250 == 0:
            built = build_request(serial, auth_method="ra", key=dut.key, data={"n": i}, request_count=len(sent) + 1)
            status, reply = client.post(built.body)
            assert status == 201, reply
            sent.append(built.body)
        assert refused_unknown(client.post(stranger(i)))
    rows = server.requests()
    refused = [r for r in rows if r.verdict == "rejected"]
    assert len(refused) == KEPT_REFUSALS, f"{len(refused)} refusals kept: the quota dropped none, nothing proven"
    accepted = [r for r in rows if r.verdict == "accepted"]
    assert [r.body for r in accepted] == sent and all(not r.body_is_excerpt for r in accepted)
    assert refused[0].serial_number == "STRANGER-00500" and accepted[0].id < refused[0].id


# -- the store's rules, row by row -------------------------------------------------------------


def refusal(i: int, **kw) -> RequestRecord:
    base = dict(
        received_at=datetime(2026, 1, 2, tzinfo=UTC),
        remote="127.0.0.1",
        method="POST",
        route="/dd",
        kind="device_data",
        content_type="application/json",
        body=stranger(i),
        status=403,
        error=MetricsError("unknown_device", f"serial {i} unknown", "sn"),
        serial_number=f"STRANGER-{i:05d}",
        reply=b'{"error":"unknown_device"}',
    )
    base.update(kw)
    return RequestRecord(**base)


def test_every_field_of_a_refused_row_is_capped_and_an_accepted_row_is_whole(tmp_path):
    huge = "k" * 100_000
    with Store(tmp_path / "m.db") as store:
        store.record(
            refusal(
                0,
                route="/dd?" + huge,
                content_type="application/json; " + huge,
                body=b"x" * 100_000,
                reply=b"r" * 100_000,
                error=MetricsError("unknown_field", "unknown key " + huge, "hd[0]." + huge),
            )
        )
        store.record(refusal(1, status=201, error=None, body=b"y" * 100_000, reply=b"{}"))
        cut, whole = store.requests()
    assert (cut.body, cut.body_length, cut.body_is_excerpt) == (b"x" * EXCERPT_BYTES, 100_000, True)
    for text in (cut.route, cut.content_type, cut.error_message, cut.error_where):
        assert text is not None and len(text.encode()) <= 1024 and text.endswith("..."), text[:40]
    assert cut.reply is not None and len(cut.reply) == 1024
    assert (whole.body, whole.body_is_excerpt) == (b"y" * 100_000, False)


def test_the_byte_quota_and_a_file_reopened_keep_the_newest_refusals(tmp_path):
    small = store_module.RefusalQuota(
        excerpt_bytes=1000, max_rows=1000, max_bytes=3 * store_module.RefusalQuota(excerpt_bytes=1000).row_bytes_max
    )
    with Store(tmp_path / "m.db") as store:
        for i in range(30):
            store.record(refusal(i, body=bytes([65 + i]) * 5000), store_module.RefusalQuota(max_rows=100))
        assert len(store.requests()) == 30
    conn = sqlite3.connect(tmp_path / "m.db")  # as a file from before the quota: no totals
    conn.execute("DELETE FROM meta WHERE key LIKE 'refused_%'")
    conn.commit()
    conn.close()
    with Store(tmp_path / "m.db") as store:  # the totals are counted again: the next refusal trims
        store.record(refusal(30, body=b"z" * 5000), small)
        kept = store.requests()
        totals = dict(store._conn.execute("SELECT key, value FROM meta WHERE key LIKE 'refused_%'"))
    assert 3 <= len(kept) <= 8 and [r.serial_number for r in kept][-1] == "STRANGER-00030"
    assert [r.id for r in kept] == list(range(32 - len(kept), 32))  # the newest, in order
    assert kept[-1].body == b"z" * 1000 and int(totals["refused_rows"]) == len(kept)
    assert int(totals["refused_bytes"]) <= small.max_bytes
