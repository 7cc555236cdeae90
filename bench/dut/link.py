"""A line-oriented serial link to the DUT over any pyserial URL, with deadlines.

Works the same on a USB-UART (`/dev/ttyUSB0`, `COM3`), a remote port (`rfc2217://`, ser2net)
or the virtual rig's pty / `socket://`. Unsolicited lines (starting with `!`, or whatever prefixes
the adapter's protocol marks them with: `unsolicited`) are set aside as events so they can never
be taken for a reply.

Some firmware sends a reply without its newline (the OpenPAYGO HDK's `#TOKEN;VALID;<s>`). A
request may then say what such a reply looks like (`unterminated`): a pending partial line of
that shape counts as the complete reply once the line has gone quiet for `quiet_s`, and is
consumed so the device's next output does not get glued onto it.

The link holds at most MAX_LINE bytes of a line: past that, the line's bytes are counted and
dropped up to its newline, so a link that ignores the baud rate (USB CDC-ACM) and floods bytes
without a newline costs neither memory nor CPU, and a silence then says how many came.
A wait for an event that follows a reset (a boot banner) drops the fragment of a line the reset
cut off, so the banner is not glued onto it and missed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import serial
import serial.rfc2217

from bench.dut.errors import LinkSilent, PortOpenError, PortVanished, TestTimeLimit, WaitAborted
from bench.dut.traffic import TrafficLog
from bench.secret import mask, redacted

try:  # termios.error is raised by pty ioctls and is not an OSError
    import termios

    _PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, termios.error)
except ImportError:  # Windows
    _PORT_ERRORS = (serial.SerialException, OSError)

_NOISE = b"\x00\xff"  # what a UART reads while the far end powers up or down
# How long a partial line of the expected shape must stay idle to count as a complete reply: a
# UART delivers a line's bytes back to back; USB-UART bridges batch them within ~16 ms.
QUIET_S = 0.1
# The longest line the link keeps: the reference protocol's longest (8192, METRICS IMPORT and
# EXPORT: docs/protocol.md "Framing") with a margin of 2; a longer one is dropped, with a note.
MAX_LINE = 16384
READ_CHUNK = 65536  # the most one read takes, so a flood is handled in bounded steps
WRITE_TIMEOUT_S = 2.0  # a port that takes no bytes for this long is gone

LineTest = Callable[[str], bool]


class SerialLink:
    def __init__(
        self,
        url: str,
        baud: int = 115200,
        log: TrafficLog | None = None,
        poll_s: float = 0.02,
        unsolicited: tuple[str, ...] = ("!",),
        max_line: int = MAX_LINE,
        exclusive: bool = False,
    ) -> None:
        self.url = url
        # a local port opened for this process alone (pyserial's `exclusive`: a flock on POSIX);
        # URL ports (socket://, rfc2217://) have no such lock
        self.exclusive = exclusive and "://" not in url
        self.baud = baud
        self.log = log or TrafficLog()
        self.poll_s = poll_s
        self.unsolicited = unsolicited  # line prefixes that mark events/debug output, never replies
        self.events: deque[tuple[float, str]] = deque()  # (monotonic time, line) of unsolicited lines
        self.max_line = max_line
        self._buf = bytearray()
        self._dropped = 0  # bytes dropped from the line being received (over max_line)
        self._head = b""  # the first bytes of that line, for the note
        self.too_long = 0  # lines dropped so far for being over max_line
        self._partial_at: float | None = None  # when the pending partial line's first byte was read
        self._port: serial.SerialBase | None = None
        self._abort: tuple[Callable[[], str | None], float] | None = None
        self._expired: str | None = None  # set from another thread: the test's time limit passed

    # -- lifecycle ------------------------------------------------------------------------------
    def open(self) -> SerialLink:
        extra: dict = {"exclusive": True} if self.exclusive else {}
        # pyserial's RFC 2217 client refuses a write timeout (NotImplementedError at open); its
        # writes are bounded by its socket's own timeout (5 s) instead
        if not _is_rfc2217(self.url):
            extra["write_timeout"] = WRITE_TIMEOUT_S
        try:
            self._port = serial.serial_for_url(self.url, baudrate=self.baud, timeout=self.poll_s, **extra)
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
            _set_read_timeout(self._port, min(self.poll_s, poll_s))
        try:
            yield
        finally:
            self._abort = None
            if self._port is not None and old_timeout is not None:
                try:
                    _set_read_timeout(self._port, old_timeout)
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

    def expire(self, why: str | None) -> None:
        """From any thread: from now on every wait raises TestTimeLimit(why) at its next poll
        (None: waits are allowed again). The per-test watchdog's way to end a test in a wait."""
        self._expired = why

    @property
    def unterminated(self) -> int:
        """Bytes received since the last newline (those dropped over max_line included)."""
        nl = self._buf.rfind(b"\n")
        return self._dropped + len(self._buf) - (nl + 1)

    def pending_head(self) -> str:
        """The first bytes received since the last newline, masked (for errors, which shorten it)."""
        head = self._head if self._dropped else bytes(self._buf[self._buf.rfind(b"\n") + 1 :][:32])
        return self.masked(head[:32].decode("ascii", "backslashreplace"))

    def _next_buffered(self) -> str | None:
        """Pop the next complete, non-empty line from what has been read so far."""
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                return None
            raw = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            raw = raw.strip(_NOISE).rstrip(b"\r").strip(_NOISE)
            if len(raw) > self.max_line:  # came whole in one read
                self._note_overlong(raw[:64], len(raw))
            elif raw.strip():
                return raw.decode("ascii", "backslashreplace")

    def _partial(self) -> str | None:
        """The pending line that has no newline yet (noise stripped), without consuming it."""
        if self._dropped:
            return None
        raw = bytes(self._buf).strip(_NOISE).rstrip(b"\r").strip(_NOISE)
        return raw.decode("ascii", "backslashreplace") if raw.strip() else None

    def _store(self, chunk: bytes) -> None:
        """Add bytes read to the buffer, holding at most max_line of the line being received:
        past that its bytes are only counted, up to its newline."""
        if self._dropped:
            nl = chunk.find(b"\n")
            if nl < 0:
                self._dropped += len(chunk)
                return
            self._note_overlong(self._head, self._dropped + nl)
            self._dropped, chunk = 0, chunk[nl + 1 :]
        if b"\n" in chunk or self._partial_at is None:
            self._partial_at = None if not chunk or chunk.endswith(b"\n") else time.monotonic()
        self._buf.extend(chunk)
        start = self._buf.rfind(b"\n") + 1
        if len(self._buf) - start > self.max_line:
            self._head = bytes(self._buf[start : start + 64])
            self._dropped = len(self._buf) - start
            del self._buf[start:]

    def _note_overlong(self, head: bytes, size: int) -> None:
        """A line over max_line ended: logged (and kept for error messages) as its head and size."""
        self.too_long += 1
        text = self.masked(head[:32].decode("ascii", "backslashreplace"))
        self.log.record("RX", f"[a line of {size} bytes, over the link's limit of {self.max_line}: dropped] {text}...")

    def _fill(self, action: str, block: bool) -> int:
        """Read from the port: up to poll_s when blocking, else only what is already waiting.
        Returns the number of bytes read."""
        if self._port is None:
            raise PortVanished(self.url, action, "the port is closed", list(self.log.recent))
        try:
            waiting = min(self._port.in_waiting, READ_CHUNK)
            if block:
                chunk = self._port.read(max(1, waiting))
            else:
                chunk = self._port.read(waiting) if waiting else b""
        except _PORT_ERRORS as e:
            self.close()
            raise PortVanished(self.url, action, e, list(self.log.recent)) from None
        if chunk:
            self._store(chunk)
        return len(chunk)

    def _check_expired(self, action: str) -> None:
        if self._expired is not None:
            self.log.note(f"stopped waiting: {self._expired}")
            raise TestTimeLimit(f"{self._expired}; the link was {action}")

    def _check_abort(self, action: str) -> None:
        """The time limit first, then abort_when()'s check (see there)."""
        self._check_expired(action)
        if self._abort is not None and (why := self._abort[0]()):
            self.log.note(f"stopped waiting: {why}")
            raise WaitAborted(self.url, action.removeprefix("waiting for the "), why, list(self.log.recent))

    def _read_line(
        self, deadline: float, action: str, unterminated: LineTest | None = None, quiet_s: float = QUIET_S
    ) -> str | None:
        """The next complete, non-empty line, or None once the deadline passes.

        With `unterminated`, a pending partial line for which it is true is returned (and
        consumed) once no byte has arrived for quiet_s; a reply of that shape that starts to
        arrive just before the deadline still gets its quiet time. The abort check runs whenever
        the port was idle for a poll, and at least every poll_s while bytes flood in.
        """
        self._check_expired(action)
        quiet_since = checked = time.monotonic()
        while True:
            line = self._next_buffered()
            if line is not None:
                return line
            now = time.monotonic()
            partial = self._partial() if unterminated is not None else None
            shaped = partial is not None and unterminated is not None and unterminated(partial)
            if shaped and now - quiet_since >= quiet_s:
                self._clear()
                self.log.note(f"next line came without a newline: complete after {quiet_s:.2f} s of quiet")
                return partial
            if now >= (deadline + quiet_s if shaped else deadline):
                return None
            filled = self._fill(action, block=True)
            if filled:
                quiet_since = time.monotonic()
            if not filled or now - checked >= self.poll_s:
                self._check_abort(action)
                checked = now

    def drop_stale_partial(self, since: float) -> None:
        """Drop a pending line fragment whose first byte was read before `since` (a reply the
        reset cut off): the next line, a boot banner, would be glued onto it and missed."""
        if self._partial_at is None or self._partial_at >= since:
            return
        start = self._buf.rfind(b"\n") + 1
        size = self.unterminated
        fragment = (self._head if self._dropped else bytes(self._buf[start:])).decode("ascii", "backslashreplace")
        del self._buf[start:]
        self._dropped, self._partial_at = 0, None
        self.log.note(f"dropped the start of a line the reset cut off ({size} bytes): '{self.shown(fragment)}'")

    def _clear(self) -> None:
        self._buf.clear()
        self._dropped, self._partial_at = 0, None

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
        protocol whose replies may lack one), so it cannot be glued onto the next reply. One
        already over max_line is dropped in any case: it can only be noise.
        """
        self._fill(action, block=False)
        while (line := self._next_buffered()) is not None:
            if self._take(line) is not None:
                self.log.note("a line arrived after its request timed out; discarded")
        if self._dropped:
            self.log.note(f"{self.unterminated} bytes without a newline before this request: dropped")
            self._clear()
        elif discard_partial:
            if (partial := self._partial()) is not None:
                self.log.note(f"partial line '{self.shown(partial)}' arrived after its request timed out; discarded")
            self._clear()

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
        shown = self.shown(line)
        self.drain(f"draining input before sending '{shown}'", discard_partial=unterminated is not None)
        self.send(line)
        deadline, too_long = time.monotonic() + timeout_s, self.too_long
        while True:
            got = self._read_line(deadline, f"waiting for the reply to '{shown}'", unterminated, quiet_s)
            if got is None:
                self.log.note(f"no reply within {timeout_s:.2f} s")
                raise LinkSilent(
                    self.url,
                    f"reply to '{shown}'",
                    timeout_s,
                    list(self.log.recent),
                    self.unterminated,
                    self.pending_head(),
                    self.too_long - too_long,
                )
            if until_event is not None and got.startswith(self.unsolicited) and until_event(got):
                self.log.record("EV", got)
                return got
            reply = self._take(got)
            if reply is not None:
                return reply

    def wait_event(
        self, prefix: str | tuple[str, ...], timeout_s: float, since: float | None = None, after_reset: bool = False
    ) -> str:
        """Wait for an unsolicited line starting with prefix (e.g. '! BOOT'), consuming it.

        Events queued before `since` (a monotonic time) are discarded as stale.
        after_reset: the event follows a reset made at `since` (a boot banner). The start of a
        line read before then is dropped (the reset cut it off), and so is text before the
        prefix in a line (a cut-off fragment read only now, the banner glued onto it).
        """
        deadline = time.monotonic() + timeout_s
        if after_reset and since is not None:
            self.drop_stale_partial(since)
        while True:
            while self.events:
                t, ev = self.events.popleft()
                if ev.startswith(prefix) and (since is None or t >= since):
                    return ev
            got = self._read_line(deadline, f"waiting for '{prefix}'")
            if got is None:
                raise LinkSilent(
                    self.url,
                    f"'{prefix}' line",
                    timeout_s,
                    list(self.log.recent),
                    self.unterminated,
                    self.pending_head(),
                )
            if after_reset and (cut := _glued_at(got, prefix)) > 0:
                self.log.note(f"dropped the start of a line the reset cut off: '{self.shown(got[:cut])}'")
                got = got[cut:]
            if self._take(got) is not None:
                self.log.note("a reply-like line arrived with no request pending; ignored")

    def masked(self, line: str) -> str:
        return mask(line, self.log.secrets)

    def shown(self, line: str) -> str:
        """A line from the device as an error message or note may show it: masked, printable, short."""
        return redacted(line, self.log.secrets)


def _is_rfc2217(url: str) -> bool:
    return url.lower().startswith("rfc2217://")


def _set_read_timeout(port: serial.SerialBase, seconds: float) -> None:
    """Set how long a read waits. pyserial's RFC 2217 client renegotiates the remote port's
    whole setup (baud, data bits, parity, stop bits, flow control: round trips of 50 ms and more)
    whenever its timeout is set, though that timeout only bounds the read of its own local
    buffer: there only the local value is set."""
    if isinstance(port, serial.rfc2217.Serial):
        port._timeout = seconds
    else:
        port.timeout = seconds


def _glued_at(line: str, prefix: str | tuple[str, ...]) -> int:
    """Where the prefix starts inside the line, after other text (-1: nowhere, 0: at the start)."""
    found = [i for p in ((prefix,) if isinstance(prefix, str) else prefix) if (i := line.find(p)) >= 0]
    return min(found, default=-1)
