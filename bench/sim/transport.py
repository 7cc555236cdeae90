"""How the simulated device's UART reaches the host: a pty, or a TCP socket where there is none.

A pty gives the bench a real serial device node (`/dev/pts/N`) opened by pyserial exactly as a
USB-UART would be. Windows has no pty, so there the device listens on a loopback TCP port and the
bench opens `socket://127.0.0.1:<port>`, still through pyserial.
"""

from __future__ import annotations

import errno
import os
import select
import socket


class PtyTransport:
    def __init__(self) -> None:
        import tty  # POSIX only

        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # without it the line discipline echoes and rewrites \n
        os.set_blocking(self._master, False)
        self.url = os.ttyname(self._slave)
        # Keeping our own slave fd open means a client closing the port does not make the
        # master see EIO, and the node stays valid for the next client.

    def read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self._master], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(self._master, 4096)
        except BlockingIOError:
            return b""
        except OSError as e:
            if e.errno == errno.EIO:
                return b""
            raise

    def write(self, data: bytes) -> None:
        """Write what fits; a UART with nobody listening loses bytes rather than blocking."""
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._master, view)
            except BlockingIOError:
                return
            view = view[n:]

    def close(self) -> None:
        """Idempotent: closing twice must not close a descriptor number reused since."""
        fds, self._master, self._slave = (self._master, self._slave), -1, -1
        for fd in fds:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass


class SocketTransport:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind((host, 0))
        self._server.listen(1)
        self._client: socket.socket | None = None
        self.url = f"socket://{host}:{self._server.getsockname()[1]}"

    def read(self, timeout: float) -> bytes:
        watch = [self._client] if self._client else [self._server]
        ready, _, _ = select.select(watch, [], [], timeout)
        if not ready:
            return b""
        if self._client is None:
            self._client, _ = self._server.accept()
            self._client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return b""
        try:
            data = self._client.recv(4096)
        except OSError:
            data = b""
        if not data:  # the host closed the port; wait for the next one
            self._client.close()
            self._client = None
        return data

    def write(self, data: bytes) -> None:
        if self._client is None:
            return  # nobody connected: the bytes go nowhere, as on an unplugged UART
        try:
            self._client.sendall(data)
        except OSError:
            self._client.close()
            self._client = None

    def close(self) -> None:
        for s in (self._client, self._server):
            if s is not None:
                s.close()


def open_transport(kind: str = "auto"):
    if kind == "pty" or (kind == "auto" and os.name == "posix"):
        return PtyTransport()
    if kind in ("socket", "auto"):
        return SocketTransport()
    raise ValueError(f"unknown link kind {kind!r}; expected auto, pty or socket")
