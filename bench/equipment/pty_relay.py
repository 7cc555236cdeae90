"""A fault-injecting relay on a serial link: a new pseudo-terminal whose far side is relayed, byte
for byte, to a real port (a USB-UART, the virtual rig's pty). A rig file whose `link.port` names
the relay's pty puts it between the bench and the device, like a user's own pty relay, a flaky
USB-UART or a USB CDC-ACM port that ignores the baud rate; on demand it

- cuts the device's next line after a few bytes (the rest of that line is lost, as when the
  device resets in the middle of a reply): `cut_next_line`;
- floods the bench with bytes that never end a line, at a given rate or as fast as the bench
  reads them (a wrong baud rate, line noise): `flood`;
- injects any bytes towards the bench (a line of a megabyte, escape sequences): `inject`;
- rewrites each line the device sends (a device echoing what it was sent, or its key):
  `rewrite`.

While `cut_next_line` or `rewrite` is armed, the device's bytes are held until their newline
(a reply without one waits for the next). POSIX only (pty); the standard library only.
"""

from __future__ import annotations

import errno
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

Rewrite = Callable[[bytes], bytes]  # a line from the device without its newline -> what the bench gets instead

POLL_S = 0.01
READ_BYTES = 4096
WRITE_BYTES = 65536
FLOOD_BYTES = b"\xf0\x0f\x55\xaa\x1b\x07~#"  # noise without a newline (ESC and BEL included)
JOIN_S = 2.0


class PtyRelay:
    """Relay a new pty to `port` (docs/bench-faults.md "The link stays bounded and honest")."""

    def __init__(self, port: str) -> None:
        import tty  # POSIX only

        self.port = port
        self._dev = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            tty.setraw(self._dev)
        except OSError:
            pass  # not a terminal (a FIFO in a test): nothing to set
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no \n -> \r\n rewriting
        os.set_blocking(self._master, False)
        self.url = os.ttyname(self._slave)  # what the bench opens (link.port)
        # Keeping our own slave fd open: the bench closing and reopening the port is no hangup.
        self._lock = threading.Lock()
        self._out = bytearray()  # towards the bench, not yet written
        self._line = bytearray()  # from the device, held while a line fault is armed
        self._cut_keep: int | None = None
        self._rewrite: Rewrite | None = None
        self._flood: tuple[float, float] | None = None  # (until monotonic, bytes/s; 0: as fast as read)
        self._flooded_at = 0.0
        self.to_bench = 0  # bytes written to the bench, relayed and injected
        self.to_device = 0  # bytes relayed from the bench to the device
        self.flooded = 0  # bytes of flood queued for the bench
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pty-relay {port}", daemon=True)

    def start(self) -> PtyRelay:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop relaying and close both sides; idempotent."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(JOIN_S)
        fds, self._dev, self._master, self._slave = (self._dev, self._master, self._slave), -1, -1, -1
        for fd in fds:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def __enter__(self) -> PtyRelay:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- faults -----------------------------------------------------------------------------
    def cut_next_line(self, keep: int) -> None:
        """The next line from the device reaches the bench as its first `keep` bytes, no newline."""
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        with self._lock:
            self._cut_keep = keep

    def rewrite(self, fn: Rewrite | None) -> None:
        """Pass every line from the device through fn (None: relay them unchanged again)."""
        with self._lock:
            self._rewrite = fn

    def inject(self, data: bytes) -> None:
        """Send these bytes to the bench, after what is already queued."""
        with self._lock:
            self._out.extend(data)

    def flood(self, seconds: float, rate_bytes_s: float = 0.0) -> None:
        """For `seconds`, bytes without a newline at rate_bytes_s (0: as fast as the bench reads)."""
        if seconds < 0 or rate_bytes_s < 0:
            raise ValueError("seconds and rate_bytes_s must be >= 0")
        with self._lock:
            self._flood = (time.monotonic() + seconds, rate_bytes_s)
            self._flooded_at = time.monotonic()

    def stop_flood(self) -> None:
        with self._lock:
            self._flood = None

    @property
    def flooding(self) -> bool:
        flood = self._flood
        return flood is not None and time.monotonic() < flood[0]

    # -- the relay ----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._top_up_flood()
            want = [self._master] if self._out else []
            try:
                readable, writable, _ = select.select([self._master, self._dev], want, [], POLL_S)
            except (OSError, ValueError):
                return  # closed under us
            if self._master in readable:
                self._to_device(self._read(self._master))
            if self._dev in readable:
                self._from_device(self._read(self._dev))
            if self._master in writable:
                self._write_bench()

    def _read(self, fd: int) -> bytes:
        try:
            return os.read(fd, READ_BYTES)
        except BlockingIOError:
            return b""
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: the other side closed for now; it may come back
                self.errors.append(f"read: {e}")
            time.sleep(POLL_S)
            return b""

    def _to_device(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + 1.0
        while view and time.monotonic() < deadline:
            try:
                n = os.write(self._dev, view)
                view = view[n:]
                self.to_device += n
            except BlockingIOError:
                time.sleep(0.001)
            except OSError as e:
                self.errors.append(f"write to device: {e}")
                return

    def _from_device(self, data: bytes) -> None:
        with self._lock:
            if self._cut_keep is None and self._rewrite is None and not self._line:
                self._out.extend(data)
                return
            self._line.extend(data)
            while (nl := self._line.find(b"\n")) >= 0:
                line = bytes(self._line[:nl])
                del self._line[: nl + 1]
                self._out.extend(self._faulted(line))

    def _faulted(self, line: bytes) -> bytes:
        """One complete line from the device as the armed fault passes it on (lock held)."""
        if self._cut_keep is not None:
            keep, self._cut_keep = self._cut_keep, None
            return line[:keep]
        if self._rewrite is not None:
            return self._rewrite(line) + b"\n"
        return line + b"\n"

    def _top_up_flood(self) -> None:
        with self._lock:
            if self._flood is None:
                return
            until, rate = self._flood
            now = time.monotonic()
            if now >= until:
                self._flood = None
                return
            if rate:
                due = int((now - self._flooded_at) * rate)
                self._flooded_at += due / rate
            else:
                due = WRITE_BYTES - len(self._out)
            if due > 0:
                chunk = (FLOOD_BYTES * (due // len(FLOOD_BYTES) + 1))[:due]
                self._out.extend(chunk)
                self.flooded += due

    def _write_bench(self) -> None:
        with self._lock:
            try:
                n = os.write(self._master, self._out[:WRITE_BYTES])
            except BlockingIOError:
                return
            except OSError as e:
                self.errors.append(f"write to bench: {e}")
                return
            del self._out[:n]
            self.to_bench += n
