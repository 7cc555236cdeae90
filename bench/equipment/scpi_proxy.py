"""A fault-injecting SCPI proxy between the bench's PSU driver and a supply on a raw socket (what
a LAN PSU offers on port 5025): the faults of a sick instrument or network, injected on demand
on real TCP, to prove that the bench never leaves a supply on unnoticed and never blames a PSU
fault on the device.

Lines are LF-terminated, one reply line per line holding a query, in order. Modes (`ScpiMode`):
`pass`; `close` (the PSU drops the connection at the next command, which is not forwarded; once);
`refuse` (every connection dropped, every new one reset: the PSU gone for good); `stuck_off` (the
output-off command is swallowed, as a stuck output relay ignores it); `invert_state` (the
output-state query is answered with the opposite state); `slow` (every reply held for `delay_s`).
A mode may start after a number of commands; `lines()` is what went through, and what became of
each line. docs/bench-faults.md lists the self-tests that drive the bench through it.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bench.equipment import tcp
from bench.equipment.listener import CLOSE_JOIN_S, Listener

MAX_LINES = 100_000
MAX_LINE_BYTES = 4096
# A reply waits at most this long for its query's note (the noting thread only has to append a line).
QUERY_NOTE_WAIT_S = 1.0
# Keysight-style spellings (the bench's keysight-e36, generic-scpi, rs-hmp and paygo-sim profiles);
# another dialect passes its own patterns.
OFF_COMMAND = r"(?::?OUTP(?:UT)?(?::STAT(?:E)?)?)\s+(?:OFF|0)(?:\s*,\s*\(@[\d,:\s]+\))?"
STATE_QUERY = r"(?::?OUTP(?:UT)?(?::STAT(?:E)?)?)\?(?:\s*\(@[\d,:\s]+\))?"
_INVERSE = {"1": "0", "0": "1", "ON": "OFF", "OFF": "ON"}


class ScpiMode(StrEnum):
    PASS = "pass"
    CLOSE = "close"
    REFUSE = "refuse"
    STUCK_OFF = "stuck_off"
    INVERT_STATE = "invert_state"
    SLOW = "slow"


@dataclass(frozen=True)
class ProxiedLine:
    """One line through the proxy."""

    at: float  # time.monotonic()
    connection: int  # 1, 2, ... in the order the bench connected
    direction: str  # "command" (bench to PSU) or "reply" (PSU to bench)
    text: str
    action: str  # forwarded | swallowed | closed | inverted | delayed


@dataclass
class _Reply:
    """What to do with the reply to one forwarded query line."""

    invert: bool = False
    delay_s: float = 0.0
    # set once its query is noted: the reply is noted (and passed on) after it, so the lines read
    # in the order they crossed the wire, however the two threads are scheduled
    query_noted: threading.Event = field(default_factory=threading.Event)


class _Connection:
    """The bench's connection and the proxy's own to the PSU, and the replies they owe."""

    def __init__(self, number: int, client: socket.socket, upstream: socket.socket) -> None:
        self.number, self.client, self.upstream = number, client, upstream
        self.pending: deque[_Reply] = deque()
        self.lock = threading.Lock()
        self.running = 2  # its two threads: commands and replies
        self.client_gone = False

    def end(self) -> None:
        """Drop the bench's side at once; end the PSU's side gracefully (FIN after what was
        forwarded, its last replies read and dropped), so the PSU takes every command the proxy
        passed on: only the commands the proxy itself swallows are lost."""
        self.client_gone = True
        for sock, how in ((self.client, socket.SHUT_RDWR), (self.upstream, socket.SHUT_WR)):
            try:
                sock.shutdown(how)
            except OSError:
                pass


class ScpiFaultProxy:
    """A line-based TCP proxy in front of an SCPI instrument, misbehaving on demand."""

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        delay_s: float = 1.0,
        off_command: str = OFF_COMMAND,
        state_query: str = STATE_QUERY,
        io_timeout_s: float = 5.0,
    ) -> None:
        if delay_s < 0 or io_timeout_s <= 0:
            raise ValueError("delay_s must be >= 0 and io_timeout_s > 0")
        self.upstream = upstream
        self.delay_s = delay_s
        self.io_timeout_s = io_timeout_s
        self._off = re.compile(off_command, re.IGNORECASE)
        self._query = re.compile(state_query, re.IGNORECASE)
        self._listen = (listen_host, listen_port)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._mode = ScpiMode.PASS
        self._after = 0  # commands still to pass before the mode applies
        self._lines: list[ProxiedLine] = []
        self._errors: list[str] = []
        self._connections: dict[int, _Connection] = {}
        self._accepted = 0
        self._threads: set[threading.Thread] = set()
        self._stop = threading.Event()
        self._listener = Listener(self._listen, "scpi-proxy", self._accept, self._error, backlog=16)

    # -- life -----------------------------------------------------------------------------------

    def start(self) -> ScpiFaultProxy:
        self._listener.start()
        return self

    def close(self) -> None:
        """Stop accepting, drop every connection, join the threads."""
        self._stop.set()
        self.close_connections()
        deadline = time.monotonic() + CLOSE_JOIN_S
        self._listener.close(deadline)
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            stuck = list(self._connections.values())
        for conn in stuck:  # a PSU that never closed its side: stop waiting for it
            try:
                conn.upstream.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self._changed:
            self._changed.notify_all()

    def __enter__(self) -> ScpiFaultProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def port(self) -> int:
        return self._listener.port

    @property
    def resource(self) -> str:
        """The VISA resource the bench's rig file names to reach the PSU through the proxy."""
        return f"TCPIP0::{self._listen[0]}::{self.port}::SOCKET"

    # -- control --------------------------------------------------------------------------------

    def set_mode(self, mode: ScpiMode | str, *, after: int = 0) -> None:
        """`mode` from the command after the next `after` ones (`close` acts once, then `pass`);
        `refuse` with after=0 drops the open connections at once."""
        mode = ScpiMode(mode)
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise ValueError(f"after must be a whole number >= 0, got {after!r}")
        with self._lock:
            self._mode, self._after = mode, after
        if mode is ScpiMode.REFUSE and after == 0:
            self.close_connections()

    @property
    def mode(self) -> ScpiMode:
        with self._lock:
            return self._mode

    def close_connections(self) -> None:
        """Drop every open connection now, as a PSU rebooting or a switch port flapping does."""
        with self._lock:
            connections = list(self._connections.values())
        for conn in connections:
            conn.end()

    @property
    def connections(self) -> int:
        """How many connections the proxy has accepted (a reconnect makes it grow)."""
        with self._lock:
            return self._accepted

    def lines(self) -> list[ProxiedLine]:
        with self._lock:
            return list(self._lines)

    def wait_for(self, predicate: Callable[[ProxiedLine], bool], timeout_s: float) -> ProxiedLine | None:
        """The first line so far matching `predicate`, waiting up to timeout_s for one."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        with self._changed:
            while True:
                for line in self._lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(self._lines)
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return None
                self._changed.wait(left)

    def error_log(self) -> list[str]:
        with self._lock:
            return list(self._errors)

    # -- internals ------------------------------------------------------------------------------

    def _take_mode(self) -> ScpiMode:
        """The mode for the command being handled now."""
        with self._lock:
            if self._after > 0:
                self._after -= 1
                return ScpiMode.PASS
            mode = self._mode
            if mode is ScpiMode.CLOSE:
                self._mode = ScpiMode.PASS
            return mode

    def _note(self, conn: _Connection, direction: str, text: str, action: str) -> None:
        with self._changed:
            self._lines.append(ProxiedLine(time.monotonic(), conn.number, direction, text, action))
            del self._lines[:-MAX_LINES]
            self._changed.notify_all()

    def _error(self, reason: str) -> None:
        with self._lock:
            self._errors.append(reason)
            del self._errors[:-200]

    def _accept(self, client: socket.socket) -> None:
        with self._lock:
            self._accepted += 1
            number = self._accepted
            refused = self._mode is ScpiMode.REFUSE and self._after == 0
        if refused:
            tcp.reset(client)
            return
        self._open(number, client)

    def _open(self, number: int, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=self.io_timeout_s)
        except OSError as e:
            self._error(f"upstream {self.upstream}: {e!r}")
            tcp.reset(client)
            return
        for sock in (client, upstream):
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(number, client, upstream)
        with self._lock:
            self._connections[number] = conn
        for target, name in ((self._commands, "commands"), (self._replies, "replies")):
            t = threading.Thread(target=self._run, args=(target, conn), name=f"scpi-proxy-{number}-{name}", daemon=True)
            with self._lock:
                self._threads.add(t)
            t.start()

    def _run(self, target: Callable[[_Connection], None], conn: _Connection) -> None:
        try:
            target(conn)
        except OSError:
            pass  # one side went away: the connection ends
        except Exception as e:  # noqa: BLE001 - counted, never silent
            self._error(f"connection {conn.number}: {e!r}")
        finally:
            conn.end()
            with self._lock:
                self._threads.discard(threading.current_thread())
                conn.running -= 1
                last = conn.running == 0
                if last:
                    self._connections.pop(conn.number, None)
            if last:
                conn.client.close()
                conn.upstream.close()

    def _commands(self, conn: _Connection) -> None:
        """Bench to PSU: each command line forwarded, swallowed, or the connection closed on it."""
        for raw in _lines_of(conn.client):
            text = raw.decode("ascii", "replace").strip("\r\n")
            mode = self._take_mode()
            if mode in (ScpiMode.CLOSE, ScpiMode.REFUSE):
                self._note(conn, "command", text, "closed")
                return
            if mode is ScpiMode.STUCK_OFF and self._off.fullmatch(text.strip()):
                self._note(conn, "command", text, "swallowed")
                continue
            reply = None
            if "?" in text:
                reply = _Reply(
                    invert=mode is ScpiMode.INVERT_STATE and bool(self._query.fullmatch(text.strip())),
                    delay_s=self.delay_s if mode is ScpiMode.SLOW else 0.0,
                )
                with conn.lock:
                    conn.pending.append(reply)
            try:
                conn.upstream.sendall(raw)
                self._note(conn, "command", text, "forwarded")  # once on its way: a watcher may act on it
            finally:
                if reply is not None:
                    reply.query_noted.set()

    def _replies(self, conn: _Connection) -> None:
        """PSU to bench: each reply line passed on, inverted or held as its query asked."""
        for raw in _lines_of(conn.upstream):
            with conn.lock:
                reply = conn.pending.popleft() if conn.pending else None
            if reply is None:
                reply = _Reply()  # a line no query asked for
            else:
                reply.query_noted.wait(QUERY_NOTE_WAIT_S)
            text = raw.decode("ascii", "replace").strip("\r\n")
            action = "forwarded"
            if reply.invert and text.strip().upper() in _INVERSE:
                text, action = _INVERSE[text.strip().upper()], "inverted"
                raw = text.encode("ascii") + b"\n"
            if reply.delay_s and self._stop.wait(reply.delay_s):
                return
            if reply.delay_s:
                action = "delayed"
            if conn.client_gone:
                continue  # the PSU's last words, after the bench's side was dropped
            self._note(conn, "reply", text, action)  # noted first: the bench acts on it at once
            try:
                conn.client.sendall(raw)
            except OSError:
                conn.end()


def _lines_of(sock: socket.socket):
    """The LF-terminated lines a socket delivers (each with its LF), until it closes."""
    buf = b""
    while True:
        chunk = sock.recv(MAX_LINE_BYTES)
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line + b"\n"
        if len(buf) > MAX_LINE_BYTES:  # no LF in sight: pass it on as it is
            yield buf
            buf = b""
