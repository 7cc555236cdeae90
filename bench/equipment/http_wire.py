"""HTTP/1.x messages read off a socket and framed, as the fault proxy needs them: a head up to its
blank line, a body by Content-Length or chunked transfer coding (or to the close, for a response),
counting the bytes each message took, and refusing what it cannot frame (docs/fault-proxy.md)."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass

MAX_HEAD_BYTES = 64 * 1024
MAX_CHUNK_LINE = 1024
RECV_BYTES = 65536


class Malformed(Exception):
    """The bytes on a connection are not an HTTP/1.x message the proxy can frame."""


class Closed(Exception):
    """The peer closed the connection before the message ended."""


class Wire:
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
                    raise Malformed(f"head over {MAX_HEAD_BYTES} bytes")
                return self._take(i + 4)
            if len(self.buf) > MAX_HEAD_BYTES:
                raise Malformed(f"head over {MAX_HEAD_BYTES} bytes")
            start = max(0, len(self.buf) - 3)
            if not self._fill():
                if not self.buf:
                    return None
                raise Closed(f"closed after {len(self.buf)} bytes of a head")

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise Closed(f"closed after {len(self.buf)} of {n} body bytes")
        return self._take(n)

    def line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                return self._take(i + 2)
            if len(self.buf) > MAX_CHUNK_LINE:
                raise Malformed("chunk line too long")
            if not self._fill():
                raise Closed("closed inside a chunked body")

    def chunked(self) -> bytes:
        """A chunked body, raw (sizes, data, trailers)."""
        out = bytearray()
        while True:
            line = self.line()
            out += line
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise Malformed(f"bad chunk size {line[:40]!r}") from None
            if size < 0:
                raise Malformed("negative chunk size")
            if size == 0:
                while True:  # trailers, up to the blank line
                    trailer = self.line()
                    out += trailer
                    if trailer == b"\r\n":
                        return bytes(out)
                    if len(out) > MAX_HEAD_BYTES:
                        raise Malformed("trailers too long")
            data = self.exact(size + 2)
            if not data.endswith(b"\r\n"):
                raise Malformed("chunk not followed by CRLF")
            out += data

    def to_eof(self) -> bytes:
        while self._fill():
            pass
        return self._take(len(self.buf))


@dataclass(frozen=True)
class Head:
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
            raise Malformed("conflicting Content-Length headers")
        (value,) = values
        if not value.isdigit():
            raise Malformed(f"bad Content-Length {value[:20]!r}")
        return int(value)

    def chunked(self) -> bool:
        codings = self.tokens("transfer-encoding")
        if not codings:
            return False
        if codings[-1] != "chunked":
            raise Malformed(f"unsupported Transfer-Encoding {','.join(codings)[:40]!r}")
        return True


def _parse_head(raw: bytes) -> Head:
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
        raise Malformed("undecodable head") from None
    lines = text[:-4].split("\r\n")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or any(c in name for c in " \t"):
            raise Malformed(f"bad header line {line[:40]!r}")
        headers.append((name.lower(), value.strip()))
    return Head(lines[0], "", headers)


def parse_request_head(raw: bytes) -> tuple[str, str, Head]:
    """(method, target, head) of a request head."""
    head = _parse_head(raw)
    parts = head.start.split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1] or not parts[2].startswith("HTTP/1."):
        raise Malformed(f"bad request line {head.start[:60]!r}")
    return parts[0], parts[1], Head(head.start, parts[2], head.headers)


def parse_status_head(raw: bytes) -> tuple[int, Head]:
    """(status, head) of a response head."""
    head = _parse_head(raw)
    parts = head.start.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not (parts[1].isdigit() and len(parts[1]) == 3):
        raise Malformed(f"bad status line {head.start[:60]!r}")
    return int(parts[1]), Head(head.start, parts[0], head.headers)


def read_response(up: Wire, method: str) -> tuple[bytes, int, bool]:
    """The server's whole response to a `method` request, interim responses included: (its
    bytes, its final status, the server keeps the connection)."""
    out = bytearray()
    while True:
        raw = up.head()
        if raw is None:
            raise Closed("the server closed without answering")
        out += raw
        status, head = parse_status_head(raw)
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


_REASONS = {
    400: "Bad Request",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def simple_response(status: int, code: str, message: str) -> bytes:
    """A whole response of the proxy's own: `status`, a small JSON body, `Connection: close`."""
    body = json.dumps({"error": code, "message": message}, separators=(",", ":")).encode("ascii")
    reason = _REASONS.get(status, "Error")
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("ascii") + body
