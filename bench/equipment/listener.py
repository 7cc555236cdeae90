"""The listening side every proxy of the bench's equipment shares: a socket bound where the bench
is pointed, and a thread handing each accepted connection to the proxy, until it is closed."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from bench.timeout import sleep_for

ACCEPT_POLL_S = 0.05  # how often the accept loop looks whether it was closed
CLOSE_JOIN_S = 2.0  # how long closing waits for a proxy's threads


class Listener:
    """Accepts connections on `address` and calls `on_client(sock)` for each, on its own thread;
    `on_error(text)` hears of an accept that failed while open."""

    def __init__(
        self,
        address: tuple[str, int],
        name: str,
        on_client: Callable[[socket.socket], None],
        on_error: Callable[[str], None],
        backlog: int = 64,
    ) -> None:
        self.address, self.name, self.backlog = address, name, backlog
        self._on_client, self._on_error = on_client, on_error
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._sock is not None

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("the proxy is not started")
        return int(self._sock.getsockname()[1])

    def start(self) -> None:
        if self._sock is not None:
            return
        sock = socket.socket(socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(self.address)
        sock.listen(self.backlog)
        sock.settimeout(ACCEPT_POLL_S)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept_loop, name=f"{self.name}-{self.port}", daemon=True)
        self._thread.start()

    def close(self, deadline: float) -> None:
        """Stop accepting (the accept thread joined by the monotonic `deadline`) and close."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._sock is not None:
            self._sock.close()

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError as e:
                if not self._stop.is_set():
                    self._on_error(f"accept: {e!r}")
                    sleep_for(ACCEPT_POLL_S)
                continue
            self._on_client(client)
