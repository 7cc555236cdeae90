"""Bytes on the wire for the spec's hourly session, headers included, as a printed table.

Why it exists: the spec's use case is a device on a 750 KB/month 2G budget sending one request
an hour (30 readings x 5 metrics, a few alarms, one token back), "less than 1KB including all
headers and the response". This sends that session to the real server on loopback over a raw
socket and counts every byte of the HTTP request and of the response (TCP payload; TCP/IP and
TLS overhead not counted), for the simple JSON form, condensed JSON and condensed CBOR, and
projects a month of 720 sessions, also with each session rounded up to a whole KB as the spec's
operator bills it.

    python benchmarks/metrics_bytes.py
"""

from __future__ import annotations

import math
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from metrics_session import KEY, SERIAL, STARTING_CODE, VARIANTS, session_format, session_request  # noqa: E402

from bench.server.app import create_app  # noqa: E402
from bench.server.config import MetricsServerConfig  # noqa: E402
from bench.server.devices import Device, DeviceRegistry  # noqa: E402
from bench.server.serve import start  # noqa: E402
from bench.server.store import Store  # noqa: E402

SESSIONS_PER_MONTH = 720
BUDGET_BYTES = 750 * 1024
HOST = "metrics.example.com"  # what a device would send as Host


def exchange(port: int, body: bytes, content_type: str) -> tuple[int, int, bytes]:
    """(request bytes, response bytes, response body) of one POST /dd on a fresh connection."""
    head = (
        f"POST /dd HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + body)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    return len(head) + len(body), len(response), response.split(b"\r\n\r\n", 1)[1]


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bytes.db")
        fids = {scaled: store.add_data_format(session_format(scaled=scaled)) for scaled in (False, True)}
        registry = DeviceRegistry([Device(SERIAL, KEY, STARTING_CODE)], store)
        server = start(create_app(MetricsServerConfig(), store, registry))
        try:
            ts = int(time.time())
            for n, variant in enumerate(VARIANTS, start=1):
                # a new target each time, so every session's reply carries exactly one token
                registry.set_target(SERIAL, datetime.now(UTC) + timedelta(days=n))
                built = session_request(
                    variant,
                    timestamp=ts + n,
                    request_count=n,
                    token_count=registry.count(SERIAL),
                    fmt=session_format(fids[variant.endswith("-scaled")], variant.endswith("-scaled")),
                )
                sent, received, reply = exchange(server.port, built.body, built.content_type)
                assert b"tkl" in reply or b"token_list" in reply, reply
                rows.append((variant, len(built.body), sent, len(reply), received))
        finally:
            server.stop()
            store.close()
    print(
        f"{'variant':22} {'body B':>7} {'request B':>9} {'reply body B':>12} {'response B':>10} "
        f"{'session B':>9} {'month KB':>8} {'% of 750 KB':>11} {'month KB, 1 KB/session':>22}"
    )
    for variant, body, sent, reply, received in rows:
        session = sent + received
        month = session * SESSIONS_PER_MONTH
        rounded = math.ceil(session / 1024) * SESSIONS_PER_MONTH
        print(
            f"{variant:22} {body:7d} {sent:9d} {reply:12d} {received:10d} {session:9d} {month / 1024:8.0f} "
            f"{100 * month / BUDGET_BYTES:10.0f}% {rounded:22d}"
        )
    print(
        f"\n{SESSIONS_PER_MONTH} sessions/month (one an hour); budget {BUDGET_BYTES // 1024} KB; "
        "request = HTTP/1.1 headers + body; response = status line + headers + body (waitress)."
    )


if __name__ == "__main__":
    main()
