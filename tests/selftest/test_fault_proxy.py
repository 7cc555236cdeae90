"""bench/equipment/: the fault-injecting proxy (docs/fault-proxy.md), on real TCP in front of the real
Metrics server, driven by stdlib http.client: what each mode does on the wire, count=, byte
counts equal to what the client sent and received, DROP_AFTER stored server-side while the
client gets nothing, and a prompt close() with a stalled connection."""

from __future__ import annotations

import http.client
import io
import itertools
import json
import socket
import threading
import time
import urllib.parse

import pytest

from bench.equipment.fault_proxy import FaultProxy, ProxiedExchange, ProxyMode
from bench.openpaygo.metrics.condense import build_request

_rc = itertools.count(1)


class _CountingRaw(io.RawIOBase):
    def __init__(self, sock: socket.socket, owner: CountingConnection) -> None:
        self._sock, self._owner = sock, owner

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._sock.recv_into(b)
        self._owner.received += n
        return n


class _CountingSocket:
    def __init__(self, sock: socket.socket, owner: CountingConnection) -> None:
        self._sock, self._owner = sock, owner

    def makefile(self, mode: str = "rb", *args, **kwargs):
        assert mode == "rb"
        return io.BufferedReader(_CountingRaw(self._sock, self._owner))

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class CountingConnection(http.client.HTTPConnection):
    """http.client counting the bytes it wrote to and read from the socket."""

    sent = 0
    received = 0

    def connect(self) -> None:
        super().connect()
        self.sock = _CountingSocket(self.sock, self)  # type: ignore[assignment]

    def send(self, data) -> None:
        self.sent += len(data)
        super().send(data)


def connection(url: str, timeout: float = 2.0) -> CountingConnection:
    parts = urllib.parse.urlsplit(url)
    return CountingConnection(parts.hostname, parts.port, timeout=timeout)


@pytest.fixture
def proxy(server):
    with FaultProxy(server.url, stall_s=5.0) as p:
        yield p


def signed(dut):
    return build_request(
        dut.serial_number,
        auth_method="ra",
        key=dut.key,
        request_count=next(_rc),
        data={"token_count": 1},
        timestamp=int(time.time()),
    )


def post(proxy, dut, timeout: float = 2.0, headers=None):
    """POST one signed request through the proxy: (connection, the built request, response or
    the exception raised)."""
    built = signed(dut)
    conn = connection(proxy.base_url, timeout)
    try:
        conn.request(
            "POST",
            "/dd",
            body=built.body,
            headers={"Content-Type": built.content_type, "Connection": "close", **(headers or {})},
        )
        resp = conn.getresponse()
        return conn, built, (resp.status, dict(resp.getheaders()), resp.read())
    except Exception as e:  # noqa: BLE001 - the test looks at which
        return conn, built, e
    finally:
        conn.close()


def accepted(server) -> list:
    return [r for r in server.requests() if r.kind == "device_data" and r.verdict == "accepted"]


def settled(proxy, n: int) -> list[ProxiedExchange]:
    """The exchanges once there are n (a response is recorded just after its last byte left)."""
    assert proxy.wait_for(lambda e: True, 2.0, after=n - 1) is not None
    return proxy.exchanges()


def only(proxy) -> ProxiedExchange:
    (ex,) = settled(proxy, 1)
    return ex


def test_pass_relays_the_whole_response_and_counts_the_wire_bytes(proxy, server, server_dut):
    conn, built, answer = post(proxy, server_dut)
    status, headers, body = answer
    assert status == 201
    ex = only(proxy)
    assert (ex.mode, ex.method, ex.path, ex.status, ex.forwarded, ex.delivered) == (
        ProxyMode.PASS,
        "POST",
        "/dd",
        201,
        True,
        True,
    )
    assert ex.request_bytes == conn.sent and ex.request_bytes > len(built.body)
    assert ex.response_bytes == conn.received and ex.response_bytes > len(body)
    (row,) = accepted(server)
    assert (row.body, row.reply) == (built.body, body)  # both ways, byte for byte
    assert proxy.errors == 0


def test_keep_alive_requests_are_one_exchange_each(proxy, server):
    conn = connection(proxy.base_url)
    try:
        for _ in range(2):
            conn.request("GET", "/dd")  # HTTP/1.1, no Connection: close: the connection stays
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, b"[]")
    finally:
        conn.close()
    exchanges = settled(proxy, 2)
    assert [(e.method, e.status, e.delivered) for e in exchanges] == [("GET", 200, True)] * 2
    assert sum(e.request_bytes for e in exchanges) == conn.sent
    assert sum(e.response_bytes for e in exchanges) == conn.received


def test_refuse_resets_the_connection_without_reading(proxy, server, server_dut):
    proxy.set_mode(ProxyMode.REFUSE)
    _, _, answer = post(proxy, server_dut)
    # a reset, not ECONNREFUSED: the listening socket accepted first
    assert isinstance(answer, (ConnectionResetError, BrokenPipeError)), repr(answer)
    ex = only(proxy)
    assert (ex.mode, ex.method, ex.request_bytes, ex.response_bytes, ex.status, ex.forwarded, ex.delivered) == (
        ProxyMode.REFUSE,
        "",
        0,
        0,
        None,
        False,
        False,
    )
    assert server.requests() == []


@pytest.mark.parametrize("error_status", [503, 500])
def test_http_error_answers_without_forwarding(server, server_dut, error_status):
    with FaultProxy(server.url, error_status=error_status) as proxy:
        proxy.set_mode("http_error")
        conn, built, (status, headers, body) = post(proxy, server_dut)
    assert status == error_status and headers["Connection"] == "close"
    assert json.loads(body)["error"] == "proxy_fault"
    ex = only(proxy)
    assert (ex.mode, ex.status, ex.forwarded, ex.delivered) == (ProxyMode.HTTP_ERROR, error_status, False, True)
    assert (ex.request_bytes, ex.response_bytes) == (conn.sent, conn.received)
    assert server.requests() == []


def test_stall_holds_past_the_client_timeout_and_forwards_nothing(proxy, server, server_dut):
    proxy.set_mode(ProxyMode.STALL)
    t0 = time.monotonic()
    conn, _, answer = post(proxy, server_dut, timeout=0.3)
    assert isinstance(answer, TimeoutError) and 0.25 < time.monotonic() - t0 < 1.5
    ex = only(proxy)
    assert (ex.mode, ex.method, ex.status, ex.forwarded, ex.delivered, ex.response_bytes) == (
        ProxyMode.STALL,
        "POST",
        None,
        False,
        False,
        0,
    )
    assert ex.request_bytes == conn.sent
    assert server.requests() == []


def test_stall_ends_with_a_close_after_stall_s(server, server_dut):
    with FaultProxy(server.url, stall_s=0.3) as proxy:
        proxy.set_mode(ProxyMode.STALL)
        t0 = time.monotonic()
        _, _, answer = post(proxy, server_dut, timeout=2.0)
    assert isinstance(answer, http.client.RemoteDisconnected) and 0.25 < time.monotonic() - t0 < 1.5


def test_drop_before_closes_without_forwarding(proxy, server, server_dut):
    proxy.set_mode(ProxyMode.DROP_BEFORE)
    conn, _, answer = post(proxy, server_dut)
    assert isinstance(answer, http.client.RemoteDisconnected)
    ex = only(proxy)
    assert (ex.mode, ex.status, ex.forwarded, ex.delivered, ex.request_bytes) == (
        ProxyMode.DROP_BEFORE,
        None,
        False,
        False,
        conn.sent,
    )
    assert server.requests() == []


def test_drop_after_the_server_stored_it_the_client_got_nothing(proxy, server, server_dut):
    proxy.set_mode(ProxyMode.DROP_AFTER)
    conn, built, answer = post(proxy, server_dut)
    assert isinstance(answer, http.client.RemoteDisconnected)
    assert conn.received == 0
    ex = only(proxy)
    assert (ex.mode, ex.status, ex.forwarded, ex.delivered, ex.response_bytes, ex.request_bytes) == (
        ProxyMode.DROP_AFTER,
        None,
        True,
        False,
        0,
        conn.sent,
    )
    (row,) = accepted(server)  # committed: a device resending these rows makes a legitimate duplicate
    assert row.body == built.body and row.status == 201


def test_count_applies_to_the_next_requests_then_pass(proxy, server, server_dut):
    proxy.set_mode(ProxyMode.HTTP_ERROR, count=2)
    statuses = [post(proxy, server_dut)[2][0] for _ in range(3)]
    assert statuses == [503, 503, 201]
    assert [e.mode for e in settled(proxy, 3)] == [ProxyMode.HTTP_ERROR] * 2 + [ProxyMode.PASS]
    assert proxy.mode is ProxyMode.PASS
    assert len(accepted(server)) == 1


def test_a_mode_without_count_stays_until_changed(proxy, server_dut):
    proxy.set_mode(ProxyMode.DROP_BEFORE)
    for _ in range(2):
        assert isinstance(post(proxy, server_dut)[2], http.client.RemoteDisconnected)
    proxy.set_mode("pass")
    assert post(proxy, server_dut)[2][0] == 201


def test_set_mode_refuses_nonsense(proxy):
    with pytest.raises(ValueError):
        proxy.set_mode("sometimes")
    with pytest.raises(ValueError):
        proxy.set_mode(ProxyMode.STALL, count=0)


def test_wait_for_sees_an_exchange_from_another_thread(proxy, server_dut):
    assert proxy.wait_for(lambda e: True, 0.05) is None
    proxy.set_mode(ProxyMode.DROP_AFTER, count=1)
    threading.Thread(target=post, args=(proxy, server_dut), daemon=True).start()
    ex = proxy.wait_for(lambda e: e.mode is ProxyMode.DROP_AFTER, 2.0)
    assert ex is not None and ex.forwarded and not ex.delivered
    # earlier exchanges count unless skipped with after=
    assert proxy.wait_for(lambda e: e.mode is ProxyMode.DROP_AFTER, 0.05) == ex
    assert proxy.wait_for(lambda e: True, 0.05, after=len(proxy.exchanges())) is None
    assert proxy.wait_for(lambda e: True, 0.05, after=0) == ex


def test_close_with_a_stalled_connection_returns_within_a_second(server, server_dut):
    proxy = FaultProxy(server.url, stall_s=30.0).start()
    proxy.set_mode(ProxyMode.STALL)
    outcome: list = []
    client = threading.Thread(target=lambda: outcome.append(post(proxy, server_dut, timeout=5.0)[2]), daemon=True)
    client.start()
    assert proxy.wait_for(lambda e: e.mode is ProxyMode.STALL, 2.0) is not None
    t0 = time.monotonic()
    proxy.close()
    assert time.monotonic() - t0 < 1.0
    client.join(2.0)
    assert outcome and isinstance(outcome[0], (http.client.RemoteDisconnected, ConnectionResetError))
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=0.5).close()


def test_malformed_requests_are_answered_400_and_counted(proxy, server_dut):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400 ")
    ex = only(proxy)
    assert proxy.errors == 1 and "bad request line" in proxy.error_log()[0]
    assert (ex.status, ex.forwarded, ex.request_bytes, ex.response_bytes) == (400, False, 19, len(reply))
    assert post(proxy, server_dut)[2][0] == 201  # still serving


def test_a_server_that_is_down_looks_like_a_reset(start_metrics_server, server_dut):
    down = start_metrics_server()
    down.server.stop()
    with FaultProxy(down.url) as proxy:
        _, _, answer = post(proxy, server_dut)
    assert isinstance(answer, (ConnectionResetError, BrokenPipeError)), repr(answer)
    ex = only(proxy)
    assert (ex.mode, ex.forwarded, ex.status) == (ProxyMode.PASS, False, None)
    assert proxy.errors == 1 and "upstream connect" in proxy.error_log()[0]


def test_base_url_keeps_the_upstream_path():
    with FaultProxy("http://127.0.0.1:9/metrics/") as proxy:
        assert proxy.base_url == f"http://127.0.0.1:{proxy.port}/metrics"
    with pytest.raises(ValueError):
        FaultProxy("https://127.0.0.1:9")


def test_a_chunked_request_body_is_framed_and_forwarded(proxy, server, server_dut):
    built = signed(server_dut)
    conn = connection(proxy.base_url)
    try:
        conn.request(
            "POST",
            "/dd",
            body=iter([built.body[:10], built.body[10:]]),
            encode_chunked=True,
            headers={"Content-Type": built.content_type, "Connection": "close"},
        )
        resp = conn.getresponse()
        assert resp.status == 201
        resp.read()
    finally:
        conn.close()
    ex = only(proxy)
    assert (ex.request_bytes, ex.response_bytes, ex.forwarded, ex.delivered) == (conn.sent, conn.received, True, True)
    (row,) = accepted(server)
    assert row.body == built.body


@pytest.mark.parametrize(
    "mode, outcome",
    [
        (ProxyMode.PASS, (201, None)),
        (ProxyMode.REFUSE, (None, "dropped")),  # a reset: the device cannot tell it from a drop
        (ProxyMode.HTTP_ERROR, (503, None)),
        (ProxyMode.STALL, (None, "timeout")),
        (ProxyMode.DROP_BEFORE, (None, "dropped")),
        (ProxyMode.DROP_AFTER, (None, "dropped")),
    ],
)
def test_what_the_simulated_device_transport_reports(proxy, server_dut, mode, outcome):
    from bench.sim.metrics.http_post import post as device_post

    proxy.set_mode(mode, count=1)
    built = signed(server_dut)
    result = device_post(proxy.base_url, built.body, built.content_type, timeout_s=0.3)
    assert (result.status, result.error) == outcome
