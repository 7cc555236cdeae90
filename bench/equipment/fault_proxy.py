"""A fault-injecting HTTP proxy between a device and the Metrics server: the faults of a sick
server or network (a reset connection, a 5xx, a reply slower than the device's timeout, a
connection dropped before or after the server committed), injected on demand on real TCP, to prove
that a device loses no row to them and, once the server is back, duplicates none.

How each mode looks on the wire, what an exchange records and when: docs/fault-proxy.md.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bench.equipment import tcp
from bench.equipment.http_wire import RECV_BYTES, Closed, Malformed, Wire, parse_request_head, simple_response
from bench.equipment.listener import ACCEPT_POLL_S, CLOSE_JOIN_S, Listener
from bench.equipment.upstream import Upstream

MAX_ERROR_LOG = 200


class ProxyMode(StrEnum):
    PASS = "pass"
    REFUSE = "refuse"
    HTTP_ERROR = "http_error"
    STALL = "stall"
    DROP_BEFORE = "drop_before"
    DROP_AFTER = "drop_after"


@dataclass(frozen=True)
class ProxiedExchange:
    """One HTTP request through the proxy."""

    started_at: float  # time.monotonic() when its mode was taken
    mode: ProxyMode
    method: str  # "" when nothing was read (refuse) or the request line did not parse
    path: str
    request_bytes: int  # the whole request as received, headers included
    response_bytes: int  # the whole response as sent to the client, headers included (0 if none)
    status: int | None  # HTTP status sent to the client (None: none sent)
    forwarded: bool  # the server received the request
    delivered: bool  # the client received the complete response


class FaultProxy:
    """A TCP proxy in front of an HTTP server, misbehaving on demand (docs/fault-proxy.md)."""

    def __init__(
        self,
        upstream: str,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        stall_s: float = 30.0,
        error_status: int = 503,
        io_timeout_s: float = 10.0,
        tls: ssl.SSLContext | None = None,
        upstream_tls: ssl.SSLContext | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(upstream)
        scheme = "https" if upstream_tls is not None else "http"
        if parts.scheme != scheme or not parts.hostname or parts.port is None:
            raise ValueError(f"upstream must be {scheme}://host:port[/path], got {upstream!r}")
        if not 100 <= error_status <= 599:
            raise ValueError(f"error_status must be an HTTP status, got {error_status}")
        if stall_s < 0 or io_timeout_s <= 0:
            raise ValueError("stall_s must be >= 0 and io_timeout_s > 0")
        self.upstream = upstream
        self._upstream_addr = (parts.hostname, parts.port)
        # HTTPS: the proxy is the server the device sees (`tls`, the server's certificate) and a
        # verifying client of the real server (`upstream_tls`); the faults act on the plain
        # HTTP between, as a TLS-terminating load balancer's would
        self._tls = tls
        self._upstream_tls = upstream_tls
        self._prefix = parts.path.rstrip("/")
        self._listen = (listen_host, listen_port)
        self.stall_s = stall_s
        self.error_status = error_status
        self.io_timeout_s = io_timeout_s
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._mode = ProxyMode.PASS
        self._left: int | None = None
        self._exchanges: list[ProxiedExchange] = []
        self._errors: list[str] = []
        self._error_count = 0
        self._stop = threading.Event()
        self._listener = Listener(self._listen, "fault-proxy", self._accept, self._error)
        self._threads: set[threading.Thread] = set()
        self._sockets: set[socket.socket] = set()

    # -- life -----------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._listener.start()
        return self

    def close(self) -> None:
        """Stop accepting, end every connection (stalled ones too) and join the threads."""
        self._stop.set()
        with self._lock:
            socks = list(self._sockets)
            threads = list(self._threads)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv/send on it
            except OSError:
                pass
        deadline = time.monotonic() + CLOSE_JOIN_S
        self._listener.close(deadline)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with self._changed:
            self._changed.notify_all()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def port(self) -> int:
        return self._listener.port

    @property
    def base_url(self) -> str:
        """What the device is configured with: the proxy's address plus the upstream's path."""
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{tcp.host_in_url(self._listen[0])}:{self.port}{self._prefix}"

    # -- control --------------------------------------------------------------------------------

    def set_mode(self, mode: ProxyMode | str, *, count: int | None = None) -> None:
        """`mode` for the next `count` requests, then `pass`; count None: until changed."""
        mode = ProxyMode(mode)
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise ValueError(f"count must be a positive integer or None, got {count!r}")
        with self._lock:
            self._mode = mode
            self._left = None if mode is ProxyMode.PASS else count

    @property
    def mode(self) -> ProxyMode:
        """The mode the next request will take."""
        with self._lock:
            return self._mode

    def _take_mode(self) -> ProxyMode:
        with self._lock:
            mode = self._mode
            if self._left is not None:
                self._left -= 1
                if self._left <= 0:
                    self._mode, self._left = ProxyMode.PASS, None
            return mode

    def exchanges(self) -> list[ProxiedExchange]:
        """Every exchange so far, in the order its outcome became known."""
        with self._lock:
            return list(self._exchanges)

    def wait_for(
        self, predicate: Callable[[ProxiedExchange], bool], timeout_s: float, *, after: int = 0
    ) -> ProxiedExchange | None:
        """The first exchange matching `predicate`, among all recorded so far (skipping the first
        `after`: pass `len(proxy.exchanges())` taken earlier to see only newer ones), waiting up
        to `timeout_s` (a deadline on time.monotonic()) for one; None if none came."""
        deadline = time.monotonic() + timeout_s
        seen = after
        with self._changed:
            while True:
                for ex in self._exchanges[seen:]:
                    if predicate(ex):
                        return ex
                seen = max(seen, len(self._exchanges))
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return None
                self._changed.wait(left)

    @property
    def errors(self) -> int:
        """Malformed requests, upstream failures and unexpected errors, counted."""
        with self._lock:
            return self._error_count

    def error_log(self) -> list[str]:
        """The reasons, oldest first (the last MAX_ERROR_LOG)."""
        with self._lock:
            return list(self._errors)

    # -- internals ------------------------------------------------------------------------------

    def _record(self, ex: ProxiedExchange) -> None:
        with self._changed:
            self._exchanges.append(ex)
            self._changed.notify_all()

    def _error(self, reason: str) -> None:
        with self._lock:
            self._error_count += 1
            self._errors.append(reason)
            del self._errors[:-MAX_ERROR_LOG]

    def _track(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._stop.is_set():
                return False
            self._sockets.add(sock)
            return True

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)

    def _accept(self, client: socket.socket) -> None:
        mode = self._take_mode()
        started = time.monotonic()
        if mode is ProxyMode.REFUSE:  # at once, on this thread: nothing is read
            self._record(ProxiedExchange(started, mode, "", "", 0, 0, None, False, False))
            tcp.reset(client)
            return
        if not self._track(client):
            tcp.reset(client)
            return
        t = threading.Thread(
            target=self._connection,
            args=(client, mode, started),
            name=f"fault-proxy-{self.port}-conn",
            daemon=True,
        )
        with self._lock:
            self._threads.add(t)
        t.start()

    def _connection(self, client: socket.socket, mode: ProxyMode | None, started: float) -> None:
        """One client connection: its requests, one exchange each, until one side closes."""
        upstream = Upstream(
            self._upstream_addr,
            self.io_timeout_s,
            track=self._track,
            untrack=self._untrack,
            error=self._error,
            tls=self._upstream_tls,
        )  # the server connection, opened on the first forward
        try:
            client.settimeout(self.io_timeout_s)
            if self._tls is not None:
                wrapped = self._handshake(client, mode, started)
                if wrapped is None:
                    return
                client = wrapped
            wire = Wire(client)
            while not self._stop.is_set():
                if mode is None:  # a later request on a kept-alive connection: wait for its bytes
                    if not wire.buf and not (isinstance(client, ssl.SSLSocket) and client.pending()):
                        readable, _, _ = select.select([client], [], [], self.io_timeout_s)
                        if not readable or self._stop.is_set():
                            return
                    mode, started = self._take_mode(), time.monotonic()
                    if mode is ProxyMode.REFUSE:
                        self._record(ProxiedExchange(started, mode, "", "", 0, 0, None, False, False))
                        tcp.reset(client)
                        return
                keep = self._exchange(wire, upstream, mode, started)
                mode = None
                if not keep:
                    return
        except Exception as e:  # noqa: BLE001 - counted, never silent
            self._error(f"connection: {e!r}")
        finally:
            upstream.drop()
            self._untrack(client)
            try:
                tcp.close(client)
            except OSError:
                pass
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _handshake(self, client: socket.socket, mode: ProxyMode | None, started: float) -> ssl.SSLSocket | None:
        """The TLS server side of one connection; None (recorded, counted) if the client refused
        the certificate or the handshake failed otherwise."""
        assert self._tls is not None
        self._untrack(client)
        try:
            wrapped = self._tls.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self._error(f"tls handshake: {getattr(e, 'reason', None) or type(e).__name__}")
            self._record(ProxiedExchange(started, mode or ProxyMode.PASS, "", "", 0, 0, None, False, False))
            client.close()
            return None
        if not self._track(wrapped):
            wrapped.close()
            return None
        return wrapped

    def _exchange(self, wire: Wire, upstream: Upstream, mode: ProxyMode, started: float) -> bool:
        """One request; True to keep the client connection for another."""
        client = wire.sock
        method = path = ""
        got = 0
        try:
            head_raw = wire.head()
            if head_raw is None:
                return False  # the client closed between requests: no exchange
            got = len(head_raw)
            method, path, head = parse_request_head(head_raw)
            if head.chunked():
                body = wire.chunked()
            else:
                body = wire.exact(head.content_length() or 0)
            got += len(body)
        except (Malformed, Closed, TimeoutError, OSError) as e:
            return self._bad_request(client, mode, started, method, path, got + len(wire.buf), e)
        request = head_raw + body
        keep = head.keep_alive()

        if mode is ProxyMode.HTTP_ERROR:
            reply = simple_response(
                self.error_status, "proxy_fault", f"HTTP {self.error_status} injected by the bench's fault proxy"
            )
            sent, done = tcp.send_all(client, reply)
            self._record(
                ProxiedExchange(
                    started, mode, method, path, len(request), sent, self.error_status if sent else None, False, done
                )
            )
            return False
        if mode is ProxyMode.STALL:
            self._record(ProxiedExchange(started, mode, method, path, len(request), 0, None, False, False))
            self._stall(client)
            return False
        if mode is ProxyMode.DROP_BEFORE:
            self._record(ProxiedExchange(started, mode, method, path, len(request), 0, None, False, False))
            tcp.close(client)
            return False

        # PASS and DROP_AFTER forward
        forwarded, response, status, up_keep = upstream.forward(request, method)
        if response is None:  # the server could not be reached or did not answer
            self._record(ProxiedExchange(started, mode, method, path, len(request), 0, None, forwarded, False))
            if forwarded:
                tcp.close(client)  # a server dying mid-answer: the connection just ends
            else:
                tcp.reset(client)  # a server that is down: as close to "refused" as the proxy gets
            return False
        if mode is ProxyMode.DROP_AFTER:
            self._record(ProxiedExchange(started, mode, method, path, len(request), 0, None, True, False))
            tcp.close(client)
            return False
        sent, done = tcp.send_all(client, response)
        self._record(
            ProxiedExchange(started, mode, method, path, len(request), sent, status if sent else None, True, done)
        )
        return done and keep and up_keep

    def _stall(self, client: socket.socket) -> None:
        """Hold the connection, silent, for stall_s; sooner if the proxy closes or the client
        hangs up."""
        deadline = time.monotonic() + self.stall_s
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                readable, _, _ = select.select([client], [], [], min(left, ACCEPT_POLL_S))
                if readable and not client.recv(RECV_BYTES):
                    return  # the client gave up
            except (OSError, ValueError):
                return

    def _bad_request(
        self, client: socket.socket, mode: ProxyMode, started: float, method: str, path: str, got: int, e: BaseException
    ) -> bool:
        what = "timed out" if isinstance(e, TimeoutError) else str(e) or type(e).__name__
        self._error(f"request: {what}")
        sent, done, status = 0, False, None
        if isinstance(e, Malformed):
            reply = simple_response(400, "bad_request", f"the fault proxy could not read the request: {what}")
            sent, done = tcp.send_all(client, reply)
            status = 400 if sent else None
        self._record(ProxiedExchange(started, mode, method, path, got, sent, status, False, done))
        return False
