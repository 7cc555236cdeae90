"""A fault-injecting HTTP proxy between a device and the Metrics server: the server faults of a
sick server or network (refused/reset connection, 5xx, a reply slower than the device's timeout,
a connection dropped before or after the server committed), injected on demand, on real TCP.

    with FaultProxy(metrics_server.url, stall_s=3.0) as proxy:
        device.configure(url=proxy.base_url)
        proxy.set_mode(ProxyMode.DROP_AFTER, count=1)   # the next request: stored, reply lost
        ...
        exchange = proxy.wait_for(lambda e: e.mode is ProxyMode.DROP_AFTER, timeout_s=5)

Plain sockets and threads (stdlib): a listener thread, one thread per client connection, and for
the requests it forwards, one upstream connection per client connection (upstream HTTPS is not
supported: put the proxy in front of a plain-HTTP server).

What the client sees on the wire, per mode (`ProxyMode`):

| mode | the proxy | the client (stdlib http.client) sees |
|---|---|---|
| `pass` | forwards the request as received, relays the server's response byte for byte | the server's answer |
| `refuse` | accepts, then closes at once with SO_LINGER 0 (a TCP RST), reading nothing | `ConnectionResetError` (or `BrokenPipeError` when sending), never `ConnectionRefusedError`: a listening socket cannot refuse one connection and accept the next |
| `http_error` | reads the request, answers `error_status` with a small JSON body and `Connection: close`, never forwards | that status |
| `stall` | reads the request, forwards nothing, sends nothing for `stall_s` (or until `close()`), then closes (FIN) | its read timeout (`TimeoutError`); after `stall_s`, `RemoteDisconnected` |
| `drop_before` | reads the request, closes (FIN) without forwarding | `RemoteDisconnected` |
| `drop_after` | forwards, reads the server's whole response (the server has committed the request), closes (FIN) without sending any of it | `RemoteDisconnected`: the case where a device rightly sends the same rows again |

Requests: HTTP/1.x, bodies framed by Content-Length or chunked transfer coding (no body
otherwise); `Expect: 100-continue` is not honoured (the body is read before anything is
forwarded). Keep-alive is followed: each request on a connection is one exchange with its own
mode, the connection staying open as long as both the client and the server keep it so (the
device sends `Connection: close`, one request per connection). Any mode other than `pass` ends
the connection.

Modes are taken per request: `set_mode(mode, count=n)` applies to the next n requests, then the
proxy is back to `pass`. A connection's first request takes its mode when the connection is
accepted (so `refuse` reads nothing); a later request on a kept-alive connection takes it when
its first bytes arrive.

Exchanges (`exchanges()`) are recorded in the order their outcome became known. When the client
sees a failure (`refuse`, `stall`, `drop_before`, `drop_after`, a server down), the exchange was
recorded before its connection was reset or closed, so it is there when the client notices. When
the client gets a response (`pass`, `http_error`, a 400), it is recorded right after the last
byte was written, and the client may have read the response a moment before: wait for it with
`wait_for`, not by reading `exchanges()` at once. Byte counts are what crossed the client's
socket: the request as received (request line, headers, body) and the response as written to it
(interim and final, headers included). `forwarded` means the whole
request was written to the server's socket; `delivered` means the whole response was written
to the client's socket.

When the server cannot be reached (refused, down), a `pass` or `drop_after` request is answered
as a down server would be: the client's connection is reset. A malformed request (a bad request
line, header or framing, a head over 64 KiB) is answered `400` and closed; a client closing
mid-request or silent past `io_timeout_s` is closed. Either is recorded as an exchange and
counted in `errors` (with a reason in `error_log()`); any other exception in a connection thread
is counted there too, never silent. A client closing cleanly between requests is no exchange.

The simulated device's transport (`bench.sim.metrics.http_post.post`) reports the modes as: the
server's status (`pass`), `dropped` (`refuse`, `drop_before`, `drop_after`), the status
(`http_error`), `timeout` (`stall`, when `stall_s` exceeds its reply timeout).
"""

from __future__ import annotations

import json
import select
import socket
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable

MAX_HEAD_BYTES = 64 * 1024
MAX_CHUNK_LINE = 1024
MAX_ERROR_LOG = 200
RECV_BYTES = 65536
ACCEPT_POLL_S = 0.05
CLOSE_JOIN_S = 2.0


class ProxyMode(str, Enum):
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


class _Malformed(Exception):
    """The bytes on a connection are not an HTTP/1.x message the proxy can frame."""


class _Closed(Exception):
    """The peer closed the connection before the message ended."""


class _Wire:
    """A socket read as HTTP: buffered, counting the bytes each message took."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    def _fill(self) -> bool:
        if self.eof:
            return False
        data = self.sock.recv(RECV_BYTES)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _take(self, n: int) -> bytes:
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def head(self) -> bytes | None:
        """The next message head (up to and including the blank line); None on a clean EOF
        before any byte of it."""
        start = 0
        while True:
            i = self.buf.find(b"\r\n\r\n", start)
            if i >= 0:
                if i + 4 > MAX_HEAD_BYTES:
                    raise _Malformed(f"head over {MAX_HEAD_BYTES} bytes")
                return self._take(i + 4)
            if len(self.buf) > MAX_HEAD_BYTES:
                raise _Malformed(f"head over {MAX_HEAD_BYTES} bytes")
            start = max(0, len(self.buf) - 3)
            if not self._fill():
                if not self.buf:
                    return None
                raise _Closed(f"closed after {len(self.buf)} bytes of a head")

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise _Closed(f"closed after {len(self.buf)} of {n} body bytes")
        return self._take(n)

    def line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                return self._take(i + 2)
            if len(self.buf) > MAX_CHUNK_LINE:
                raise _Malformed("chunk line too long")
            if not self._fill():
                raise _Closed("closed inside a chunked body")

    def chunked(self) -> bytes:
        """A chunked body, raw (sizes, data, trailers)."""
        out = bytearray()
        while True:
            line = self.line()
            out += line
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _Malformed(f"bad chunk size {line[:40]!r}") from None
            if size < 0:
                raise _Malformed("negative chunk size")
            if size == 0:
                while True:  # trailers, up to the blank line
                    trailer = self.line()
                    out += trailer
                    if trailer == b"\r\n":
                        return bytes(out)
                    if len(out) > MAX_HEAD_BYTES:
                        raise _Malformed("trailers too long")
            data = self.exact(size + 2)
            if not data.endswith(b"\r\n"):
                raise _Malformed("chunk not followed by CRLF")
            out += data

    def to_eof(self) -> bytes:
        while self._fill():
            pass
        return self._take(len(self.buf))


@dataclass(frozen=True)
class _Head:
    start: str  # request line or status line
    version: str
    headers: list[tuple[str, str]]

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    def tokens(self, name: str) -> list[str]:
        return [t.strip().lower() for v in self.values(name) for t in v.split(",") if t.strip()]

    def keep_alive(self) -> bool:
        conn = self.tokens("connection")
        if "close" in conn:
            return False
        return self.version == "HTTP/1.1" or "keep-alive" in conn

    def content_length(self) -> int | None:
        values = {v.strip() for v in self.values("content-length")}
        if not values:
            return None
        if len(values) > 1:
            raise _Malformed("conflicting Content-Length headers")
        (value,) = values
        if not value.isdigit():
            raise _Malformed(f"bad Content-Length {value[:20]!r}")
        return int(value)

    def chunked(self) -> bool:
        codings = self.tokens("transfer-encoding")
        if not codings:
            return False
        if codings[-1] != "chunked":
            raise _Malformed(f"unsupported Transfer-Encoding {','.join(codings)[:40]!r}")
        return True


def _parse_head(raw: bytes) -> _Head:
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
        raise _Malformed("undecodable head") from None
    lines = text[:-4].split("\r\n")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or any(c in name for c in " \t"):
            raise _Malformed(f"bad header line {line[:40]!r}")
        headers.append((name.lower(), value.strip()))
    return _Head(lines[0], "", headers)


def _parse_request_head(raw: bytes) -> tuple[str, str, _Head]:
    head = _parse_head(raw)
    parts = head.start.split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1] or not parts[2].startswith("HTTP/1."):
        raise _Malformed(f"bad request line {head.start[:60]!r}")
    return parts[0], parts[1], _Head(head.start, parts[2], head.headers)


def _parse_status_head(raw: bytes) -> tuple[int, _Head]:
    head = _parse_head(raw)
    parts = head.start.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not (parts[1].isdigit() and len(parts[1]) == 3):
        raise _Malformed(f"bad status line {head.start[:60]!r}")
    return int(parts[1]), _Head(head.start, parts[0], head.headers)


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER on, 0 s)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def _close(sock: socket.socket) -> None:
    """Close with a FIN, the data already written going out first."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    sock.close()


def _send(sock: socket.socket, data: bytes) -> tuple[int, bool]:
    """Write data; (bytes written, all of them)."""
    view = memoryview(data)
    sent = 0
    try:
        while sent < len(data):
            n = sock.send(view[sent:])
            if n <= 0:
                break
            sent += n
    except OSError:
        return sent, False
    return sent, sent == len(data)


def _readable(sock: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _host_in_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


_REASONS = {400: "Bad Request", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
            504: "Gateway Timeout"}


def _simple_response(status: int, code: str, message: str) -> bytes:
    body = json.dumps({"error": code, "message": message}, separators=(",", ":")).encode("ascii")
    reason = _REASONS.get(status, "Error")
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode("ascii") + body


class FaultProxy:
    """A TCP proxy in front of an HTTP server, misbehaving on demand (module docstring)."""

    def __init__(self, upstream: str, *, listen_host: str = "127.0.0.1", listen_port: int = 0,
                 stall_s: float = 30.0, error_status: int = 503, io_timeout_s: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise ValueError(f"upstream must be http://host:port[/path], got {upstream!r}")
        if not 100 <= error_status <= 599:
            raise ValueError(f"error_status must be an HTTP status, got {error_status}")
        if stall_s < 0 or io_timeout_s <= 0:
            raise ValueError("stall_s must be >= 0 and io_timeout_s > 0")
        self.upstream = upstream
        self._upstream_addr = (parts.hostname, parts.port)
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
        self._listener: socket.socket | None = None
        self._threads: set[threading.Thread] = set()
        self._sockets: set[socket.socket] = set()
        self._accept_thread: threading.Thread | None = None
        self._port: int | None = None

    # -- life -----------------------------------------------------------------------------------

    def start(self) -> "FaultProxy":
        if self._listener is not None:
            return self
        family = socket.AF_INET6 if ":" in self._listen[0] else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(self._listen)
        listener.listen(64)
        listener.settimeout(ACCEPT_POLL_S)
        self._listener = listener
        self._port = listener.getsockname()[1]
        self._accept_thread = threading.Thread(target=self._accept_loop, name=f"fault-proxy-{self._port}",
                                               daemon=True)
        self._accept_thread.start()
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
        if self._accept_thread is not None:
            self._accept_thread.join(max(0.0, deadline - time.monotonic()))
        if self._listener is not None:
            self._listener.close()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with self._changed:
            self._changed.notify_all()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the proxy is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """What the device is configured with: the proxy's address plus the upstream's path."""
        return f"http://{_host_in_url(self._listen[0])}:{self.port}{self._prefix}"

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

    def wait_for(self, predicate: Callable[[ProxiedExchange], bool], timeout_s: float, *,
                 after: int = 0) -> ProxiedExchange | None:
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

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError as e:
                if not self._stop.is_set():
                    self._error(f"accept: {e!r}")
                    time.sleep(ACCEPT_POLL_S)
                continue
            mode = self._take_mode()
            started = time.monotonic()
            if mode is ProxyMode.REFUSE:  # at once, on this thread: nothing is read
                self._record(ProxiedExchange(started, mode, "", "", 0, 0, None, False, False))
                _reset(client)
                continue
            if not self._track(client):
                _reset(client)
                continue
            t = threading.Thread(target=self._connection, args=(client, mode, started),
                                 name=f"fault-proxy-{self._port}-conn", daemon=True)
            with self._lock:
                self._threads.add(t)
            t.start()

    def _connection(self, client: socket.socket, mode: ProxyMode | None, started: float) -> None:
        """One client connection: its requests, one exchange each, until one side closes."""
        upstream: list[_Wire] = []  # the server connection, opened on the first forward
        try:
            client.settimeout(self.io_timeout_s)
            wire = _Wire(client)
            while not self._stop.is_set():
                if mode is None:  # a later request on a kept-alive connection: wait for its bytes
                    if not wire.buf:
                        readable, _, _ = select.select([client], [], [], self.io_timeout_s)
                        if not readable or self._stop.is_set():
                            return
                    mode, started = self._take_mode(), time.monotonic()
                    if mode is ProxyMode.REFUSE:
                        self._record(ProxiedExchange(started, mode, "", "", 0, 0, None, False, False))
                        _reset(client)
                        return
                keep = self._exchange(wire, upstream, mode, started)
                mode = None
                if not keep:
                    return
        except Exception as e:  # noqa: BLE001 - counted, never silent
            self._error(f"connection: {e!r}")
        finally:
            for up in upstream:
                self._untrack(up.sock)
                up.sock.close()
            self._untrack(client)
            try:
                _close(client)
            except OSError:
                pass
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _exchange(self, wire: _Wire, upstream: list[_Wire], mode: ProxyMode, started: float) -> bool:
        """One request; True to keep the client connection for another."""
        client = wire.sock
        method = path = ""
        got = 0
        try:
            head_raw = wire.head()
            if head_raw is None:
                return False  # the client closed between requests: no exchange
            got = len(head_raw)
            method, path, head = _parse_request_head(head_raw)
            if head.chunked():
                body = wire.chunked()
            else:
                body = wire.exact(head.content_length() or 0)
            got += len(body)
        except (_Malformed, _Closed, TimeoutError, OSError) as e:
            return self._bad_request(client, mode, started, method, path, got + len(wire.buf), e)
        request = head_raw + body
        keep = head.keep_alive()

        if mode is ProxyMode.HTTP_ERROR:
            reply = _simple_response(self.error_status, "proxy_fault",
                                     f"HTTP {self.error_status} injected by the bench's fault proxy")
            sent, done = _send(client, reply)
            self._record(ProxiedExchange(started, mode, method, path, len(request), sent,
                                         self.error_status if sent else None, False, done))
            return False
        if mode is ProxyMode.STALL:
            self._record(ProxiedExchange(started, mode, method, path, len(request), 0, None, False, False))
            self._stall(client)
            return False
        if mode is ProxyMode.DROP_BEFORE:
            self._record(ProxiedExchange(started, mode, method, path, len(request), 0, None, False, False))
            _close(client)
            return False

        # PASS and DROP_AFTER forward
        forwarded, response, status, up_keep = self._forward(upstream, request, method)
        if response is None:  # the server could not be reached or did not answer
            self._record(ProxiedExchange(started, mode, method, path, len(request), 0, None, forwarded, False))
            if forwarded:
                _close(client)  # a server dying mid-answer: the connection just ends
            else:
                _reset(client)  # a server that is down: as close to "refused" as the proxy gets
            return False
        if mode is ProxyMode.DROP_AFTER:
            self._record(ProxiedExchange(started, mode, method, path, len(request), 0, None, True, False))
            _close(client)
            return False
        sent, done = _send(client, response)
        self._record(ProxiedExchange(started, mode, method, path, len(request), sent,
                                     status if sent else None, True, done))
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

    def _bad_request(self, client: socket.socket, mode: ProxyMode, started: float, method: str, path: str,
                     got: int, e: BaseException) -> bool:
        what = "timed out" if isinstance(e, TimeoutError) else str(e) or type(e).__name__
        self._error(f"request: {what}")
        sent, done, status = 0, False, None
        if isinstance(e, _Malformed):
            sent, done = _send(client, _simple_response(400, "bad_request", f"the fault proxy could not read the "
                                                                             f"request: {what}"))
            status = 400 if sent else None
        self._record(ProxiedExchange(started, mode, method, path, got, sent, status, False, done))
        return False

    def _forward(self, upstream: list[_Wire], request: bytes, method: str
                 ) -> tuple[bool, bytes | None, int | None, bool]:
        """Send the request to the server and read its whole response: (forwarded, the response
        bytes or None, its final status, the server keeps the connection). A kept-alive server
        connection is reused only if the server has not closed it meanwhile; a request is never
        sent twice (the proxy must not make duplicates of its own)."""
        if upstream and _readable(upstream[0].sock):  # closed (or talking out of turn) while idle
            self._drop_upstream(upstream)
        if not upstream:
            try:
                sock = socket.create_connection(self._upstream_addr, timeout=self.io_timeout_s)
            except OSError as e:
                self._error(f"upstream connect: {e!r}")
                return False, None, None, False
            if not self._track(sock):
                sock.close()
                return False, None, None, False
            upstream.append(_Wire(sock))
        up = upstream[0]
        _, done = _send(up.sock, request)
        if not done:
            self._drop_upstream(upstream)
            self._error("upstream: the request could not be sent")
            return False, None, None, False
        try:
            response, status, keep = self._read_response(up, method)
        except (_Malformed, _Closed, TimeoutError, OSError) as e:
            self._drop_upstream(upstream)
            self._error(f"upstream response: {e or type(e).__name__}")
            return True, None, None, False
        if not keep:
            self._drop_upstream(upstream)
        return True, response, status, keep

    def _drop_upstream(self, upstream: list[_Wire]) -> None:
        for up in upstream:
            self._untrack(up.sock)
            up.sock.close()
        upstream.clear()

    @staticmethod
    def _read_response(up: _Wire, method: str) -> tuple[bytes, int, bool]:
        out = bytearray()
        while True:
            raw = up.head()
            if raw is None:
                raise _Closed("the server closed without answering")
            out += raw
            status, head = _parse_status_head(raw)
            if 100 <= status < 200 and status != 101:
                continue  # interim: relayed, the final response follows
            break
        keep = head.keep_alive()
        if method == "HEAD" or status in (101, 204, 304):
            pass
        elif head.chunked():
            out += up.chunked()
        elif (length := head.content_length()) is not None:
            out += up.exact(length)
        else:
            out += up.to_eof()  # delimited by the close
            keep = False
        return bytes(out), status, keep
