"""The Metrics server's evidence of a run, as plain data the report can render: one summary per
stored request (what the server received and answered, never the raw body or a secret) and the
historical series the device reported, expanded by the bench's codec and scaled to the units of
its data format (docs/server.md "Metrics evidence in the report").

The series come from the stored simple form (`simple_json`): the request expanded by the codec
when the server received it, every row with its absolute `timestamp`; a stored request without
it (none should be) is expanded again from its body. Only accepted device-data requests count: a
refused request's rows were not taken. Rows the device sent twice (at-least-once delivery: a
reply lost after the server committed) carry the same timestamp and are counted once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.openpaygo.metrics.codec import parse_body
from bench.openpaygo.metrics.errors import MetricsError
from bench.openpaygo.metrics.format import DataFormat, parse_data_format
from bench.openpaygo.metrics.keys import REQUEST_SHORT_TO_LONG
from bench.openpaygo.metrics.reply import decode_reply
from bench.openpaygo.metrics.wire import decode, encoding_of
from bench.server.store import StoredRequest

FormatLookup = Callable[[int], DataFormat | None]

ROW_TIME_KEYS = frozenset({"timestamp", "relative_time"})
_AUTH_ERRORS = frozenset(
    {"auth_missing", "auth_invalid", "auth_malformed", "auth_unprotected", "unknown_device", "jwt_invalid"}
)
# -- one request, summarised -------------------------------------------------------------------


def _simple(r: StoredRequest) -> dict | None:
    return r.simple if isinstance(r.simple, dict) else None


def _tokens(r: StoredRequest) -> list[str] | None:
    """The tokens the reply carried (None: no reply, or one without a token list)."""
    if not r.reply or r.status >= 400:
        return None
    try:
        reply = decode_reply(r.reply, r.reply_content_type)
    except Exception:  # noqa: BLE001 - a reply the report cannot read is shown without tokens
        return None
    if reply is None or reply.token_list is None:
        return None
    return [str(t) for t in reply.token_list]


def _auth(r: StoredRequest) -> str:
    """How the request authenticated, and the verdict on it."""
    if r.error_code in _AUTH_ERRORS:
        return f"{r.auth + ' ' if r.auth else ''}refused ({r.error_code})"
    if r.auth:
        return f"{r.auth} ok" if r.verdict == "accepted" else f"{r.auth} ok (request {r.error_code})"
    return "-"


def _as_sent(r: StoredRequest) -> dict:
    """A refused device-data request's top-level fields as sent (the server stores the simple
    form of accepted requests only), long keys; {} if the body does not decode, or if only an
    excerpt of it is stored (a refused body over the store's excerpt, docs/server.md "Storage")."""
    if r.kind != "device_data" or not r.body or r.body_is_excerpt:
        return {}
    try:
        value = decode(r.body, encoding_of(r.content_type))
    except Exception:  # noqa: BLE001 - refused for being unreadable: nothing to show
        return {}
    if not isinstance(value, dict):
        return {}
    return {REQUEST_SHORT_TO_LONG.get(k, k): v for k, v in value.items() if isinstance(k, str)}


def summary(r: StoredRequest) -> dict[str, Any]:
    """The fields the table and the CSV show, as plain values (the report's CSV_COLUMNS). rc, ts and the
    rows of a refused request are read from its body as sent."""
    simple = (_simple(r) or {}) if r.kind == "device_data" else {}
    if r.kind == "device_data" and not simple:
        simple = _as_sent(r)
    hd = simple.get("historical_data")
    tokens = _tokens(r)
    return {
        "id": r.id,
        "received_at": r.received_at,
        "method": r.method,
        "route": r.route,
        "kind": r.kind,
        "status": r.status,
        "verdict": r.verdict,
        "error_code": r.error_code,
        "serial_number": r.serial_number,
        "request_count": simple.get("request_count"),
        "timestamp": simple.get("timestamp"),
        "auth": _auth(r),
        "hd_rows": len(hd) if isinstance(hd, list) else 0,
        "body_bytes": r.body_length,
        "body_stored_bytes": len(r.body),  # fewer than body_bytes: a refused body's excerpt
        "reply_bytes": len(r.reply) if r.reply is not None else 0,
        "tokens": " ".join(tokens) if tokens is not None else None,
    }


# -- the series --------------------------------------------------------------------------------


def _expanded(r: StoredRequest, formats: FormatLookup | None) -> dict | None:
    """The request's simple form: as stored, else expanded again from its body by the codec."""
    simple = _simple(r)
    if simple is not None:
        return simple
    try:
        return parse_body(
            r.body, r.content_type, formats=formats or (lambda _id: None), received_at=r.received_unix
        ).to_simple()
    except MetricsError:
        return None


def _format_of(simple: dict, formats: FormatLookup | None) -> DataFormat | None:
    if isinstance(simple.get("data_format"), dict):
        try:
            return parse_data_format(simple["data_format"])
        except MetricsError:
            return None
    df = simple.get("data_format_id")
    if formats is not None and isinstance(df, int):
        return formats(df)
    return None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _accepted_rows(
    requests: Iterable[StoredRequest], formats: FormatLookup | None
) -> Iterable[tuple[str, dict, DataFormat | None]]:
    for r in requests:
        if r.kind != "device_data" or r.verdict != "accepted":
            continue
        simple = _expanded(r, formats)
        if simple is None:
            continue
        fmt = _format_of(simple, formats)
        for row in simple.get("historical_data") or ():
            if isinstance(row, dict) and _is_number(row.get("timestamp")):
                yield str(simple.get("serial_number", "")), row, fmt


def historical_series(
    requests: Sequence[StoredRequest], *, formats: FormatLookup | None = None, serial_number: str | None = None
) -> dict[str, list[tuple[float, float]]]:
    """The historical rows of every accepted device-data request, per variable: (timestamp,
    value) in time order, a timestamp seen twice (a resent row) counted once (its first value).
    Numeric values only (text, booleans and gps are left out), top-level device rows only (not
    accessories). A value is multiplied by its variable's `scale_factor` (the spec's value "for
    processing and displaying": volts, not the millivolts sent) when the request's data format
    is known: embedded (`dfo`), or registered (`df`) and found through `formats` (pass
    `store.data_format`); otherwise it is the value as sent. `serial_number` keeps one
    device; when the requests hold several devices and none is chosen, the keys are
    "<serial>/<variable>"."""
    rows = [
        (sn, row, fmt)
        for sn, row, fmt in _accepted_rows(requests, formats)
        if serial_number is None or sn == serial_number
    ]
    several = len({sn for sn, _, _ in rows}) > 1
    seen: dict[str, dict[float, float]] = {}
    for sn, row, fmt in rows:
        t = float(row["timestamp"])
        for name, value in row.items():
            if name in ROW_TIME_KEYS or not _is_number(value):
                continue
            var = fmt.variables.get(name) if fmt is not None else None
            if var is not None:
                value = var.scaled(value)
            key = f"{sn}/{name}" if several else name
            seen.setdefault(key, {}).setdefault(t, float(value))
    return {k: sorted(v.items()) for k, v in sorted(seen.items())}


def series_units(requests: Sequence[StoredRequest], *, formats: FormatLookup | None = None) -> dict[str, str]:
    """Variable name -> unit, from the data formats the accepted requests used (embedded, or
    registered ones through `formats`). Keyed like `historical_series` for one device."""
    units: dict[str, str] = {}
    for _, row, fmt in _accepted_rows(requests, formats):
        if fmt is None:
            continue
        for name in row:
            var = fmt.variables.get(name)
            if var is not None and var.unit and name not in ROW_TIME_KEYS:
                units.setdefault(name, var.unit)
    return units


@dataclass(frozen=True)
class MetricsEvidence:
    """What the report shows of a run's Metrics traffic: summaries (one dict per request) and series."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)


def evidence(requests: Sequence[StoredRequest], *, formats: FormatLookup | None = None) -> MetricsEvidence:
    """The requests summarised and their series expanded (pass `store.data_format` as formats)."""
    return MetricsEvidence(
        [summary(r) for r in requests],
        historical_series(requests, formats=formats),
        series_units(requests, formats=formats),
    )
