"""A line-oriented serial link to the DUT over any pyserial URL, with deadlines.

Works the same on a USB-UART (`/dev/ttyUSB0`, `COM3`), a remote port (`rfc2217://`, ser2net)
or the virtual rig's pty / `socket://`. Unsolicited lines (starting with `!`, or whatever prefixes
the adapter's protocol marks them with: `unsolicited`) are set aside as events so they can never
be taken for a reply.

Some firmware sends a reply without its newline (the OpenPAYGO HDK's `#TOKEN;VALID;<s>`). A
request may then say what such a reply looks like (`unterminated`): a pending partial line of
that shape counts as the complete reply once the line has gone quiet for `quiet_s`, and is
consumed so the device's next output does not get glued onto it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import serial

from bench.dut.errors import LinkSilent, PortOpenError, PortVanished, WaitAborted
from bench.dut.traffic import TrafficLog
from bench.secret import mask

try:  # termios.error is raised by pty ioctls and is not an OSError
    import termios

    _PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, termios.error)
except ImportError:  # Windows
    _PORT_ERRORS = (serial.SerialException, OSError)

_NOISE = b"\x00\xff"  # what a UART reads while the far end powers up or down
# How long a partial line of the expected shape must stay idle to count as a complete reply: a
# UART delivers a line's bytes back to back; USB-UART bridges batch them within ~16 ms.
QUIET_S = 0.1

LineTest = Callable[[str], bool]


class SerialLink:
    def __init__(
        self,
        url: str,
        baud: int = 115200,
        log: TrafficLog | None = None,
        poll_s: float = 0.02,
        unsolicited: tuple[str, ...] = ("!",),
    ) -> None:
        self.url = url
        self.baud = baud
        self.log = log or TrafficLog()
        self.poll_s = poll_s
        self.unsolicited = unsolicited  # line prefixes that mark events/debug output, never replies
        self.events: deque[tuple[float, str]] = deque()  # (monotonic time, line) of unsolicited lines
        self._buf = bytearray()
        self._port: serial.SerialBase | None = None
        self._abort: tuple[Callable[[], str | None], float] | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def open(self) -> SerialLink:
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

    @contextmanager
    def abort_when(self, check: Callable[[], str | None], poll_s: float = 0.002) -> Iterator[None]:
        """While inside, every wait (a reply, an event) calls check() each time it has waited
        poll_s for input; a non-empty string from it ends the wait at once with WaitAborted
        carrying that reason. For waits that the bench knows can end early: a power-cut test
        polls the PSU while it waits for a reply the cut may have swallowed."""
        if self._abort is not None:
            raise RuntimeError("abort_when() does not nest")
        self._abort = (check, poll_s)
        old_timeout = self._port.timeout if self._port is not None else None
        if self._port is not None:
            self._port.timeout = min(self.poll_s, poll_s)
        try:
            yield
        finally:
            self._abort = None
            if self._port is not None and old_timeout is not None:
                try:
                    self._port.timeout = old_timeout
                except _PORT_ERRORS:
                    pass

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

    def _partial(self) -> str | None:
        """The pending line that has no newline yet (noise stripped), without consuming it."""
        raw = bytes(self._buf).strip(_NOISE).rstrip(b"\r").strip(_NOISE)
        return raw.decode("ascii", "backslashreplace") if raw.strip() else None

    def _fill(self, action: str, block: bool) -> int:
        """Read from the port: up to poll_s when blocking, else only what is already waiting.
        Returns the number of bytes read."""
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
        return len(chunk)

    def _read_line(
        self, deadline: float, action: str, unterminated: LineTest | None = None, quiet_s: float = QUIET_S
    ) -> str | None:
        """The next complete, non-empty line, or None once the deadline passes.

        With `unterminated`, a pending partial line for which it is true is returned (and
        consumed) once no byte has arrived for quiet_s; a reply of that shape that starts to
        arrive just before the deadline still gets its quiet time.
        """
        quiet_since = time.monotonic()
        while True:
            line = self._next_buffered()
            if line is not None:
                return line
            now = time.monotonic()
            partial = self._partial() if unterminated is not None else None
            shaped = partial is not None and unterminated is not None and unterminated(partial)
            if shaped and now - quiet_since >= quiet_s:
                self._buf.clear()
                self.log.note(f"next line came without a newline: complete after {quiet_s:.2f} s of quiet")
                return partial
            if now >= (deadline + quiet_s if shaped else deadline):
                return None
            if self._fill(action, block=True):
                quiet_since = time.monotonic()
            elif self._abort is not None and (why := self._abort[0]()):
                self.log.note(f"stopped waiting: {why}")
                raise WaitAborted(self.url, action.removeprefix("waiting for the "), why, list(self.log.recent))

    def _take(self, line: str) -> str | None:
        """Route an incoming line: events are queued (returns None), replies returned."""
        if line.startswith(self.unsolicited):
            self.log.record("EV", line)
            self.events.append((time.monotonic(), line))
            return None
        self.log.record("RX", line)
        return line

    def drain(self, action: str = "draining input", discard_partial: bool = False) -> None:
        """Read whatever is already waiting (late replies, events) so a new request starts clean.

        discard_partial: also drop a pending line that has no newline (a late reply of a
        protocol whose replies may lack one), so it cannot be glued onto the next reply.
        """
        self._fill(action, block=False)
        while (line := self._next_buffered()) is not None:
            if self._take(line) is not None:
                self.log.note("a line arrived after its request timed out; discarded")
        if discard_partial:
            if (partial := self._partial()) is not None:
                self.log.note(f"partial line {self.masked(partial)!r} arrived after its request timed out; discarded")
            self._buf.clear()

    def request(
        self,
        line: str,
        timeout_s: float,
        *,
        unterminated: LineTest | None = None,
        quiet_s: float = QUIET_S,
        until_event: LineTest | None = None,
    ) -> str:
        """Send one request; return its one reply line (events seen meanwhile are queued).

        unterminated: the reply may come without its newline; a partial line for which this is
        true is the reply once the line has been quiet for quiet_s (see the module docstring).
        until_event: an exchange that may end with an event instead of a reply (the HDK's
        #SETUP answers only with debug lines): the first event for which this is true is
        returned (logged, not queued).
        """
        self.drain(f"draining input before sending '{self.masked(line)}'", discard_partial=unterminated is not None)
        self.send(line)
        deadline = time.monotonic() + timeout_s
        action = f"waiting for the reply to '{self.masked(line)}'"
        while True:
            got = self._read_line(deadline, action, unterminated, quiet_s)
            if got is None:
                self.log.note(f"no reply within {timeout_s:.2f} s")
                raise LinkSilent(self.url, f"reply to '{self.masked(line)}'", timeout_s, list(self.log.recent))
            if until_event is not None and got.startswith(self.unsolicited) and until_event(got):
                self.log.record("EV", got)
                return got
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
