"""A local serial port served over RFC 2217 (Telnet COM Port Control) on loopback: what ser2net
or a terminal server does for a rig whose UART hangs off another machine. A virtual rig puts its
simulated UART behind it (`[sim] uart = "rfc2217"`, docs/rig.md) so the bench reaches the device
through `rfc2217://127.0.0.1:<port>`, the hop a remote rig has.

The Telnet and RFC 2217 protocol is pyserial's `serial.rfc2217.PortManager`; this module only
moves bytes: one thread per direction while a client is connected, and one that accepts clients.
RFC 2217 has no exclusive open, so the server holds the local port exclusively itself and serves
one client at a time: a second one is refused (its connection closed at once), as ser2net's
default of one connection per port does.
"""

from __future__ import annotations

import errno
import socket
import threading
from typing import Any

import serial
from serial.rfc2217 import PortManager

POLL_S = 0.05  # how often an idle thread looks at the stop flag
READ_BYTES = 4096
WRITE_TIMEOUT_S = 2.0  # a local port that takes no bytes for this long loses them, noted
JOIN_S = 2.0
NO_MODEM_LINES = (errno.ENOTTY, errno.EINVAL)  # the ioctl's answer on a pty or a USB CDC port


class Rfc2217ServerError(RuntimeError):
    """The server could not start: the local port would not open, or no loopback port was free."""


class _ModemLinesOptional:
    """The local port as PortManager sees it. A port without modem lines (a pty, many USB CDC
    ports: their ioctl fails with ENOTTY or EINVAL) reads them inactive and ignores a client
    setting DTR or RTS, as pyserial does when it opens such a port; everything else is the port's."""

    def __init__(self, port: serial.SerialBase) -> None:
        object.__setattr__(self, "_port", port)

    def __getattr__(self, name: str) -> Any:
        try:
            return getattr(self._port, name)
        except OSError as e:
            if name in ("cts", "dsr", "ri", "cd") and e.errno in NO_MODEM_LINES:
                return False
            raise

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            setattr(self._port, name, value)
        except OSError as e:
            if name not in ("dtr", "rts") or e.errno not in NO_MODEM_LINES:
                raise


class _Client:
    """One connected client: its socket, written from both threads under one lock."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()
        self.gone = threading.Event()

    def write(self, data: bytes) -> None:  # PortManager's connection
        with self._lock:
            self.sock.sendall(data)


class Rfc2217Server:
    """Serve `port` (a device path or pyserial URL) on rfc2217://host:<free port>; `url` says where."""

    def __init__(self, port: str, baud: int = 115200, host: str = "127.0.0.1") -> None:
        self.port = port
        try:
            # the server alone talks to the local port: the exclusivity RFC 2217 cannot ask for
            exclusive = {"exclusive": True} if "://" not in port else {}  # a URL port has no lock
            local = serial.serial_for_url(
                port, baudrate=baud, timeout=POLL_S, write_timeout=WRITE_TIMEOUT_S, **exclusive
            )
        except (serial.SerialException, OSError, ValueError) as e:
            raise Rfc2217ServerError(f"RFC 2217 server: cannot open {port}: {e}") from None
        self._local = local
        try:
            self._listener = socket.create_server((host, 0))
        except OSError as e:
            local.close()
            raise Rfc2217ServerError(f"RFC 2217 server: cannot listen on {host}: {e}") from None
        self._listener.settimeout(POLL_S)
        self.url = f"rfc2217://{host}:{self._listener.getsockname()[1]}"
        self.to_device = 0  # data bytes from clients written to the port
        self.to_client = 0  # data bytes from the port sent to clients
        self.clients = 0  # connections served
        self.refused = 0  # connections refused while one was served
        self.errors: list[str] = []  # what went wrong while serving, one line each
        self._stop = threading.Event()
        self._client: _Client | None = None
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name=f"rfc2217 accept {port}", daemon=True)

    def start(self) -> Rfc2217Server:
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Drop the client, stop every thread, close the port and the listener; idempotent."""
        self._stop.set()
        client = self._client
        if client is not None:
            client.gone.set()
        for thread in [self._acceptor, *self._threads]:
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(JOIN_S)
        if client is not None:
            client.sock.close()
        self._listener.close()
        self._local.close()

    def __enter__(self) -> Rfc2217Server:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def tally(self) -> str:
        """One line for a log: what went through, and what went wrong."""
        errors = f"; errors: {'; '.join(self.errors[-3:])}" if self.errors else ""
        return (
            f"RFC 2217 server {self.url} for {self.port}: {self.to_device} bytes to the device, "
            f"{self.to_client} from it, {self.clients} client(s), {self.refused} refused{errors}"
        )

    # -- the threads ------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                self._reap()
                continue
            except OSError as e:
                if not self._stop.is_set():
                    self.errors.append(f"accept: {e}")
                return
            self._reap()
            if self._client is not None:
                self.refused += 1  # one client at a time: the port is exclusive
                sock.close()
                continue
            self._serve(sock)

    def _reap(self) -> None:
        """Forget a client that has gone (its threads end within a poll) or whose threads ended."""
        if self._client is not None and self._client.gone.is_set():
            for thread in self._threads:
                thread.join(JOIN_S)
        if self._client is not None and not any(t.is_alive() for t in self._threads):
            self._client.sock.close()
            self._client, self._threads = None, []

    def _serve(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(POLL_S)
        client = _Client(sock)
        try:
            manager = PortManager(_ModemLinesOptional(self._local), client)  # sends its option requests
        except OSError as e:
            self.errors.append(f"client setup: {e}")
            sock.close()
            return
        self.clients += 1
        self._client = client
        self._threads = [
            threading.Thread(target=self._to_device, args=(client, manager), name="rfc2217 to device", daemon=True),
            threading.Thread(target=self._to_client, args=(client, manager), name="rfc2217 to client", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _to_device(self, client: _Client, manager: PortManager) -> None:
        """Client -> port: Telnet and RFC 2217 commands answered by the manager, data written."""
        while not (self._stop.is_set() or client.gone.is_set()):
            try:
                data = client.sock.recv(READ_BYTES)
            except TimeoutError:
                continue
            except OSError as e:
                self._lost(client, f"from the client: {e}")
                return
            if not data:  # the client closed the port
                client.gone.set()
                return
            try:
                payload = b"".join(manager.filter(data))
                if payload:
                    self._local.write(payload)
                    self.to_device += len(payload)
            except serial.SerialTimeoutException:
                self.errors.append(f"to the device: {self.port} took no bytes for {WRITE_TIMEOUT_S} s: dropped")
            except (serial.SerialException, OSError, ValueError) as e:
                self._lost(client, f"to the device: {e}")
                return

    def _to_client(self, client: _Client, manager: PortManager) -> None:
        """Port -> client: data read, escaped for Telnet, sent."""
        while not (self._stop.is_set() or client.gone.is_set()):
            try:
                data = self._local.read(1)  # up to POLL_S for the first byte, then what came with it
                if data and (waiting := self._local.in_waiting):
                    data += self._local.read(min(waiting, READ_BYTES))
            except (serial.SerialException, OSError) as e:
                self._lost(client, f"from the device: {e}")
                return
            if not data:
                continue
            try:
                client.write(b"".join(manager.escape(data)))
                self.to_client += len(data)
            except OSError as e:
                self._lost(client, f"to the client: {e}")
                return

    def _lost(self, client: _Client, why: str) -> None:
        """A direction failed: the client is dropped (both threads end), the reason kept."""
        if not (self._stop.is_set() or client.gone.is_set()):
            self.errors.append(why)
        client.gone.set()
