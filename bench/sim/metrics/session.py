"""The simulated device's OpenPAYGO Metrics sessions: sampling, the row buffer, the asynchronous
request/reply flow, and the HTTP transport (direct mode) or the UART bridge (bridge mode).

It lives in the firmware's RAM (one instance per power-on, owned by `Firmware`) and runs on the
board's thread: the board calls `tick()` on every pass of its main loop, and the UART commands
`METRICS EXPORT / IMPORT / REPORT / STATUS` call in from the same thread, so the firmware state and
its NVM have one writer. Only the HTTP exchange runs on a thread of its own: it touches nothing but
its arguments and hands its result back through a queue that `tick()` drains.

Timing is the MCU's tick (`clock`, monotonic seconds): a sample every `sample_s`, a session every
`period_s`. Times written into the payload are the RTC's (`ts`, row timestamps). An RTC set forward
(a test skipping two days) therefore costs one gap in the rows, not two days of back-filled
samples.

The asynchronous flow (Metrics spec v1.0 "asynchronous flow", openpaygo.md §6):
- a session snapshots the oldest buffered rows (at most `request_rows`, and no more than fit in
  `max_body_bytes`) into a new request; rows sampled meanwhile stay in the buffer behind them
  (the "secondary buffer");
- the request counter `rc` is incremented and written to NVM before the request leaves (on
  request, not on response), so it is never repeated, across power cycles too;
- `ts` is the RTC second the request is made in, strictly above the last one sent: a session due
  in the same RTC second waits for the next (the server takes an equal `ts` for a replay); at
  boot the current second counts as used (a request may have left in it before the reset);
- the rows are cleared only when a valid reply to that request arrives. On any failure
  (connection refused, no reply within `reply_timeout_s`, HTTP status other than 200/201, a reply
  that does not decode, is not this device's or does not authenticate) they stay, and the next
  session sends them again in a NEW request (new rc and ts), each row once, in order;
- the buffer holds `buffer_rows` rows. When it is full the oldest row NOT in flight is dropped
  (the rows in flight are the modem's until it answers); drops are counted (`rows_dropped` in
  every request's data, `METRICS STATUS`);
- delivery is at least once: a server that stored a request whose reply never reached the device
  (it came too late, or the connection dropped after the server committed) gets those rows again.
  They carry the same absolute timestamps, so they are recognisable.
- rows and the in-flight request are RAM: a power cut loses them (the RTC, rc, url, df and auth
  are in NVM).

What the device does with a valid reply:
- `tkl`: entered through the firmware's token entry, in increasing token count (the order the
  spec asks the server for; the device sorts them anyway by a dry-run decode), each counted as if
  typed (an invalid one counts toward the keypad lockout, as on the HDK);
- `auts` / `asl`: recorded with the RTC time they came (`METRICS STATUS`). They do not change
  the credit: only tokens do. A device would show them (or compare them with its own
  active-until to flag a server and device that disagree); this one reports them;
- `st.base_url`: followed (an authenticated reply only: the parser refuses an unsigned `st`)
  and written to NVM like `PROV url=`; `st.data_format_id` likewise replaces df. Other settings
  are ignored.

Events (unsolicited, `! EVT <name> key=value ...`, docs/protocol.md "Metrics sessions"):
`metrics_sent` (direct: a POST started), `metrics_pending` (bridge: a request awaits
`METRICS EXPORT`), `metrics_done`, `metrics_failed`, `metrics_skipped`, `metrics_settings`.

Defects (`faults`, bench/sim/faults.py; the firmware passes its own) that live in this module:
- metrics_data_dropped_before_reply: the rows leave the buffer when the request is made, not
  when its reply comes, so a failed session loses them;
- metrics_rows_duplicated_on_retry: a failed request's rows are copied into a retry slot that
  the next session sends (its reply clears the slot only), but they were never taken out of the
  buffer either: they go again in the request after the retry;
- metrics_auts_ignored: the device asks for `auts` (autsr) but drops the answer: it never
  holds the time the server sold (`METRICS STATUS` shows none);
- metrics_base_url_not_followed: a reply's `st.base_url` is checked and then dropped (the
  data format id is still followed): after a server migration the device reports to the old
  server for ever.
Those of the payload itself (wrong short key, unsigned, mis-signed) are build_request's.
"""

from __future__ import annotations

import http.client
import queue
import ssl
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any, Callable, Mapping, Protocol

from bench.sim.metrics import sensors
from bench.sim.faults import Fault
from bench.sim.metrics.payload import Request, ReplyRefused, build_request, decode_reply, parse_reply

MODES = ("off", "direct", "bridge")
ENCODINGS = ("json", "cbor")
MAX_REPLY_BYTES = 65536
MAX_URL = 200
HTTP_OK = (200, 201)
USER_AGENT = "PAYGO-SIM-metrics/1"


@dataclass(frozen=True)
class MetricsSettings:
    """How the device reports. The build's values come from FirmwareConfig; `METRICS CONFIG`
    changes mode, period, sample and encoding until the next boot."""

    mode: str = "off"  # off | direct (HTTP POST itself) | bridge (over the UART, relayed by the bench)
    period_s: float = 3600.0  # one session every period (MCU tick seconds)
    sample_s: int = 60  # one historical row every sample_s
    encoding: str = "json"  # json | cbor
    buffer_rows: int = 256  # rows held in RAM, in flight included
    request_rows: int = 64  # at most this many rows per request
    reply_timeout_s: float = 10.0  # direct: the device gives up on a reply after this long
    max_body_bytes: int = 6000  # a request body stays under this (its base64 fits a 8192-byte line)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"metrics mode {self.mode!r}; one of {', '.join(MODES)}")
        if not (isinstance(self.period_s, (int, float)) and 0.05 <= self.period_s <= 7 * 86400):
            raise ValueError("metrics period must be 0.05 .. 604800 seconds")
        if not isinstance(self.sample_s, int) or isinstance(self.sample_s, bool) or not 1 <= self.sample_s <= 86400:
            raise ValueError("metrics sample interval must be a whole number of seconds, 1 .. 86400")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"metrics encoding {self.encoding!r}; one of {', '.join(ENCODINGS)}")
        if not 2 <= self.buffer_rows <= 100_000:
            raise ValueError("metrics buffer must hold 2 .. 100000 rows")
        if not 1 <= self.request_rows < self.buffer_rows:
            raise ValueError("metrics rows per request must be 1 .. buffer_rows - 1")
        if not 0.05 <= self.reply_timeout_s <= 600:
            raise ValueError("metrics reply timeout must be 0.05 .. 600 seconds")
        if not 512 <= self.max_body_bytes <= 6000:
            raise ValueError("metrics request body limit must be 512 .. 6000 bytes")


class DevicePort(Protocol):
    """What the session needs from the firmware it runs in."""

    @property
    def serial(self) -> str: ...
    @property
    def key_hex(self) -> str: ...
    @property
    def auth(self) -> str: ...
    @property
    def data_format_id(self) -> int: ...
    @property
    def base_url(self) -> str: ...

    def rtc_now(self) -> float: ...
    def next_request_count(self) -> int: ...  # rc + 1, written to NVM before it is returned
    def current_data(self) -> dict[str, Any]: ...  # token_count, firmware_version, ... by name
    def load_on(self) -> bool: ...  # the PAYG output is on (credit left)
    def enter_tokens(self, codes: list[str]) -> int: ...  # in increasing count; returns how many were accepted
    def follow(self, base_url: str | None, data_format_id: int | None) -> None: ...  # written to NVM


def valid_base_url(url: Any) -> bool:
    """A URL the device can use and keep: http(s)://host[:port][/path], ASCII, no spaces or '='
    (the same text PROV url= could have given it), at most 200 characters."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL or not url.isascii():
        return False
    if any(c.isspace() or c == "=" for c in url):
        return False
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.query and not parts.fragment


# -- the row buffer ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    id: int  # increasing: the order rows were sampled in
    t: int  # RTC seconds
    values: Mapping[str, Any]  # variable -> value, `timestamp` included


class RowBuffer:
    """Rows oldest first. The first `in_flight` rows belong to the request awaiting a reply."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.rows: deque[Row] = deque()
        self.next_id = 1
        self.dropped = 0
        self.protected_id = 0  # rows with id <= this are in flight

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, t: int, values: Mapping[str, Any]) -> Row | None:
        """Append a row; when full, drop the oldest row not in flight (or this one if every
        buffered row is in flight). None if the new row itself was dropped."""
        if len(self.rows) >= self.capacity:
            self.dropped += 1
            victim = next((i for i, r in enumerate(self.rows) if r.id > self.protected_id), None)
            if victim is None:
                return None
            del self.rows[victim]
        row = Row(self.next_id, t, dict(values))
        self.next_id += 1
        self.rows.append(row)
        return row

    def oldest(self, n: int) -> list[Row]:
        return list(islice(self.rows, n))

    def ack(self, last_id: int) -> int:
        """A reply came: forget the rows up to last_id. Returns how many were cleared."""
        cleared = 0
        while self.rows and self.rows[0].id <= last_id:
            self.rows.popleft()
            cleared += 1
        return cleared

    @property
    def last_time(self) -> int | None:
        return self.rows[-1].t if self.rows else None


# -- the transport ----------------------------------------------------------------------------

@dataclass(frozen=True)
class HttpResult:
    seq: int
    status: int | None = None
    content_type: str | None = None
    body: bytes = b""
    error: str | None = None  # refused | timeout | dropped | tls | network


def post(url: str, body: bytes, content_type: str, timeout_s: float) -> HttpResult:
    """POST body to <url>/dd; the answer, or what went wrong as one word."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/") + "/dd"
    try:
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=timeout_s, context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
        try:
            conn.request("POST", path, body=body, headers={
                "Content-Type": content_type, "Connection": "close", "User-Agent": USER_AGENT})
            resp = conn.getresponse()
            data = resp.read(MAX_REPLY_BYTES)
            return HttpResult(0, resp.status, resp.getheader("Content-Type"), data)
        finally:
            conn.close()
    except ConnectionRefusedError:
        return HttpResult(0, error="refused")
    except TimeoutError:  # socket.timeout is TimeoutError
        return HttpResult(0, error="timeout")
    except (http.client.RemoteDisconnected, http.client.IncompleteRead, http.client.BadStatusLine,
            ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
        return HttpResult(0, error="dropped")
    except ssl.SSLError:
        return HttpResult(0, error="tls")
    except (OSError, http.client.HTTPException, ValueError):
        return HttpResult(0, error="network")


# -- the session ------------------------------------------------------------------------------

@dataclass
class InFlight:
    seq: int
    request: Request
    last_row_id: int  # the newest row it carries (0: none)
    via: str  # http | bridge
    started: float  # clock()
    deadline: float | None = None  # http: the device gives up then
    exported: bool = False  # bridge: handed over by METRICS EXPORT
    retry: bool = False  # metrics_rows_duplicated_on_retry: it carries the retry slot's rows


class NothingPending(Exception):
    """METRICS IMPORT with no exported request awaiting its reply."""


@dataclass(frozen=True)
class Outcome:
    """What a valid reply did."""

    rc: int | None
    rows: int
    tokens_accepted: int
    tokens_received: int


@dataclass
class Counters:
    requests: int = 0  # requests made (rc values used)
    answered: int = 0  # valid replies
    failed: int = 0
    rows_sent: int = 0  # rows cleared by a valid reply
    last: str = "-"  # ok | the last failure reason
    last_rc: int = 0
    auts: int | None = None  # the last auts / asl received, and the RTC second they came
    asl: int | None = None
    reply_at: int | None = None
    tokens: int = 0  # tokens from replies that were accepted


class MetricsSession:
    def __init__(self, port: DevicePort, settings: MetricsSettings, data_format: Mapping[str, Any],
                 clock: Callable[[], float] = time.monotonic,
                 sampler: Callable[[float, bool], sensors.Reading] = sensors.sample,
                 *, faults: frozenset[Fault] = frozenset()) -> None:
        self.port = port
        self.faults = frozenset(faults)
        self.settings = settings
        self.format = dict(data_format)
        self.clock = clock
        self.sampler = sampler
        self.buffer = RowBuffer(settings.buffer_rows)
        self.inflight: InFlight | None = None
        self.counters = Counters()
        self._seq = 0
        self._results: queue.SimpleQueue[HttpResult] = queue.SimpleQueue()
        self._outbox: list[str] = []
        self._running = False
        self._forced = False
        self._next_sample = 0.0
        self._next_session = 0.0
        self._last_sample_t: int | None = None
        self.last_ts = int(port.rtc_now())  # this second may already have carried a request
        self._retry_rows: list[Row] | None = None  # metrics_rows_duplicated_on_retry's slot

    # -- configuration --------------------------------------------------------------------------
    def configure(self, settings: MetricsSettings) -> None:
        old, self.settings = self.settings, settings
        if not self._running:
            return
        now = self.clock()
        if settings.sample_s != old.sample_s:
            self._next_sample = now + settings.sample_s
        if settings.period_s != old.period_s:
            self._next_session = min(self._next_session, now + settings.period_s)

    def report_now(self) -> None:
        """METRICS REPORT: start a session as soon as it may (the next RTC second at the latest)."""
        self._forced = True

    # -- the main loop --------------------------------------------------------------------------
    def tick(self) -> list[str]:
        """One pass: sample, collect an HTTP answer, start a due session. The event lines to send."""
        if self.settings.mode == "off":
            self._running = False
            return self._drain_outbox()
        now = self.clock()
        if not self._running:
            self._running = True
            self._next_sample = now + self.settings.sample_s
            self._next_session = now + self.settings.period_s
        self._sample(now)
        self._collect(now)
        if self._forced or now >= self._next_session:
            self._session(now)
        return self._drain_outbox()

    def _drain_outbox(self) -> list[str]:
        out, self._outbox = self._outbox, []
        return out

    def _event(self, name: str, **fields: Any) -> None:
        self._outbox.append(" ".join([f"! EVT {name}"] + [f"{k}={v}" for k, v in fields.items()]))

    def _sample(self, now: float) -> None:
        if now < self._next_sample:
            return
        step = self.settings.sample_s
        late = now - self._next_sample
        self._next_sample += (int(late // step) + 1) * step  # a missed tick is not made up
        t = int(self.port.rtc_now() - late)  # the RTC second of the tick itself
        if t == self._last_sample_t:
            return  # one row per RTC second
        self._last_sample_t = t
        row = self.sampler(t, self.port.load_on()).as_dict()
        row["timestamp"] = t
        self.buffer.add(t, row)

    def _collect(self, now: float) -> None:
        while True:
            try:
                res = self._results.get_nowait()
            except queue.Empty:
                break
            inf = self.inflight
            if inf is None or inf.via != "http" or res.seq != inf.seq:
                continue  # the answer to a request already given up on
            if res.error is not None:
                self._fail(res.error)
            elif res.status not in HTTP_OK:
                self._fail(f"http_{res.status}")
            else:
                try:
                    self._accept(res.body, res.content_type, str(res.status))
                except ReplyRefused as e:
                    self._fail(f"reply_{e.reason}")
        inf = self.inflight
        if inf is not None and inf.deadline is not None and now >= inf.deadline:
            self._fail("timeout")

    def _session(self, now: float) -> None:
        s = self.settings
        inf = self.inflight
        if inf is not None:
            if inf.via == "http":
                return  # still waiting for the answer (its deadline ends the wait)
            if not inf.exported and s.mode == "bridge":
                self._forced = False
                self._next_session = now + s.period_s
                self._event("metrics_pending", rc=inf.request.rc, rows=inf.request.rows, bytes=len(inf.request.body))
                return  # nobody has taken it yet: the same request stays pending
            self._fail("no_reply" if inf.exported else "superseded")
        if s.mode == "direct" and not valid_base_url(self.port.base_url):
            self._forced = False
            self._next_session = now + s.period_s
            self._event("metrics_skipped", reason="no_url", rows=len(self.buffer))
            return
        if int(self.port.rtc_now()) <= self.last_ts:
            return  # ts must go up: wait for the next RTC second
        self._forced = False
        self._next_session = now + s.period_s
        via = "http" if s.mode == "direct" else "bridge"
        inf = self._new_request(now, via, int(self.port.rtc_now()))
        fields = {"rc": inf.request.rc, "rows": inf.request.rows, "bytes": len(inf.request.body)}
        if via == "http":
            inf.deadline = now + s.reply_timeout_s + 1.0  # the socket timeout fires first; this is a backstop
            self._event("metrics_sent", **fields)
            threading.Thread(target=self._http, args=(inf.seq, self.port.base_url, inf.request, s.reply_timeout_s),
                             name="sim-metrics-http", daemon=True).start()
        else:
            self._event("metrics_pending", **fields)

    def _http(self, seq: int, url: str, request: Request, timeout_s: float) -> None:
        """The modem: runs on its own thread and touches nothing but the result queue."""
        self._results.put(replace(post(url, request.body, request.content_type, timeout_s), seq=seq))

    def _new_request(self, now: float, via: str, ts: int) -> InFlight:
        s = self.settings
        rows = self.buffer.oldest(s.request_rows)
        retry = self._retry_rows is not None
        if retry:
            rows = self._retry_rows[: s.request_rows]
        data = {**self.port.current_data(), "rows_dropped": self.buffer.dropped,
                "active_until_timestamp_requested": True}
        rc = self.port.next_request_count()  # in NVM before anything leaves
        while True:
            request = build_request(
                serial=self.port.serial, key_hex=self.port.key_hex, auth=self.port.auth, ts=ts, rc=rc,
                data=data, rows=[r.values for r in rows], data_format=self.format,
                df=self.port.data_format_id, encoding=s.encoding, faults=self.faults)
            if len(request.body) <= s.max_body_bytes or not rows:
                break
            rows = rows[: max(0, min(len(rows) - 1, len(rows) * s.max_body_bytes // len(request.body) - 1))]
        self.last_ts = ts
        self._seq += 1
        self.counters.requests += 1
        self.counters.last_rc = rc
        if retry:
            self.buffer.protected_id = 0  # the slot's rows: the buffer is not told about them
            self.inflight = InFlight(self._seq, request, 0, via, now, retry=True)
            return self.inflight
        self.buffer.protected_id = rows[-1].id if rows else 0
        self.inflight = InFlight(self._seq, request, self.buffer.protected_id, via, now)
        if Fault.METRICS_DATA_DROPPED_BEFORE_REPLY in self.faults:
            self.buffer.ack(self.buffer.protected_id)  # cleared on sending, not on the reply
        return self.inflight

    def _fail(self, reason: str) -> None:
        inf = self.inflight
        if (inf is not None and not inf.retry and inf.last_row_id
                and Fault.METRICS_ROWS_DUPLICATED_ON_RETRY in self.faults):
            self._retry_rows = [r for r in self.buffer.rows if r.id <= inf.last_row_id]  # and left there
        self.inflight = None
        self.buffer.protected_id = 0
        self.counters.failed += 1
        self.counters.last = reason
        self._event("metrics_failed", rc=inf.request.rc if inf else 0, reason=reason, kept=len(self.buffer))

    def _accept(self, body: bytes, content_type: str | None, how: str) -> Outcome:
        """A reply to the request in flight: checked, then acted upon. ReplyRefused leaves the
        request in flight (the caller decides whether that ends it)."""
        inf = self.inflight
        assert inf is not None
        reply = parse_reply(decode_reply(body, content_type), serial=self.port.serial, key_hex=self.port.key_hex,
                            ts=inf.request.ts, rc=inf.request.rc)
        cleared = self.buffer.ack(inf.last_row_id)
        if inf.retry:
            cleared = inf.request.rows
            self._retry_rows = (self._retry_rows or [])[cleared:] or None
        elif Fault.METRICS_DATA_DROPPED_BEFORE_REPLY in self.faults:
            cleared = inf.request.rows  # already gone from the buffer when it was sent
        self.inflight = None
        self.buffer.protected_id = 0
        c = self.counters
        c.answered += 1
        c.rows_sent += cleared
        c.last = "ok"
        if ((reply.active_until_timestamp is not None or reply.active_seconds_left is not None)
                and Fault.METRICS_AUTS_IGNORED not in self.faults):
            c.auts, c.asl = reply.active_until_timestamp, reply.active_seconds_left
            c.reply_at = int(self.port.rtc_now())
        accepted = self.port.enter_tokens(list(reply.tokens)) if reply.tokens else 0
        c.tokens += accepted
        if reply.settings:
            self._follow(reply.settings)
        self._event("metrics_done", rc=inf.request.rc, via=how, rows=cleared,
                    tokens=f"{accepted}/{len(reply.tokens)}")
        return Outcome(inf.request.rc, cleared, accepted, len(reply.tokens))

    def _follow(self, settings: Mapping[str, Any]) -> None:
        url = settings.get("base_url")
        df = settings.get("data_format_id")
        new_url = url if valid_base_url(url) and url != self.port.base_url else None
        if Fault.METRICS_BASE_URL_NOT_FOLLOWED in self.faults:
            new_url = None  # parsed, signature checked, then dropped
        new_df = df if (isinstance(df, int) and not isinstance(df, bool) and 0 < df < 2**31
                        and df != self.port.data_format_id) else None
        if new_url is None and new_df is None:
            return
        self.port.follow(new_url, new_df)
        fields = {}
        if new_url is not None:
            fields["base_url"] = new_url
        if new_df is not None:
            fields["df"] = new_df
        self._event("metrics_settings", **fields)

    # -- the UART bridge ------------------------------------------------------------------------
    def export(self) -> tuple[InFlight, float]:
        """METRICS EXPORT: the pending request if one was announced and not yet taken, else a new
        request now (superseding one still unanswered: its rows go in the new one). Returns it
        and how long the firmware must wait before handing it over (a new request in the RTC
        second of the last one carries the next second and leaves when the RTC reaches it)."""
        inf = self.inflight
        if inf is not None and inf.via == "bridge" and not inf.exported:
            inf.exported = True
            return inf, 0.0
        if inf is not None:
            self._fail("superseded")
        now = self.clock()
        rtc = self.port.rtc_now()
        ts = max(int(rtc), self.last_ts + 1)
        inf = self._new_request(now, "bridge", ts)
        inf.exported = True
        return inf, max(0.0, ts - rtc)

    def import_reply(self, body: bytes, content_type: str | None) -> Outcome:
        """METRICS IMPORT: the reply the bench relayed. NothingPending if no exported request
        awaits one; ReplyRefused (the request stays in flight) if the reply is not acceptable."""
        inf = self.inflight
        if inf is None or not inf.exported:
            raise NothingPending()
        return self._accept(body, content_type, "import")

    def status(self) -> dict[str, Any]:
        c = self.counters
        inf = self.inflight
        return {
            "mode": self.settings.mode,
            "rc": c.last_rc,
            "rows": len(self.buffer),
            "inflight": inf.request.rc if inf is not None else "-",
            "requests": c.requests,
            "answered": c.answered,
            "failed": c.failed,
            "sent_rows": c.rows_sent,
            "dropped": self.buffer.dropped,
            "tokens": c.tokens,
            "last": c.last,
            "auts": "-" if c.auts is None else c.auts,
            "asl": "-" if c.asl is None else c.asl,
            "reply_at": "-" if c.reply_at is None else c.reply_at,
        }

