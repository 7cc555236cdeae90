"""`paygo-bench serve` as a lab runs it (a separate process on waitress), killed without warning
right after answering: every answered request is in the file. And HTTPS with a local certificate."""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import json
import queue
import re
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.fixtures.metrics_server import http_request
from bench.server.config import MetricsServerConfig
from bench.server.serve import SPEC_CIPHERS

ROOT = Path(__file__).resolve().parents[2]
START_DEADLINE_S = 30.0


def read_line(proc: subprocess.Popen, deadline: float) -> str:
    """The first stdout line, waiting on a monotonic deadline (a reader thread: portable)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()  # type: ignore[union-attr]
    try:
        return lines.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        raise AssertionError("paygo-bench serve printed nothing before the deadline") from None


def test_a_killed_server_has_every_row_it_answered(tmp_path):
    db = tmp_path / "killed.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "serve", "--db", str(db), "--port", "0", "--auth", "none"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = read_line(proc, time.monotonic() + START_DEADLINE_S)
        m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        assert m, line
        bodies = [json.dumps({"sn": "KILL-ME", "rc": i, "d": {"n": i}}).encode() for i in range(1, 6)]
        for body in bodies:
            answer = http_request(m.group(1) + "/dd", "POST", body, {"Content-Type": "application/json"})
            assert answer.status == 201
        proc.kill()  # SIGKILL on POSIX: no handler, no flush, no atexit
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT status, verdict, body FROM requests ORDER BY id").fetchall()
    assert rows == [(201, "accepted", b) for b in bodies]
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_serve_refuses_a_bad_device_file(tmp_path):
    (tmp_path / "d.json").write_text('{"devices": [{"serial_number": "A"}]}')
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.cli",
            "serve",
            "--db",
            str(tmp_path / "x.db"),
            "--devices",
            str(tmp_path / "d.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "secret_key" in out.stderr


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made here (cryptography is a test dependency)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "paygo-bench test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return d / "cert.pem", d / "key.pem"


def test_https_with_a_local_certificate(start_metrics_server, certificate):
    cert, key = certificate
    client = ssl.create_default_context(cafile=str(cert))
    server = start_metrics_server(MetricsServerConfig(auth="none", cert_file=cert, key_file=key), ssl_context=client)
    assert server.url.startswith("https://127.0.0.1:")
    answer = server.post("/dd", b'{"sn":"TLS1","rc":1,"d":{"x":"1"}}')
    assert answer.status == 201 and server.requests()[-1].verdict == "accepted"
    # the handshake follows the spec: TLS 1.2+ and its cipher list
    import socket

    with socket.create_connection(("127.0.0.1", server.server.port), timeout=10) as raw:
        with client.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            if tls.version() == "TLSv1.2":
                assert "GCM" in tls.cipher()[0] or "AES256" in tls.cipher()[0]
    # an untrusting client refuses it, and plain HTTP gets no answer
    with pytest.raises(ssl.SSLError):
        http_request(
            server.url + "/dd", "POST", b"{}", {"Content-Type": "json"}, ssl_context=ssl.create_default_context()
        )
    with pytest.raises((OSError, http.client.HTTPException)):  # reset, or no status line
        http_request(server.url.replace("https", "http") + "/dd", "POST", b"{}", {"Content-Type": "json"}, timeout=3)
    assert SPEC_CIPHERS.count(":") == 3


def test_oversize_body_over_https_is_413_too_large_and_stored(start_metrics_server, certificate):
    """Over HTTPS the app itself sees a body over 4096 KB (werkzeug does not hold the limit
    before it, as waitress does over plain HTTP: test_server_front.py) and answers the
    documented JSON 413 `too_large`, stored with its length and no body."""
    cert, key = certificate
    client = ssl.create_default_context(cafile=str(cert))
    server = start_metrics_server(MetricsServerConfig(auth="none", cert_file=cert, key_file=key), ssl_context=client)
    big = b'{"sn":"SIM000001","d":{"x":"' + b"x" * (4096 * 1024) + b'"}}'
    answer = server.post("/dd", big)
    assert answer.status == 413 and json.loads(answer.body)["error"] == "too_large", answer
    row = server.requests()[-1]
    assert row.error_code == "too_large" and row.body == b"" and row.body_length == len(big)


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"HELLO\r\n\r\n", 400, "bad_http"),  # http.server: bad request syntax
        (b"GET /dd HTTP/2.0\r\n\r\n", 400, "bad_http"),  # http.server: 505, a server-fault status
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 431, "headers_too_large"),  # http.server: 414
    ],
    ids=["garbage", "http2-line", "line-too-long"],
)
def test_what_https_cannot_read_gets_the_servers_json(start_metrics_server, certificate, request_bytes, status, code):
    """Over HTTPS, http.server's own HTML refusals are replaced by the server's JSON and audited
    (bench/server/front.py), as over HTTP (test_server_front.py)."""
    import socket

    cert, key = certificate
    client = ssl.create_default_context(cafile=str(cert))
    server = start_metrics_server(MetricsServerConfig(auth="none", cert_file=cert, key_file=key), ssl_context=client)
    with socket.create_connection(("127.0.0.1", server.server.port), timeout=10) as raw:
        with client.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(request_bytes)
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.0 {status} ".encode()) or head.startswith(f"HTTP/1.1 {status} ".encode()), head
    assert b"\r\nContent-Type: application/json" in head and b"<html" not in body.lower()
    doc = json.loads(body)
    assert doc["error"] == code and set(doc) == {"error", "message", "where"}
    row = server.requests()[-1]
    assert (row.status, row.error_code) == (status, code)
    assert server.post("/dd", b'{"sn":"TLS1","rc":1,"d":{"x":"1"}}').status == 201  # it carries on
