"""The OpenPAYGO Metrics server as a Flask app: `create_app(config, store, registry)`.

Routes under the configured base path (docs/server.md): POST /device_data and /dd (201, `{}` or
a Server Response, encoded like the request), GET /device_data and /dd (stored data in the
simple format), POST /data_format (201 `{"id": n}`).

Every request, whatever happens to it, is stored as one row before its answer leaves (a refused
one too, with its error); the row and the device state it changes go in one transaction. No
input produces a 500: refusals are `MetricsError`s with a JSON body `{"error", "message",
"where"}`, and an unexpected exception is logged (secrets masked), stored and answered 400
without a stack trace. Device keys and the JWT secret never reach a log, a row or a reply."""

from __future__ import annotations

import logging
import sqlite3
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Request, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from bench.openpaygo.metrics.auth import parse_auth, verify_request
from bench.openpaygo.metrics.codec import MetricsRequest, parse_body
from bench.openpaygo.metrics.errors import MetricsError
from bench.openpaygo.metrics.format import parse_data_format, type_name
from bench.openpaygo.metrics.reply import MetricsReply
from bench.openpaygo.metrics.timestamps import parse_iso, whole
from bench.openpaygo.metrics.wire import Encoding, decode, encode, encoding_of
from bench.secret import mask
from bench.server.activation import (
    MAX_AHEAD,
    active_seconds_left,
    active_until_timestamp,
    beyond_windows,
    plan_tokens,
)
from bench.server.config import MetricsServerConfig
from bench.server.devices import DeviceRegistry
from bench.server.jwt_auth import check_jwt
from bench.server.query import cut
from bench.server.store import DeviceState, RequestRecord, Store

log = logging.getLogger("bench.server")
JSON = "application/json"
_PLAN_ATTEMPTS = 3  # plans made outside the lock before one is made inside it (a device racing itself)


@dataclass
class _Exchange:
    """What is known about the request being answered, for its row."""

    received_at: datetime
    kind: str
    request: Request
    body: bytes = b""
    body_length: int | None = None
    serial_number: str | None = None
    auth: str | None = None
    simple: dict | None = None
    data_times: tuple[float, float] | None = None
    t0: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    content_type: str


class MetricsServer:
    """The request handling behind the Flask routes (one per app)."""

    def __init__(
        self,
        config: MetricsServerConfig,
        store: Store,
        registry: DeviceRegistry,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config, self.store, self.registry, self.clock = config, store, registry, clock
        # The state each registered device was last committed with by this server: where the
        # next request's plan starts (the transaction checks it against the store's).
        self._committed: dict[str, DeviceState] = {}

    def announce_base_url(self, url: str | None) -> None:
        """From now on every reply carries settings.base_url = url (None: no settings): a server
        migration while devices are reporting (`--announce-base-url` sets it from the start)."""
        self.config = replace(self.config, announce_base_url=url or None)

    # -- plumbing ------------------------------------------------------------------------------
    def secrets(self) -> tuple:
        return self.registry.secrets() + self.config.secrets()

    @staticmethod
    def _route(rq: Request) -> str:
        qs = rq.query_string.decode("latin-1")
        return rq.path + (f"?{qs}" if qs else "")

    def _kind(self, rq: Request) -> str:
        tail = rq.path[len(self.config.prefix) :] if rq.path.startswith(self.config.prefix) else ""
        if tail in ("/device_data", "/dd"):
            return "device_data" if rq.method == "POST" else "query"
        return "data_format" if tail == "/data_format" else "other"

    def _read_body(self, ex: _Exchange) -> bytes:
        ex.body_length = ex.request.content_length
        try:
            ex.body = ex.request.get_data(cache=True)
        except RequestEntityTooLarge:
            raise MetricsError(
                "too_large", f"the body is larger than {self.config.max_body_bytes} bytes (4096 KB)", ""
            ) from None
        ex.body_length = len(ex.body)
        return ex.body

    def _record(self, ex: _Exchange, answer: _Answer, error: MetricsError | None, tx: Any = None) -> None:
        rq = ex.request
        rec = RequestRecord(
            received_at=ex.received_at,
            remote=rq.remote_addr or "",
            method=rq.method,
            route=self._route(rq),
            kind=ex.kind,
            content_type=rq.headers.get("Content-Type"),
            body=ex.body,
            status=answer.status,
            error=error,
            serial_number=ex.serial_number,
            auth=ex.auth,
            simple=ex.simple if error is None else None,
            data_times=ex.data_times,
            reply=answer.body,
            reply_content_type=answer.content_type,
            body_length=ex.body_length,
        )
        if tx is not None:
            tx.insert_request(rec)
        else:  # a refusal: kept as a bounded audit entry (store.RefusalQuota)
            self.store.record(rec, self.config.refusal_quota)
        log.info(
            "%s %s %d %s %s %s %.1f ms",
            rq.method,
            rec.route,
            answer.status,
            ex.serial_number or "-",
            error.code if error else "accepted",
            ex.auth or "-",
            (time.monotonic() - ex.t0) * 1000,
        )

    def _refuse(self, ex: _Exchange, error: MetricsError) -> Response:
        answer = _Answer(error.status, encode(error.body(), Encoding.JSON), JSON)
        try:
            self._record(ex, answer, error)
        except Exception:  # noqa: BLE001 - the store is down: say so, never answer unstored
            log.error("could not store a refused request: %s", mask(traceback.format_exc(), self.secrets()))
            return _storage_unavailable()
        return Response(answer.body, answer.status, content_type=answer.content_type)

    def exchange(self, kind: str, rq: Request) -> _Exchange:
        """A request received now."""
        return _Exchange(datetime.fromtimestamp(self.clock(), UTC), kind, rq)

    def handle(self, ex: _Exchange, work: Callable[[_Exchange], Response]) -> Response:
        """Run one route's work; turn every failure into a stored, well-formed refusal."""
        try:
            return work(ex)
        except MetricsError as e:
            return self._refuse(ex, e)
        except sqlite3.OperationalError as e:  # locked past the busy timeout, disk full, I/O error
            return self._unavailable(ex, e)
        except Exception:  # noqa: BLE001 - no input may produce a 500
            return self.unexpected(ex)

    def _unavailable(self, ex: _Exchange, e: Exception) -> Response:
        """The store could not take the request (another worker held SQLite's lock past the busy
        timeout, or the disk failed): 503 storage_unavailable, not stored (the store is what
        failed), logged; the device sends it again."""
        log.error(
            "%s %s 503 storage_unavailable: the store could not take it: %s",
            ex.request.method,
            self._route(ex.request),
            mask(str(e), self.secrets()),
        )
        return _storage_unavailable()

    def unexpected(self, ex: _Exchange) -> Response:
        log.error(
            "unexpected error on %s %s: %s",
            ex.request.method,
            ex.request.path,
            mask(traceback.format_exc(), self.secrets()),
        )
        return self._refuse(
            ex, MetricsError("bad_request", "the server could not process this request; it was logged and stored", "")
        )

    # -- authentication ------------------------------------------------------------------------
    def _jwt(self, rq: Request, required: bool) -> bool:
        """True if a valid JWT came; MetricsError if one came and is bad, or none came but must."""
        secret = self.config.jwt_secret
        header = rq.headers.get("Authorization")
        if header is None and not required:
            return False
        if secret is None:  # a credential that is present must be valid; this one cannot be checked
            raise MetricsError(
                "jwt_invalid",
                "this server has no JWT secret, so an Authorization JWT cannot be checked",
                "Authorization",
            )
        check_jwt(header, secret, self.config.jwt_leeway_s)
        return True

    def authenticate(self, req: MetricsRequest, rq: Request) -> str:
        """How the request authenticated ("ra", "jwt", "ca+jwt", "none"...), or MetricsError.
        Whatever the policy, a credential that is present must be valid: an `a` that cannot be
        verified (malformed, or from a device the registry does not hold) is refused under
        jwt, either and none too, never stored as if it had not been sent."""
        policy = self.config.auth
        jwt_ok = self._jwt(rq, required=policy == "jwt")
        payload = self._payload_auth(req)
        if policy == "payload" and payload is None:
            if self.registry.get(req.serial_number) is None:
                raise MetricsError(
                    "unknown_device",
                    f"serial number {req.serial_number!r} is not in this server's device registry",
                    "sn",
                )
            raise MetricsError(
                "auth_missing", "this server requires payload auth: sign the request (a = sa|ta|ca|da|ra + hex)", "a"
            )
        if policy == "either" and payload is None and not jwt_ok:
            raise MetricsError(
                "auth_missing", "this server requires payload auth (a) or an Authorization: JWT header", "a"
            )
        return "+".join(p for p in (payload, "jwt" if jwt_ok else None) if p) or "none"

    def _payload_auth(self, req: MetricsRequest) -> str | None:
        """The verified `a` ("ra", "da (device's own JSON text)"...), None if the request has none."""
        if req.auth is None:
            return None
        parse_auth(req.auth)  # its shape first: auth_malformed needs no key
        device = self.registry.get(req.serial_number)
        if device is None:
            raise MetricsError(
                "unknown_device",
                f"serial number {req.serial_number!r} is not in this server's device registry, so its "
                "signature (a) cannot be checked; a credential that is present must be valid",
                "sn",
            )
        payload = verify_request(req.signed, req.auth, device.key).describe()
        if req.signed.timestamp is None and req.signed.request_count is None:
            raise MetricsError(
                "auth_unprotected",
                "a signed request must carry timestamp (ts) or request_count (rc), or anyone could replay it",
                "a",
            )
        return payload

    def _admin(self, ex: _Exchange) -> None:
        """The data-format and query routes need a JWT when the server has a secret (and, as
        everywhere, one that is sent must be valid)."""
        ex.auth = "jwt" if self._jwt(ex.request, required=self.config.jwt_secret is not None) else "none"

    # -- routes --------------------------------------------------------------------------------
    def post_device_data(self, ex: _Exchange) -> Response:
        body = self._read_body(ex)
        now = self.clock()
        content_type = ex.request.headers.get("Content-Type")
        req = parse_body(
            body,
            content_type,
            formats=self.store.data_format,
            received_at=now,
            max_bytes=self.config.max_body_bytes,
        )
        ex.serial_number = req.serial_number
        ex.simple = req.to_simple()
        times = req.times()
        ex.data_times = (min(times), max(times)) if times else None
        ex.auth = self.authenticate(req, ex.request)
        encoding = encoding_of(content_type)
        seen = self._plan_from(req)
        for attempt in range(_PLAN_ATTEMPTS):
            # Tokens are planned and the reply signed outside the store's lock, from `seen`; the
            # transaction writes the new state only if the stored one is still `seen` (one
            # statement), else reads it and plans again.
            _check_replay(req, seen)
            reply, planned = self._reply(req, seen, now)
            with self.store.transaction() as tx:
                new = _kept(planned, req)
                if not tx.swap_device_state(seen, new):  # the stored state is not `seen` (or none)
                    state = tx.device_state(req.serial_number) or DeviceState(req.serial_number, 0)
                    if state != seen and attempt + 1 < _PLAN_ATTEMPTS:
                        seen = state  # another request for this device came first: plan again
                        continue
                    if state != seen:  # still racing: plan in the lock (bounded: see activation.py)
                        seen = state
                        _check_replay(req, seen)
                        reply, planned = self._reply(req, seen, now)
                        new = _kept(planned, req)
                    tx.put_device_state(new)
                answer = _Answer(201, reply.encode(encoding, condensed=req.condensed_keys), encoding.content_type)
                self._record(ex, answer, None, tx)
            if req.serial_number in self.registry:  # bounded: registered devices only
                self._committed[req.serial_number] = new  # durable now
            if self.registry.get(req.serial_number) is not None and beyond_windows(seen, req.token_count):
                log.warning(
                    "%s reported token_count %d, more than %d above the server's %d: no token takes a device"
                    " there, so none was issued and the server's count is unchanged (docs/server.md, Tokens)",
                    req.serial_number,
                    req.token_count,
                    MAX_AHEAD,
                    seen.token_count,
                )
            return Response(answer.body, 201, content_type=answer.content_type)
        raise AssertionError("unreachable: the last attempt always answers")  # pragma: no cover

    def _plan_from(self, req: MetricsRequest) -> DeviceState:
        """The device state to plan from: the one this server last committed for it (no store
        read), else the store's. A replay is only ever refused on the store's state."""
        serial = req.serial_number
        seen = self._committed.get(serial)
        if seen is not None:
            try:
                _check_replay(req, seen)
                return seen
            except MetricsError:
                pass
        return self.store.device_state(serial) or DeviceState(serial, 0)

    def _reply(self, req: MetricsRequest, state: DeviceState, now: float) -> tuple[MetricsReply, DeviceState]:
        device = self.registry.get(req.serial_number)
        tokens: tuple | None = None
        if req.token_count is not None:
            tokens = ()
            if device is not None:
                issued, state = plan_tokens(device, state, req.token_count, now)
                tokens = tuple(t.code if self.config.tokens_as_strings else int(t.code) for t in issued)
        known = device is not None
        auts = (
            active_until_timestamp(state)
            if req.wants_active_until and known
            else (0 if req.wants_active_until else None)
        )
        asl = (
            active_seconds_left(state, now)
            if req.wants_seconds_left and known
            else (0 if req.wants_seconds_left else None)
        )
        settings = {"base_url": self.config.announce_base_url} if self.config.announce_base_url else None
        reply = MetricsReply(req.serial_number, tokens, auts, asl, settings)
        return (self._signed(req, reply) if reply.has_content() else reply), state

    def _signed(self, req: MetricsRequest, reply: MetricsReply) -> MetricsReply:
        device = self.registry.get(req.serial_number)
        if device is None:
            return reply
        return reply.signed(device.key, request_timestamp=req.signed.timestamp, request_count=req.signed.request_count)

    def post_data_format(self, ex: _Exchange) -> Response:
        self._admin(ex)
        body = self._read_body(ex)
        encoding = encoding_of(ex.request.headers.get("Content-Type"))
        value = decode(body, encoding, self.config.max_body_bytes)
        if not isinstance(value, dict):
            raise MetricsError("not_an_object", f"a Data Format must be an object, got {type_name(value)}", "$")
        fmt = parse_data_format(value)
        ex.simple = fmt.to_json()
        with self.store.transaction() as tx:
            fid = tx.add_data_format(fmt)
            answer = _Answer(201, encode({"id": fid}, encoding), encoding.content_type)
            self._record(ex, answer, None, tx)
        return Response(answer.body, 201, content_type=answer.content_type)

    def get_device_data(self, ex: _Exchange) -> Response:
        self._admin(ex)
        start = _query_time(ex.request, "from_datetime", float("-inf"))
        end = _query_time(ex.request, "to_datetime", float("inf"))
        if start > end:
            raise MetricsError("bad_query", "from_datetime is after to_datetime", "from_datetime")
        serial = ex.request.args.get("serial_number")
        rows = self.store.device_data_between(start, end, serial)
        found = [c for c in (cut(r.simple or {}, r.received_unix, start, end) for r in rows) if c is not None]
        answer = _Answer(200, encode(found, Encoding.JSON), JSON)
        self._record(ex, answer, None)
        return Response(answer.body, 200, content_type=JSON)

    def http_error(self, e: HTTPException) -> Response:
        """Werkzeug's own refusals (unknown route, wrong method, too large), stored and in JSON."""
        ex = getattr(g, "exchange", None) or self.exchange(self._kind(request), _current_request())
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(e.code or 400, "bad_request")
        status = e.code if code != "bad_request" else 400
        return self._refuse(ex, MetricsError(code, (e.description or e.name or "")[:200], "", status=status))


def _storage_unavailable() -> Response:
    unavailable = MetricsError("storage_unavailable", "the request could not be stored; try again")
    return Response(encode(unavailable.body(), Encoding.JSON), unavailable.status, content_type=JSON)


def _current_request() -> Request:
    """Flask's request of this context, itself (what the work is handed: no proxy per access)."""
    return request._get_current_object()  # type: ignore[attr-defined]  # a LocalProxy at run time


def _query_time(rq: Request, name: str, default: float) -> float:
    text = rq.args.get(name)
    if text is None:
        return default
    try:
        return parse_iso(text, name).timestamp()
    except MetricsError as e:
        raise MetricsError("bad_query", e.message, name) from None


def replay_guard(req: MetricsRequest) -> str | None:
    """The field that protects this request from a replay: the one its signature relies on.
    Timestamp auth (`ta`) signs the serial and ts, Counter auth (`ca`) the serial and rc: that
    field must go up. Data, recursive data and simple auth, and an unsigned request, are guarded
    by rc when they carry it (a counter cannot repeat, a clock can read the same second twice),
    else by ts. None: nothing to guard with (a signed request without either was refused)."""
    method = req.auth[:2] if isinstance(req.auth, str) else None
    has_ts, has_rc = req.timestamp is not None, req.request_count is not None
    if method == "ta" and has_ts:
        return "ts"
    if has_rc:
        return "rc"
    return "ts" if has_ts else None


def _check_replay(req: MetricsRequest, state: DeviceState) -> None:
    """The request's guard (`replay_guard`) must be above the highest one accepted from this
    device: an equal one is a replay too. The other field is not judged: a device whose clock
    went back while its counter went up is not replaying (the device tests judge its clock)."""
    guard = replay_guard(req)
    sent: float | None
    last: float | None
    if guard == "rc":
        sent, last, name = req.request_count, state.last_request_count, "request_count"
        last_text = str(last)
    else:
        sent, last, name = req.timestamp, state.last_timestamp, "timestamp"
        last_text = str(whole(last)) if last is not None else ""
    if guard is None or sent is None or last is None:
        return
    if sent <= last:
        raise MetricsError("replay", f"{name} {sent} is not above the highest accepted ({last_text})", guard)


def _kept(planned: DeviceState, req: MetricsRequest) -> DeviceState:
    """The device state stored after accepting `req`: the plan's, with the highest ts and rc."""
    return replace(
        planned,
        last_timestamp=_highest(planned.last_timestamp, req.timestamp),
        last_request_count=_highest(planned.last_request_count, req.request_count),
    )


def _highest(stored: Any, sent: Any) -> Any:
    """What the device state keeps of ts or rc: the highest accepted."""
    if sent is None:
        return stored
    return sent if stored is None or sent > stored else stored


def create_app(
    config: MetricsServerConfig, store: Store, registry: DeviceRegistry, *, clock: Callable[[], float] = time.time
) -> Flask:
    """The Flask app serving one Metrics server (run it with bench.server.serve)."""
    app = Flask("bench.server")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.config["TRAP_HTTP_EXCEPTIONS"] = False
    server = MetricsServer(config, store, registry, clock)
    app.extensions["paygo_metrics"] = server
    prefix = config.prefix

    def route(kind: str, work: Callable[[_Exchange], Response]) -> Callable[[], Response]:
        def view() -> Response:
            rq = _current_request()
            g.exchange = ex = server.exchange(kind, rq)
            return server.handle(ex, work)

        view.__name__ = f"{kind}_{work.__name__}"
        return view

    for path in ("/device_data", "/dd"):
        app.add_url_rule(
            prefix + path,
            f"post{path}",
            route("device_data", server.post_device_data),
            methods=["POST"],
            provide_automatic_options=False,
        )
        app.add_url_rule(
            prefix + path,
            f"get{path}",
            route("query", server.get_device_data),
            methods=["GET"],
            provide_automatic_options=False,
        )
    app.add_url_rule(
        prefix + "/data_format",
        "data_format",
        route("data_format", server.post_data_format),
        methods=["POST"],
        provide_automatic_options=False,
    )
    app.register_error_handler(HTTPException, server.http_error)
    app.wsgi_app = _device_data_first(app, server, (prefix + "/device_data", prefix + "/dd"))  # type: ignore[method-assign]

    @app.errorhandler(Exception)
    def _unexpected(_e: Exception) -> Response:  # outside a route's work (a before/after hook)
        ex = getattr(g, "exchange", None) or _Exchange(
            datetime.fromtimestamp(clock(), UTC), "other", _current_request()
        )
        return server.unexpected(ex)

    return app


def _device_data_first(app: Flask, server: MetricsServer, paths: tuple[str, ...]) -> Callable[..., Any]:
    """The app's WSGI entry: a POST of device data, the request a soak park sends thousands of,
    goes straight to its route's work, without Flask's request and app contexts and URL map (a
    fifth of its CPU); every other request goes through Flask. The work gets the same Request
    class and body limit, and answers the same Response, so nothing stored or answered differs
    (the server self-tests run through here)."""
    flask_wsgi = app.wsgi_app
    limit = app.config["MAX_CONTENT_LENGTH"]

    def wsgi_app(environ: dict, start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") not in paths:
            return flask_wsgi(environ, start_response)
        rq = app.request_class(environ)
        rq.max_content_length = limit
        return server.handle(server.exchange("device_data", rq), server.post_device_data)(environ, start_response)

    return wsgi_app
