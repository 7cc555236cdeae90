"""Black-box fuzz of the real server as a device's firmware can get it wrong: byte-level damage to
whole HTTP requests on a raw socket, and mutated requests signed again with the device's key so
they pass authentication and reach replay, tokens and storage. Whatever arrives, every answer is
HTTP with a status docs/server.md documents, under 500, in the server's JSON; nothing hangs; the
server keeps answering; the file stays whole. (With test_server_fuzz.py's structural runs: over
3,000 inputs.)"""

from __future__ import annotations

import json
import random
import socket
import sqlite3
import time
from dataclasses import dataclass

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.openpaygo.metrics.auth import MISSING, SignedFields, request_signature
from bench.openpaygo.metrics.errors import CODES
from bench.server.config import MetricsServerConfig

WIRE_INPUTS = 2400
RESIGNED_INPUTS = 400
SEED = 20261207
NOT_STUCK_S = 5.0  # each input is answered or closed in milliseconds; a wait this long is a hang
DOCUMENTED = {200, 201} | {status for status, _ in CODES.values()}
SPECIAL = [
    b"\x00",
    b"\r",
    b"\n",
    b"\r\n",
    b"\r\n\r\n",
    b" ",
    b":",
    b"\t",
    b"\xff",
    b"%",
    b"?",
    b"#",
    b"/",
    b"0",
    b"-1",
    b"Content-Length: 99999999999999999999\r\n",
    b"Content-Length: 0\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip\r\n",
    b"Expect: 100-continue\r\n",
    b"Connection: close\r\n",
    b"Content-Type: application/cbor\r\n",
    b"X-Pad: " + b"a" * 17000 + b"\r\n",
    b"\xc0\x80",
    b'"',
    b"{",
    b"]",
]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_answers(data: bytes, request: bytes) -> list[Answer]:
    """Every response in what the server sent back (keep-alive: one per request it read).
    AssertionError on anything that is not a whole HTTP/1.x response."""
    answers = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"not an HTTP response: {data[:120]!r} (to {request[:120]!r})"
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1."), f"no status line: {data[:120]!r} (to {request[:120]!r})"
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if 100 <= status < 200:  # 100 Continue: an interim answer, the real one follows
            data = rest
            continue
        length = int(headers.get("content-length", "0"))
        if b"HEAD " in request[:8]:
            length = 0  # a HEAD answer says the GET's length, and sends no body
        body, data = rest[:length], rest[length:]
        assert len(body) == length, f"short body: {len(body)} of {length} (to {request[:120]!r})"
        answers.append(Answer(status, headers, body))
    return answers


def send_raw(port: int, data: bytes) -> bytes:
    """Send `data`, say it is all (half-close), read until the server closes. A server still
    waiting after NOT_STUCK_S is a hang."""
    deadline = time.monotonic() + NOT_STUCK_S
    with socket.create_connection(("127.0.0.1", port), timeout=NOT_STUCK_S) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the rest arrived: what it answered is still readable, or nothing
        got = b""
        while True:
            s.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise AssertionError(f"hang: no end within {NOT_STUCK_S} s to {data[:160]!r}") from None
            if not chunk:
                break
            got += chunk
    return got


def check_answer(a: Answer, request: bytes) -> None:
    where = f"(to {request[:160]!r})"
    assert a.status < 500, f"{a.status} {a.body[:200]!r} {where}"
    assert a.status in DOCUMENTED, f"undocumented status {a.status} {where}"
    if a.status >= 400:
        assert a.headers.get("content-type") == "application/json", f"{a.status} {a.headers} {a.body[:100]!r} {where}"
        doc = json.loads(a.body)
        assert set(doc) == {"error", "message", "where"}, doc
        assert CODES[doc["error"]][0] == a.status, (doc, a.status)
        assert "Traceback" not in doc["message"]
    else:
        assert a.headers.get("content-type", "").startswith(("application/json", "application/cbor")), a.headers


def seeds(server, key) -> list[bytes]:
    """Whole, valid requests of every route and framing, to damage."""
    ts = int(time.time())
    signed = {"sn": server.registry.serials()[0], "ts": ts, "rc": 7, "d": {"bv": 12.5, "tc": 1}}
    signed["a"] = request_signature(SignedFields(signed["sn"], ts, 7, signed["d"]), "da", key)
    body = json.dumps(signed, separators=(",", ":")).encode()
    fmt = json.dumps({"data_order": ["v", "timestamp"], "variables": {"v": {"name": "V", "type": "float"}}}).encode()

    def post(path: str, b: bytes, ctype: str = "application/json") -> bytes:
        return (
            f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: {ctype}\r\nContent-Length: {len(b)}\r\n\r\n".encode()
            + b
        )

    chunked = (
        b"POST /dd HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n0\r\n\r\n"
    )
    query = (
        b"GET /dd?serial_number="
        + signed["sn"].encode()
        + b"&from_datetime=2021-01-25T13:57:50Z HTTP/1.1\r\nHost: b\r\n\r\n"
    )
    return [
        post("/dd", body),
        post("/device_data", body),
        post("/dd", b'{"sn":"FUZZ","rc":1,"d":{"x":"1"}}'),
        post("/dd", cbor2.dumps({"sn": "FUZZ2", "rc": 1, "d": {"x": "1"}}), "application/cbor"),
        post("/data_format", fmt),
        chunked,
        query,
        query + post("/dd", body),  # two pipelined
    ]


def mutate(rng: random.Random, data: bytes) -> bytes:
    for _ in range(rng.randint(1, 3)):
        n = len(data)
        op = rng.randrange(6)
        i = rng.randrange(n + 1)
        if op == 0 and n:  # one byte changed
            i = min(i, n - 1)
            data = data[:i] + bytes([rng.randrange(256)]) + data[i + 1 :]
        elif op == 1:  # a slice dropped
            data = data[:i] + data[i + rng.randint(1, 40) :]
        elif op == 2:  # a slice repeated
            j = min(n, i + rng.randint(1, 60))
            data = data[:j] + data[i:j] + data[j:]
        elif op == 3:  # a byte or line that parsers trip on
            data = data[:i] + rng.choice(SPECIAL) + data[i:]
        elif op == 4:  # cut short
            data = data[:i]
        else:  # a line of the head replaced by a special one
            head, sep, body = data.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            lines[rng.randrange(len(lines))] = rng.choice(SPECIAL).rstrip(b"\r\n")
            data = b"\r\n".join(lines) + sep + body
    return data


def test_byte_level_damage_never_gets_a_5xx_a_hang_or_plain_text(start_metrics_server, server_dut):
    server = start_metrics_server(MetricsServerConfig(auth="none"))  # unsigned bodies reach the parser
    rng = random.Random(SEED)
    corpus = seeds(server, server_dut.key)
    for seed_request in corpus:  # the undamaged ones are served as they should be
        answers = parse_answers(send_raw(server.server.port, seed_request), seed_request)
        assert answers and all(a.status < 400 or a.status == 409 for a in answers), answers
    statuses: dict[int, int] = {}
    for k in range(WIRE_INPUTS):
        request = mutate(rng, rng.choice(corpus))
        for a in parse_answers(send_raw(server.server.port, request), request):
            check_answer(a, request)
            statuses[a.status] = statuses.get(a.status, 0) + 1
        if k % 200 == 0:
            assert server.get("/dd").status == 200, "the server stopped answering"
    # the damage reached the front's refusals and the app's alike
    assert {400, 201} <= set(statuses) and sum(statuses.values()) >= WIRE_INPUTS // 2, statuses
    _file_is_whole(server)


# -- mutated, then signed again: past authentication, into replay, tokens and storage ----------------

NOW = int(time.time())
names = st.sampled_from(["bv", "tc", "token_count", "aslr", "autsr", "timestamp", "relative_time", "0", "x"])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(0, 200),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
rows = st.one_of(st.lists(scalars, max_size=4), st.dictionaries(names, scalars, max_size=4))
# near-valid ones too, so many are accepted and reach tokens (token_count), replay and storage
plausible_d = st.fixed_dictionaries(
    {"bv": st.floats(0, 30)}, optional={"tc": st.integers(0, 80), "aslr": st.just(True), "autsr": st.just(True)}
)
plausible_row = st.fixed_dictionaries({"bv": st.floats(0, 30), "relative_time": st.integers(-7200, 0)})
payloads = st.fixed_dictionaries(
    {
        "ts": st.one_of(
            st.integers(NOW - 10**6, NOW + 10**6),
            st.integers(-(2**40), 2**70),
            st.just("2021-01-25T13:57:50Z"),
            st.floats(0, 2e9),
            st.none(),
        ),
        "rc_step": st.sampled_from([1, 1, 1, 1, 1, 2, 3, 0, -1, 2**64]),  # mostly up; replays; too big to keep
        "d": st.one_of(plausible_d, plausible_d, st.dictionaries(names, scalars, max_size=4)),
        "hd": st.one_of(st.none(), st.none(), st.lists(plausible_row, max_size=4), st.lists(rows, max_size=4)),
        "extra": st.dictionaries(st.sampled_from(["dct", "acc"]), scalars | st.lists(scalars, max_size=2), max_size=2),
        "method": st.sampled_from(["da", "ra", "ta", "ca", "sa"]),
    }
)


def test_resigned_mutations_pass_auth_and_never_get_a_5xx(start_metrics_server, server_dut):
    server = start_metrics_server(MetricsServerConfig(auth="payload"))
    serial, key = server_dut.serial_number, server_dut.key
    rc = [1]
    outcomes: dict[str, int] = {}

    @settings(
        max_examples=RESIGNED_INPUTS,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(p=payloads)
    def run(p):
        if p["rc_step"] < 2**64:
            rc[0] = max(rc[0] + p["rc_step"], 0)
        sent_rc = rc[0] if p["rc_step"] < 2**64 else p["rc_step"]  # one beyond what SQLite holds
        payload: dict = {"sn": serial, "rc": sent_rc, "d": p["d"], **p["extra"]}
        if p["ts"] is not None:
            payload["ts"] = p["ts"]
        if p["hd"] is not None:
            payload["hd"] = p["hd"]
        fields = SignedFields(serial, payload.get("ts"), payload["rc"], payload["d"], payload.get("hd", MISSING))
        try:
            payload["a"] = request_signature(fields, p["method"], key)
        except (ValueError, TypeError):
            return  # a method this payload cannot carry (ta without ts)
        body = json.dumps(payload).encode()
        answer = server.post("/dd", body)
        a = Answer(answer.status, {"content-type": answer.content_type}, answer.body)
        check_answer(a, body)
        code = json.loads(answer.body)["error"] if answer.status >= 400 else str(answer.status)
        outcomes[code] = outcomes.get(code, 0) + 1
        assert code not in ("auth_invalid", "auth_malformed"), f"signed again, yet {code}: {body[:200]!r}"

    run()
    # signed again, the mutants get past authentication: accepted, and refused for what they carry
    assert outcomes.get("201", 0) >= RESIGNED_INPUTS // 10 and len(outcomes) >= 4, outcomes
    _file_is_whole(server)


def _file_is_whole(server) -> None:
    conn = sqlite3.connect(server.store.path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT COUNT(*) FROM requests WHERE status >= 500").fetchone() == (0,)
    finally:
        conn.close()
