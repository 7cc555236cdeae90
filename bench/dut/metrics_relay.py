"""The bench's side of the OpenPAYGO Metrics bridge: carry a device's requests to the server and
its replies back (docs/protocol.md "Metrics bridge" and "Metrics sessions", bridge mode).

A device without a network link announces each request with `! EVT metrics_pending rc=<n> ...`;
the relay takes it (`METRICS EXPORT`), POSTs the body to `<base URL>/dd` with the device's content
type, and hands the answer back (`METRICS IMPORT`). The base URL is the one the bench configured
the device with, until the device reports a new one from a reply (`! EVT metrics_settings
base_url=...`): from then on the relay POSTs there. When the POST fails (refused, reset, timed
out, an HTTP status other than 200/201) it imports nothing: the device's own rules apply (the
next session counts the request as `no_reply` and sends its rows again).

The relay runs on the caller's thread, while the caller waits (`pump(deadline)`), not on a thread
of its own: the serial link has one reader and one request at a time (`SerialLink` is not
thread-safe), and a thread sending `METRICS EXPORT` would race the test's own requests for the
replies. A request announced while the test is busy elsewhere waits on the device (it repeats
`metrics_pending` every period) until the next pump.

Events: the pump reads the link's unsolicited lines. Metrics events (`! EVT metrics_...`) are
kept in `events` (monotonic time, line) for whoever watches the sessions; any other unsolicited
line is put back on the link's event queue when the pump returns, so nothing a test or the power
control waits for is lost.
"""

from __future__ import annotations

import http.client
import time
import urllib.parse
from dataclasses import dataclass

from bench.dut.adapter import DeviceAdapter
from bench.dut.errors import DeviceRefused, LinkSilent, ProtocolError
from bench.dut.link import SerialLink

METRICS_EVENT = "! EVT metrics_"
PENDING = "! EVT metrics_pending"
SETTINGS = "! EVT metrics_settings"
HTTP_OK = (200, 201)
MAX_REPLY_BYTES = 65536
# How long one blocking read of the link lasts inside a pump: short, so a pump ends close to its
# deadline; reading is what waits (no sleep).
READ_SLICE_S = 0.2


@dataclass(frozen=True)
class RelayedExchange:
    """One request the relay carried (or tried to)."""

    at: float  # time.monotonic() when it was exported
    request_count: int
    content_type: str
    request_bytes: int  # the body
    status: int | None  # the server's HTTP status (None: no answer)
    error: str | None  # why there was no usable answer: refused | timeout | dropped | network | http_<n>
    imported: bool  # the device took the reply
    device_answer: str  # what METRICS IMPORT said (OK ... or ERR ...), "" if nothing was imported


def post(
    url: str, body: bytes, content_type: str, timeout_s: float
) -> tuple[int | None, str | None, bytes, str | None]:
    """POST body to <url>/dd: (status, content type, body, error word)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout_s)
    try:
        conn.request(
            "POST",
            parts.path.rstrip("/") + "/dd",
            body=body,
            headers={"Content-Type": content_type, "Connection": "close", "User-Agent": "paygo-bench-metrics-relay/1"},
        )
        resp = conn.getresponse()
        data = resp.read(MAX_REPLY_BYTES)
        return resp.status, resp.getheader("Content-Type"), data, None
    except ConnectionRefusedError:
        return None, None, b"", "refused"
    except TimeoutError:
        return None, None, b"", "timeout"
    except (
        http.client.RemoteDisconnected,
        http.client.IncompleteRead,
        http.client.BadStatusLine,
        ConnectionResetError,
        ConnectionAbortedError,
        BrokenPipeError,
    ):
        return None, None, b"", "dropped"
    except (OSError, http.client.HTTPException):
        return None, None, b"", "network"
    finally:
        conn.close()


def event_fields(line: str) -> dict[str, str]:
    """The key=value fields of a Metrics event line (`! EVT metrics_<what> k=v ...`)."""
    return dict(part.split("=", 1) for part in line.split()[3:] if "=" in part)


def _plain_http(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme == "http" and bool(parts.hostname)


class MetricsRelay:
    """Reads a device's Metrics events and, in bridge mode (`server_url` given), relays its
    requests to `server_url` (the module docstring)."""

    def __init__(
        self, adapter: DeviceAdapter, link: SerialLink, server_url: str | None, http_timeout_s: float = 1.0
    ) -> None:
        if server_url is not None and not _plain_http(server_url):
            raise ValueError(f"the relay POSTs over plain HTTP; got {server_url!r}")
        self.adapter = adapter
        self.link = link
        self.server_url = server_url
        self.http_timeout_s = http_timeout_s
        self.events: list[tuple[float, str]] = []  # every Metrics event seen, in order
        self.relayed: list[RelayedExchange] = []
        # when the last request was exported: a `metrics_pending` line that arrived before it is
        # old news (the device repeats the line each period until the request is exported, and
        # announces nothing once it is)
        self._last_export_at = float("-inf")

    @property
    def bridging(self) -> bool:
        return self.server_url is not None

    def pump(self, deadline: float) -> None:
        """Read events (and relay announced requests) until time.monotonic() reaches deadline."""
        held: list[tuple[float, str]] = []
        try:
            self._take_queued(held)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                try:
                    line = self.link.wait_event(self.link.unsolicited, min(left, READ_SLICE_S))
                except LinkSilent:
                    continue  # nothing within this slice: the loop checks the deadline
                self._route(time.monotonic(), line, held)
        finally:
            # lines that were not Metrics events go back, in order, where their owners look
            self.link.events.extend(held)

    def _take_queued(self, held: list[tuple[float, str]]) -> None:
        queued = list(self.link.events)
        self.link.events.clear()
        for t, line in queued:
            self._route(t, line, held)

    def _route(self, t: float, line: str, held: list[tuple[float, str]]) -> None:
        if not line.startswith(METRICS_EVENT):
            held.append((t, line))
            return
        self.events.append((t, line))
        if line.startswith(SETTINGS) and self.bridging:
            self._follow(line)
        if line.startswith(PENDING) and self.bridging and t > self._last_export_at:
            self.relay_once()

    def _follow(self, line: str) -> None:
        """The device took a new base URL from a reply (`st.base_url`): a bridge carries its
        requests where the device now reports, as a modem would. A URL the relay cannot POST to
        (not plain HTTP) is noted and the old one kept."""
        url = event_fields(line).get("base_url")
        if not url or url == self.server_url:
            return
        if not _plain_http(url):
            self.link.log.note(
                f"metrics relay: the device now reports to {url!r}, which the relay cannot "
                f"POST to (plain HTTP only); still relaying to {self.server_url}"
            )
            return
        self.link.log.note(f"metrics relay: the device now reports to {url} (was {self.server_url})")
        self.server_url = url

    def relay_once(self) -> RelayedExchange:
        """Export the device's request, POST it, import the answer (if there is a usable one)."""
        assert self.server_url is not None, "relay_once() needs a server URL (bridge mode)"
        export = self.adapter.metrics_export()
        at = self._last_export_at = time.monotonic()
        status, ctype, body, error = post(self.server_url, export.payload, export.content_type, self.http_timeout_s)
        if error is None and status not in HTTP_OK:
            error = f"http_{status}"
        imported, answer = False, ""
        if error is None:
            try:
                done = self.adapter.metrics_import(body, ctype)
                imported = True
                answer = f"OK tokens={done.tokens_accepted}/{done.tokens_received} rc={done.request_count} rows={done.rows_cleared}"
            except (DeviceRefused, ProtocolError, ValueError) as e:
                answer = f"refused: {e}"
        self.link.log.note(
            f"metrics relay: rc={export.request_count} {len(export.payload)} bytes -> "
            f"{status if status is not None else '-'} {error or ''} {answer}".rstrip()
        )
        ex = RelayedExchange(
            at, export.request_count, export.content_type, len(export.payload), status, error, imported, answer
        )
        self.relayed.append(ex)
        return ex
