"""A line-oriented serial link to the DUT over any pyserial URL, with deadlines.

Works the same on a USB-UART (`/dev/ttyUSB0`, `COM3`), a remote port (`rfc2217://`, ser2net)
or the virtual rig's pty / `socket://`. Unsolicited lines (starting with `!`) are set aside as
events so they can never be taken for a reply.
"""

from __future__ import annotations

import time
from collections import deque

import serial

from bench.dut.errors import LinkSilent, PortOpenError, PortVanished
from bench.dut.traffic import TrafficLog
from bench.secret import mask

try:  # termios.error is raised by pty ioctls and is not an OSError
    import termios

    _PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, termios.error)
except ImportError:  # Windows
    _PORT_ERRORS = (serial.SerialException, OSError)

_NOISE = b"\x00\xff"  # what a UART reads while the far end powers up or down


class SerialLink:
    def __init__(self, url: str, baud: int = 115200, log: TrafficLog | None = None, poll_s: float = 0.02) -> None:
        self.url = url
        self.baud = baud
        self.log = log or TrafficLog()
        self.poll_s = poll_s
        self.events: deque[tuple[float, str]] = deque()  # (monotonic time, line) of unsolicited lines
        self._buf = bytearray()
        self._port: serial.SerialBase | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def open(self) -> "SerialLink":
        try:
            self._port = serial.serial_for_url(self.url, baudrate=self.baud, timeout=self.poll_s, write_timeout=2)
        except _PORT_ERRORS as e:
            raise PortOpenError(self.url, e) from None
        self.log.note(f"opened {self.url} at {self.baud} baud")
        return self

    def close(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            except _PORT_ERRORS:
                pass
            self._port = None

    @property
    def is_open(self) -> bool:
        return self._port is not None

    # -- lines ------------------------------------------------------------------------------------
    def send(self, line: str) -> None:
        if self._port is None:
            raise PortVanished(self.url, f"sending '{self.masked(line)}'", "the port is closed", list(self.log.recent))
        self.log.record("TX", line)
        try:
            self._port.write(line.encode("ascii") + b"\n")
            self._port.flush()
        except _PORT_ERRORS as e:
            self.close()
            raise PortVanished(self.url, f"sending '{self.masked(line)}'", e, list(self.log.recent)) from None

    def _next_buffered(self) -> str | None:
        """Pop the next complete, non-empty line from what has been read so far."""
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                return None
            raw = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            raw = raw.strip(_NOISE).rstrip(b"\r").strip(_NOISE)
            if raw.strip():
                return raw.decode("ascii", "backslashreplace")

    def _fill(self, action: str, block: bool) -> None:
        """Read from the port: up to poll_s when blocking, else only what is already waiting."""
        if self._port is None:
            raise PortVanished(self.url, action, "the port is closed", list(self.log.recent))
        try:
            waiting = self._port.in_waiting
            if block:
                chunk = self._port.read(max(1, waiting))
            else:
                chunk = self._port.read(waiting) if waiting else b""
        except _PORT_ERRORS as e:
            self.close()
            raise PortVanished(self.url, action, e, list(self.log.recent)) from None
        self._buf.extend(chunk)

    def _read_line(self, deadline: float, action: str) -> str | None:
        """The next complete, non-empty line, or None once the deadline passes."""
        while True:
            line = self._next_buffered()
            if line is not None:
                return line
            if time.monotonic() >= deadline:
                return None
            self._fill(action, block=True)

    def _take(self, line: str) -> str | None:
        """Route an incoming line: events are queued (returns None), replies returned."""
        if line.startswith("!"):
            self.log.record("EV", line)
            self.events.append((time.monotonic(), line))
            return None
        self.log.record("RX", line)
        return line

    def drain(self, action: str = "draining input") -> None:
        """Read whatever is already waiting (late replies, events) so a new request starts clean."""
        self._fill(action, block=False)
        while (line := self._next_buffered()) is not None:
            if self._take(line) is not None:
                self.log.note("a line arrived after its request timed out; discarded")

    def request(self, line: str, timeout_s: float) -> str:
        """Send one request; return its one reply line (events seen meanwhile are queued)."""
        self.drain(f"draining input before sending '{self.masked(line)}'")
        self.send(line)
        deadline = time.monotonic() + timeout_s
        action = f"waiting for the reply to '{self.masked(line)}'"
        while True:
            got = self._read_line(deadline, action)
            if got is None:
                self.log.note(f"no reply within {timeout_s:.2f} s")
                raise LinkSilent(self.url, f"reply to '{self.masked(line)}'", timeout_s, list(self.log.recent))
            reply = self._take(got)
            if reply is not None:
                return reply

    def wait_event(self, prefix: str, timeout_s: float, since: float | None = None) -> str:
        """Wait for an unsolicited line starting with prefix (e.g. '! BOOT'), consuming it.

        Events queued before `since` (a monotonic time) are discarded as stale.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            while self.events:
                t, ev = self.events.popleft()
                if ev.startswith(prefix) and (since is None or t >= since):
                    return ev
            got = self._read_line(deadline, f"waiting for '{prefix}'")
            if got is None:
                raise LinkSilent(self.url, f"'{prefix}' line", timeout_s, list(self.log.recent))
            if self._take(got) is not None:
                self.log.note("a reply-like line arrived with no request pending; ignored")

    def masked(self, line: str) -> str:
        return mask(line, self.log.secrets)
