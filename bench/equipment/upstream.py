"""The fault proxy's side towards the server: one client connection's connection to it, opened on
the first request forwarded and reused while the server keeps it alive. A request is never sent
twice (the proxy must not make duplicates of its own)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable

from bench.equipment import tcp
from bench.equipment.http_wire import Closed, Malformed, Wire, read_response


class Upstream:
    """One client connection's server connection. `track` registers a socket with the proxy (False:
    the proxy is closing, do not open), `untrack` forgets it, `error` counts a failure."""

    def __init__(
        self,
        addr: tuple[str, int],
        timeout_s: float,
        *,
        track: Callable[[socket.socket], bool],
        untrack: Callable[[socket.socket], None],
        error: Callable[[str], None],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._addr = addr
        self._tls = tls  # HTTPS to the server, verified
        self._timeout_s = timeout_s
        self._track = track
        self._untrack = untrack
        self._error = error
        self._wire: Wire | None = None

    def forward(self, request: bytes, method: str) -> tuple[bool, bytes | None, int | None, bool]:
        """Send the request to the server and read its whole response: (forwarded, the response
        bytes or None, its final status, the server keeps the connection). A kept-alive server
        connection is reused only if the server has not closed it meanwhile."""
        if self._wire is not None and tcp.readable(self._wire.sock):  # closed (or talking out of turn) while idle
            self.drop()
        if self._wire is None:
            try:
                sock = socket.create_connection(self._addr, timeout=self._timeout_s)
                if self._tls is not None:
                    sock = self._tls.wrap_socket(sock, server_hostname=self._addr[0])
            except OSError as e:  # ssl.SSLError is one
                self._error(f"upstream connect: {e!r}")
                return False, None, None, False
            if not self._track(sock):
                sock.close()
                return False, None, None, False
            self._wire = Wire(sock)
        up = self._wire
        _, done = tcp.send_all(up.sock, request)
        if not done:
            self.drop()
            self._error("upstream: the request could not be sent")
            return False, None, None, False
        try:
            response, status, keep = read_response(up, method)
        except (Malformed, Closed, TimeoutError, OSError) as e:
            self.drop()
            self._error(f"upstream response: {e or type(e).__name__}")
            return True, None, None, False
        if not keep:
            self.drop()
        return True, response, status, keep

    def drop(self) -> None:
        """Close the server connection, if one is open."""
        if self._wire is not None:
            self._untrack(self._wire.sock)
            self._wire.sock.close()
            self._wire = None
