"""What the real server answers before the app sees a request, over a raw socket (waitress for HTTP,
http.server under werkzeug for HTTPS), and who `paygo-bench serve` lets listen on the network
(docs/server.md "Running it", "Status codes", "Refused before the app")."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.fixtures.metrics_server import http_request
from bench.openpaygo.metrics.errors import CODES
from bench.openpaygo.metrics.wire import MAX_BODY_BYTES
from bench.record.verdict import USAGE_EXIT
from bench.server.config import MAX_HEADER_BYTES
from bench.server.serve import is_loopback
from tests.selftest.test_server_process import START_DEADLINE_S, read_line

ROOT = Path(__file__).resolve().parents[2]
NOT_STUCK_S = 5.0  # generous: each of these is answered in milliseconds; the defects waited forever
POST = b"POST /dd HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"


def exchange(port: int, data: bytes, timeout: float = NOT_STUCK_S) -> tuple[int, dict[str, str], bytes]:
    """Send `data` as is and read the answer until the server closes: status, headers, body.
    A server still waiting for more when `timeout` runs out fails the test."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except TimeoutError:
            pytest.fail(f"no whole answer within {timeout} s (still reading the request?): {answer[:200]!r}")
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def assert_front_refusal(
    server, answer: tuple[int, dict[str, str], bytes], status: int, code: str, message: str
) -> None:
    """The server's documented JSON refusal (never waitress's plain text), the connection closed,
    and the refusal kept in the audit with its code."""
    got, headers, body = answer
    assert got == status, (got, body)
    assert headers["content-type"] == "application/json" and headers["connection"] == "close", headers
    assert int(headers["content-length"]) == len(body)
    doc = json.loads(body)
    assert set(doc) == {"error", "message", "where"} and doc["error"] == code, doc
    assert message in doc["message"] and len(doc["message"]) < 400, doc
    assert CODES[code][0] == status
    row = server.requests()[-1]
    assert (row.status, row.error_code, row.verdict) == (status, code, "rejected")
    assert row.reply == body


# -- limits: what the server would refuse is refused as the headers arrive, unread ----------------


@pytest.mark.parametrize("length", [MAX_BODY_BYTES + 1, 100 * 1024 * 1024, 1024**4], ids=["limit+1", "100MB", "1TB"])
def test_a_declared_body_over_the_limit_is_refused_unread(server, length):
    # the body is never sent: before the fix waitress waited for up to 1 GB of it (and told a
    # 1 TB sender its limit was 1 GB)
    t0 = time.monotonic()
    answer = exchange(server.server.port, POST + f"Content-Length: {length}\r\n\r\n".encode())
    assert time.monotonic() - t0 < NOT_STUCK_S
    assert_front_refusal(server, answer, 413, "too_large", f"exceeds max_body of {MAX_BODY_BYTES + 1}")
    assert server.requests()[-1].body_length == length  # what was declared, nothing of it read
    assert server.get("/dd").status == 200  # and it carries on


def test_a_whole_body_over_the_limit_is_not_read(server):
    # a client that sends all of it before reading: refused after the headers, the rest unread, so
    # the client reads the 413 or, when the close lands while it still sends, a reset; never a wait
    big = b'{"sn":"SIM000001","d":{"x":"' + b"x" * MAX_BODY_BYTES + b'"}}'
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.server.port), timeout=NOT_STUCK_S) as s:
        answer = b""
        try:
            s.sendall(POST + f"Content-Length: {len(big)}\r\n\r\n".encode() + big)
            while chunk := s.recv(65536):
                answer += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert time.monotonic() - t0 < NOT_STUCK_S
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert [r.error_code for r in server.requests()] == ["too_large"]
    assert server.get("/dd").status == 200


def test_a_chunked_body_is_cut_at_the_limit(server):
    # chunked carries no length: waitress counts what arrives, and stops at the server's limit
    too_much = POST + b"Transfer-Encoding: chunked\r\n\r\n500000\r\n" + b" " * (MAX_BODY_BYTES + 100)
    answer = exchange(server.server.port, too_much)
    assert_front_refusal(server, answer, 413, "too_large", f"exceeds max_body of {MAX_BODY_BYTES + 1}")


def test_a_body_at_the_limit_reaches_the_server(server):
    body = b"[" + b" " * (MAX_BODY_BYTES - 2) + b"]"
    assert len(body) == MAX_BODY_BYTES
    answer = server.post("/dd", body)
    assert (answer.status, answer.content_type) == (422, "application/json")  # the app's refusal
    assert server.requests()[-1].body_length == MAX_BODY_BYTES


def test_headers_over_the_limit_are_refused_as_they_arrive(server):
    # an unfinished header block: before the fix waitress read up to 256 KB of it
    endless = POST + b"X-Pad: " + b"a" * (MAX_HEADER_BYTES + 100)
    answer = exchange(server.server.port, endless)
    assert_front_refusal(server, answer, 431, "headers_too_large", f"exceeds max_header of {MAX_HEADER_BYTES + 1}")
    # a whole one: before the fix it reached the app
    whole = POST + b"X-Pad: " + b"a" * MAX_HEADER_BYTES + b"\r\nContent-Length: 2\r\n\r\n{}"
    assert_front_refusal(server, exchange(server.server.port, whole), 431, "headers_too_large", "exceeds max_header")
    assert len(server.requests()) == 2


# -- what the front cannot read as HTTP: the server's JSON, documented, audited -------------------


@pytest.mark.parametrize(
    ("request_bytes", "status", "code", "message"),
    [
        (POST + b"Content-Length: 12abc\r\n\r\n{}", 400, "bad_http", "Content-Length is invalid"),
        (POST + b"Content-Length: -1\r\n\r\n", 400, "bad_http", "Content-Length is invalid"),
        (POST + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, "bad_http", "Content-Length is invalid"),
        (POST + b"X-Serial: SN\x00001\r\nContent-Length: 2\r\n\r\n{}", 400, "bad_http", "Invalid header"),
        (b"\x16\x03\x01\x02\x00garbage\xff\r\n\r\n", 400, "bad_http", "Start line is invalid"),
        (b"HELLO\r\nHost: bench\r\n\r\n", 400, "bad_http", "Start line is invalid"),
        (b"GET /\xff\xfe HTTP/1.1\r\nHost: bench\r\n\r\n", 400, "bad_http", "Bad URI"),
        (POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "bad_http", "Invalid chunk size"),
        (POST + b"Transfer-Encoding: gzip\r\n\r\n", 400, "unsupported_transfer_encoding", "not supported"),
        (POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 400, "unsupported_transfer_encoding", "only chunked"),
    ],
    ids=[
        "cl-garbage",
        "cl-negative",
        "cl-twice",
        "nul-in-header",
        "binary-line",
        "no-target",
        "non-ascii-target",
        "bad-chunk",
        "te-gzip",
        "te-gzip-chunked",
    ],
)
def test_what_the_front_cannot_read_gets_the_servers_json(server, request_bytes, status, code, message):
    # before: waitress's own text/plain answer, unstored (and 501, a server-fault status, for gzip)
    assert_front_refusal(server, exchange(server.server.port, request_bytes), status, code, message)
    assert len(server.requests()) == 1
    assert server.post("/dd", b"{}").content_type == "application/json"  # the next request is the server's


def test_a_secret_quoted_back_by_the_parser_is_masked(server, server_dut):
    # waitress quotes a malformed header line in its message: a key sent there must not be echoed
    key = server_dut.key.reveal()
    answer = exchange(server.server.port, POST + f"X-Key: {key}\rX\r\nContent-Length: 2\r\n\r\n{{}}".encode())
    message = json.loads(answer[2])["message"]
    assert answer[0] == 400 and "Bare CR or LF found in header line" in message and "***" in message, message
    assert key.encode() not in answer[2] and key.lower().encode() not in answer[2].lower()
    assert key not in (server.requests()[-1].error_message or "")


# -- who may listen on the network -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.5.6.7", True),
        ("::1", True),
        ("localhost", True),
        ("LocalHost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.20", False),
        ("lab-server", False),
        ("localhost.example.org", False),
    ],
)
def test_loopback_is_this_machine_only(host, loopback):
    assert is_loopback(host) is loopback


def serve(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "serve", "--db", str(tmp_path / "m.db"), "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "lab-server"])
def test_a_network_host_without_a_jwt_secret_is_refused_in_one_line(tmp_path, host):
    out = subprocess.run(
        [sys.executable, "-m", "bench.cli", "serve", "--db", str(tmp_path / "m.db"), "--port", "0", "--host", host],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,  # before the fix it served until killed here
    )
    assert out.returncode == USAGE_EXIT, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"--host {host} " in lines[0] and "--jwt-secret-file" in lines[0]
    assert "--insecure-open-to-network" in lines[0]
    assert out.stdout == "" and not (tmp_path / "m.db").exists()  # refused before opening anything


def run_until_answered(proc: subprocess.Popen, path: str) -> tuple[int, str]:
    """Wait for `serve` to print its URL, make one request on loopback, stop it: the status and
    everything it wrote to stderr."""
    try:
        line = read_line(proc, time.monotonic() + START_DEADLINE_S)
        m = re.search(r"http://\S+:(\d+)/", line)
        assert m, line
        status = http_request(f"http://127.0.0.1:{m.group(1)}{path}").status
        proc.terminate()  # everything asserted was written before the URL line
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    return status, err


def test_the_opt_out_serves_the_network_open_and_says_so(tmp_path):
    status, err = run_until_answered(serve(tmp_path, "--host", "0.0.0.0", "--insecure-open-to-network"), "/dd")
    assert status == 200  # open, as asked
    warning = [line for line in err.splitlines() if "INSECURE" in line]
    assert len(warning) == 1 and "WARNING" in warning[0] and "0.0.0.0" in warning[0], err


def test_a_network_host_with_a_jwt_secret_serves_closed(tmp_path):
    secret = tmp_path / "jwt.key"
    secret.write_text("s" * 40, encoding="utf-8")
    status, err = run_until_answered(serve(tmp_path, "--host", "0.0.0.0", "--jwt-secret-file", str(secret)), "/dd")
    assert status == 403  # GET /device_data needs the JWT
    assert "INSECURE" not in err and "s" * 40 not in err


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_serves_without_a_secret(tmp_path, host):
    status, err = run_until_answered(serve(tmp_path, "--host", host), "/dd")
    assert status == 200 and "INSECURE" not in err and "WARNING" not in err
