"""What the HTTP front answers for a request it cannot hand to the app: in the server's own JSON.

waitress (HTTP) and Python's http.server under werkzeug (HTTPS) refuse some requests before the
app sees them: a request line or header that is not HTTP, a `Content-Length` that is not digits,
broken chunked framing, a body or header block over the limits, an unknown transfer coding. Left
to themselves they answer in plain text (waitress) or HTML (http.server), and nothing is stored.
A device maker then meets answers the server's documentation does not list. Here each of those
refusals gets the documented JSON body (`error`, `message`, `where`), a status that says whose
fault it is, and a row in the refusal audit like any other refused request (docs/server.md
"Status codes", "Refused before the app").

The statuses follow RFC 9112 (HTTP/1.1), with one choice of the bench's: a transfer coding other
than chunked is answered 400, never 501. RFC 9112 section 6.3 requires 400 when chunked is not
the final coding (the body length cannot be known); for chunked after another coding it suggests
501, but the server's 5xx statuses mean the bench itself failed (docs/server.md), and the
Metrics specification uses no transfer coding, so the device is at fault either way.

waitress has no documented hook for its error answers: the refusal task class is set on the
channel class (`HTTPChannel.error_task_class`), checked against waitress 3.0 by
tests/selftest/test_server_front.py, which fails on any plain-text answer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from werkzeug.serving import WSGIRequestHandler

from bench.openpaygo.metrics.errors import MetricsError
from bench.openpaygo.metrics.wire import Encoding, encode
from bench.secret import mask

log = logging.getLogger("bench.server")
JSON = "application/json"
MESSAGE_CHARS = 200  # a parser's message can quote the offending line: kept short
METHOD_CHARS = 16


@dataclass(frozen=True)
class FrontRefusal:
    """A request refused before the app: what the front read of it, as it came (the recorder
    masks and caps it before it is stored)."""

    error: MetricsError
    remote: str
    method: str
    route: str
    content_type: str | None
    declared_length: int


Recorder = Callable[[FrontRefusal], None]


def classify(status: int, text: str) -> MetricsError:
    """The server's refusal for a front's (status, message): 413 too_large, 431 (or 414, a
    request line too long) headers_too_large, an unsupported transfer coding
    unsupported_transfer_encoding, everything else that could not be read as HTTP bad_http."""
    text = " ".join(text.split())[:MESSAGE_CHARS]
    if status == 413:
        return MetricsError("too_large", f"the body is larger than the server's limit (4096 KB): {text}")
    if status in (414, 431):
        return MetricsError("headers_too_large", f"the request line and headers are over the limit (16 KB): {text}")
    if status == 501 and "transfer-encoding" in text.lower():
        return MetricsError("unsupported_transfer_encoding", f"{text} (only chunked is)", "Transfer-Encoding")
    return MetricsError("bad_http", f"the request is not readable as HTTP/1.1: {text}")


def refusal_body(error: MetricsError) -> bytes:
    return encode(error.body(), Encoding.JSON)


def _metrics_server(app: Any) -> Any:
    """The bench's Metrics server behind `app`, None for another WSGI app (a benchmark's bare one)."""
    return getattr(app, "extensions", {}).get("paygo_metrics")


def _masker(app: Any) -> Callable[[str], str]:
    server = _metrics_server(app)
    return (lambda text: mask(text, server.secrets())) if server is not None else (lambda text: text)


def audit_recorder(app: Any) -> Recorder | None:
    """A recorder writing front refusals into `app`'s refusal audit, secrets masked and each field
    capped (None if `app` is not the bench's Metrics app: then refusals are answered, unstored)."""
    server = _metrics_server(app)
    if server is None:
        return None
    from bench.server.store import SQLITE_MAX_INT, RequestRecord

    masked = _masker(app)

    def record(r: FrontRefusal) -> None:
        rec = RequestRecord(
            received_at=datetime.fromtimestamp(server.clock(), UTC),
            remote=r.remote,
            method=masked(r.method)[:METHOD_CHARS],
            route=masked(r.route)[:MESSAGE_CHARS],
            kind="other",
            content_type=masked(r.content_type)[:MESSAGE_CHARS] if r.content_type else None,
            body=b"",
            status=r.error.status,
            error=r.error,
            reply=refusal_body(r.error),
            reply_content_type=JSON,
            body_length=min(max(r.declared_length, 0), SQLITE_MAX_INT),
        )
        try:
            server.store.record(rec, server.config.refusal_quota)
        except Exception as e:  # noqa: BLE001 - the answer still goes out; the loss is logged
            log.error("could not store a refusal made before the app: %s", mask(repr(e), server.secrets()))

    return record


# -- waitress (HTTP) ------------------------------------------------------------------------------


def waitress_channel(app: Any) -> type:
    """A waitress channel class whose refusals are the server's JSON, recorded in the audit."""
    from waitress.channel import HTTPChannel
    from waitress.task import ErrorTask

    recorder, masked = audit_recorder(app), _masker(app)

    class JsonErrorTask(ErrorTask):
        def execute(self) -> None:
            req = self.request
            waitress_error = req.error
            error = classify(waitress_error.code, masked(str(waitress_error.body)))
            body = refusal_body(error)
            self.status = f"{error.status} {_REASONS.get(error.status, 'Bad Request')}"
            self.response_headers.append(("Content-Type", JSON))
            self.set_close_on_finish()
            self.content_length = len(body)
            if recorder is not None:
                recorder(
                    FrontRefusal(
                        error,
                        remote=str(self.channel.addr[0]) if self.channel.addr else "",
                        method=str(getattr(req, "command", "") or ""),
                        route=_route(getattr(req, "path", ""), getattr(req, "query", "")),
                        content_type=req.headers.get("CONTENT_TYPE") or None,
                        declared_length=getattr(req, "content_length", 0) or 0,
                    )
                )
            self.write(body)

    class JsonChannel(HTTPChannel):
        error_task_class = JsonErrorTask

    return JsonChannel


def _route(path: Any, query: Any) -> str:
    path = path if isinstance(path, str) else ""
    query = query if isinstance(query, str) else ""
    return path + (f"?{query}" if query else "")


_REASONS = {400: "Bad Request", 413: "Content Too Large", 431: "Request Header Fields Too Large"}


# -- http.server under werkzeug (HTTPS) ----------------------------------------------------------


def werkzeug_handler(app: Any) -> type[WSGIRequestHandler]:
    """werkzeug's request handler with http.server's HTML refusals replaced by the server's JSON."""
    recorder, masked = audit_recorder(app), _masker(app)

    class JsonRefusalHandler(WSGIRequestHandler):
        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            error = classify(code, masked(" ".join(p for p in (message, explain) if p)))
            body = refusal_body(error)
            self.close_connection = True
            if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
                # a line that is not HTTP/1.x reads as HTTP/0.9, answered with no status line: give one
                self.request_version = "HTTP/1.0"
            if recorder is not None:
                recorder(
                    FrontRefusal(
                        error,
                        remote=str(self.client_address[0]) if self.client_address else "",
                        method=str(getattr(self, "command", "") or ""),
                        route=str(getattr(self, "path", "") or ""),
                        content_type=None,
                        declared_length=0,
                    )
                )
            self.send_response(error.status, _REASONS.get(error.status, "Bad Request"))
            self.send_header("Content-Type", JSON)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if getattr(self, "command", None) != "HEAD":
                self.wfile.write(body)

    return JsonRefusalHandler
