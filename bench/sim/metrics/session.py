"""The simulated device's OpenPAYGO Metrics sessions: sampling, the row buffer, the asynchronous
request/reply flow, over HTTP (direct mode) or the UART bridge (bridge mode).

One instance lives in the firmware's RAM per power-on and runs on the board's thread; what it does
and why (timing, the flow, what a reply changes, events, the defects that live here) is in
docs/simulator.md "Metrics sessions"; the protocol it speaks in docs/protocol.md.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from bench.sim.faults import NO_FAULTS, Fault, FaultSet
from bench.sim.metrics import sensors
from bench.sim.metrics.buffer import Row, RowBuffer
from bench.sim.metrics.http_post import HTTP_OK, HttpResult, post
from bench.sim.metrics.payload import (
    ReplyRefused,
    Request,
    build_request,
    decode_reply,
    parse_reply,
)
from bench.sim.metrics.port import DevicePort
from bench.sim.metrics.settings import MetricsSettings, valid_base_url
from bench.sim.metrics.uplink import Uplink

NO_UPLINK = Uplink()
CATCH_UP_ROWS = 60  # the most rows one late pass of the loop takes (see _sample)


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
    def __init__(
        self,
        port: DevicePort,
        settings: MetricsSettings,
        data_format: Mapping[str, Any],
        clock: Callable[[], float] = time.monotonic,
        sampler: Callable[[float, bool], sensors.Reading] = sensors.sample,
        *,
        faults: frozenset[Fault] = NO_FAULTS,
        uplink: Uplink = NO_UPLINK,
    ) -> None:
        self.port = port
        self.uplink = uplink
        self.faults = FaultSet(faults)
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
        self.last_ts = int(port.rtc_now())  # this second may already have carried a request (ta)
        self._retry_rows: list[Row] | None = None  # metrics_rows_duplicated_on_retry's slot
        self._skip_said = False  # metrics_skipped announced since the URL went missing

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
        """METRICS REPORT: start a session as soon as it may (at once, or under timestamp auth
        the next RTC second at the latest)."""
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
            self._next_sample = now if self.settings.first_row_at_start else now + self.settings.sample_s
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
        """The rows due by now, each at the RTC second it was due. A pass of the board's loop that
        came late (a loaded host stalls the simulator, not the device) takes the rows it missed,
        up to CATCH_UP_ROWS: the device samples on its RTC's alarm, which a busy main loop does not
        delay, so a stalled host must not make the good device lose rows."""
        if now < self._next_sample:
            return
        step = self.settings.sample_s
        due = self._next_sample
        missed = int((now - due) // step)  # instants due after `due`, up to now
        self._next_sample = due + (missed + 1) * step
        rtc, load_on = self.port.rtc_now(), self.port.load_on()
        for k in range(max(0, missed + 1 - CATCH_UP_ROWS), missed + 1):
            t = int(rtc - (now - (due + k * step)))  # the RTC second of that instant
            if t == self._last_sample_t:
                continue  # one row per RTC second
            self._last_sample_t = t
            row = self.sampler(t, load_on).as_dict()
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
            if self._forced or not self._skip_said:  # said once, not every period: the UART is not a log
                self._event("metrics_skipped", reason="no_url", rows=len(self.buffer))
                self._skip_said = True
            self._forced = False
            self._next_session = now + s.period_s
            return
        self._skip_said = False
        if self._ts_guarded() and int(self.port.rtc_now()) <= self.last_ts:
            return  # ts must go up: wait for the next RTC second
        self._forced = False
        self._next_session = now + s.period_s
        via = "http" if s.mode == "direct" else "bridge"
        inf = self._new_request(now, via, int(self.port.rtc_now()))
        fields = {"rc": inf.request.rc, "rows": inf.request.rows, "bytes": len(inf.request.body)}
        if via == "http":
            inf.deadline = now + s.reply_timeout_s + 1.0  # the socket timeout fires first; this is a backstop
            self._event("metrics_sent", **fields)
            threading.Thread(
                target=self._http,
                args=(
                    inf.seq,
                    self.port.base_url,
                    inf.request,
                    s.reply_timeout_s,
                    self.uplink.headers(self.port.serial),
                ),
                name="sim-metrics-http",
                daemon=True,
            ).start()
        else:
            self._event("metrics_pending", **fields)

    def _ts_guarded(self) -> bool:
        """The server guards against replays with the field the signature relies on
        (docs/metrics.md "Replay protection"): ts under timestamp auth (`ta`), else rc, which
        every request of this device carries. Only a ts guard needs a new RTC second per request;
        an rc guard lets sessions come as often as the period says."""
        return self.port.auth == "ta"

    def _http(self, seq: int, url: str, request: Request, timeout_s: float, headers: dict[str, str]) -> None:
        """The modem: runs on its own thread and touches nothing but the result queue."""
        try:
            result = post(
                url, request.body, request.content_type, timeout_s, tls=self.uplink.tls_context, headers=headers
            )
        except Exception:  # noqa: BLE001 - a modem that fails says so in one word, never with its secret
            result = HttpResult(0, error="network")
        self._results.put(replace(result, seq=seq))

    def _new_request(self, now: float, via: str, ts: int) -> InFlight:
        s = self.settings
        rows = self.buffer.oldest(s.request_rows)
        retry = self._retry_rows is not None
        if self._retry_rows is not None:
            rows = self._retry_rows[: s.request_rows]
        data = {
            **self.port.current_data(),
            "rows_dropped": self.buffer.dropped,
            "active_until_timestamp_requested": True,
        }
        rc = self.port.next_request_count()  # in NVM before anything leaves
        while True:
            request = build_request(
                serial=self.port.serial,
                key_hex=self.port.key_hex,
                auth=self.port.auth,
                ts=ts,
                rc=rc,
                data=data,
                rows=[r.values for r in rows],
                data_format=self.format,
                df=self.port.data_format_id,
                encoding=s.encoding,
                faults=self.faults,
            )
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
        if (
            inf is not None
            and not inf.retry
            and inf.last_row_id
            and Fault.METRICS_ROWS_DUPLICATED_ON_RETRY in self.faults
        ):
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
        reply = parse_reply(
            decode_reply(body, content_type),
            serial=self.port.serial,
            key_hex=self.port.key_hex,
            ts=inf.request.ts,
            rc=inf.request.rc,
        )
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
        if (
            reply.active_until_timestamp is not None or reply.active_seconds_left is not None
        ) and Fault.METRICS_AUTS_IGNORED not in self.faults:
            c.auts, c.asl = reply.active_until_timestamp, reply.active_seconds_left
            c.reply_at = int(self.port.rtc_now())
        accepted = self.port.enter_tokens(list(reply.tokens)) if reply.tokens else 0
        c.tokens += accepted
        if reply.settings:
            self._follow(reply.settings)
        self._event("metrics_done", rc=inf.request.rc, via=how, rows=cleared, tokens=f"{accepted}/{len(reply.tokens)}")
        return Outcome(inf.request.rc, cleared, accepted, len(reply.tokens))

    def _follow(self, settings: Mapping[str, Any]) -> None:
        url = settings.get("base_url")
        df = settings.get("data_format_id")
        new_url = url if valid_base_url(url) and url != self.port.base_url else None
        if Fault.METRICS_BASE_URL_NOT_FOLLOWED in self.faults:
            new_url = None  # parsed, signature checked, then dropped
        new_df = (
            df
            if (isinstance(df, int) and not isinstance(df, bool) and 0 < df < 2**31 and df != self.port.data_format_id)
            else None
        )
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
        and how long the firmware must wait before handing it over (under timestamp auth a new
        request in the RTC second of the last one carries the next second and leaves when the RTC
        reaches it; under any other auth it carries the current second and leaves at once)."""
        inf = self.inflight
        if inf is not None and inf.via == "bridge" and not inf.exported:
            inf.exported = True
            return inf, 0.0
        if inf is not None:
            self._fail("superseded")
        now = self.clock()
        rtc = self.port.rtc_now()
        ts = max(int(rtc), self.last_ts + 1) if self._ts_guarded() else int(rtc)
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
