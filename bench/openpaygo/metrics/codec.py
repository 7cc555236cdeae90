"""OpenPAYGO Metrics requests: a request body (JSON or CBOR, simple or condensed, v0.11 or v1.0)
parsed into a typed `MetricsRequest` whose data is expanded to the simple form, and back.

Expansion is complete, unlike openpaygo's (§5): short keys inside `d` objects (bug 3), `dct` and
`dtc` (bug 4), index-keyed objects in `d` as well as `hd`, data arrays and index keys checked
against the order, declared variable types checked, row times from `timestamp` (number or ISO),
`relative_time` or `historical_data_interval` (either sign), accessories recursively. Every
refusal is a `MetricsError` naming the field (`where`). Condensing and request building live in
`condense`, replies in `reply`."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.openpaygo.metrics.auth import MISSING, RawText, SignedFields
from bench.openpaygo.metrics.errors import MetricsError
from bench.openpaygo.metrics.format import (
    DataFormat,
    check_name,
    is_index_key,
    is_number,
    parse_data_format,
    type_name,
)
from bench.openpaygo.metrics.keys import (
    DATA_SHORT_TO_LONG,
    REQUEST_SHORT_TO_LONG,
    ROW_RELATIVE_TIME,
    ROW_TIMESTAMP,
)
from bench.openpaygo.metrics.timestamps import parse_time, whole
from bench.openpaygo.metrics.wire import (
    MAX_BODY_BYTES,
    MAX_DEPTH,
    Encoding,
    array_item_spans,
    decode,
    encoding_of,
    json_spans,
)

MAX_ACCESSORY_DEPTH = 4  # a device > accessory > sub-accessory ...: deeper is not a real system
MAX_SERIAL = 128
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

FormatLookup = Callable[[int], "DataFormat | None"]


def _no_formats(_id: int) -> DataFormat | None:
    return None


@dataclass(frozen=True)
class MetricsRequest:
    """One Device Request Object, expanded. Rows and `data` map variable names (long forms for
    token_count & co.) to the values sent; null ("not sent") values are dropped; every historical
    row has an absolute UNIX `timestamp`. `signed` is what the payload signature covers, as sent."""

    serial_number: str
    data: dict[str, Any] | None
    historical_data: tuple[dict[str, Any], ...] | None
    timestamp: int | float | None
    request_count: int | None
    data_collection_timestamp: int | float | None
    auth: str | None
    data_format_id: int | None
    data_format: DataFormat | None  # the one in force: registered (df) or embedded (dfo)
    embedded_format: bool
    accessories: tuple[MetricsRequest, ...]
    condensed_keys: bool  # the device used short top-level keys (the reply answers alike)
    data_time: int | float  # the time `data` describes: ts, else dct, else reception
    signed: SignedFields = field(repr=False)

    @property
    def token_count(self) -> int | None:
        return (self.data or {}).get("token_count")

    @property
    def wants_active_until(self) -> bool:
        return _requested((self.data or {}).get("active_until_timestamp_requested"))

    @property
    def wants_seconds_left(self) -> bool:
        return _requested((self.data or {}).get("active_seconds_left_requested"))

    def times(self) -> list[int | float]:
        """Every time this request carries data for (data_time and each row), for indexing."""
        out = [self.data_time] if self.data is not None else []
        out += [row[ROW_TIMESTAMP] for row in self.historical_data or ()]
        for acc in self.accessories:
            out += acc.times()
        return out

    def head(self) -> dict[str, Any]:
        """The top-level scalars as sent, by long key (see `request_head`)."""
        return request_head(self.serial_number, self.timestamp, self.request_count, self.data_collection_timestamp)

    def to_simple(self) -> dict:
        """The simple form (long keys, named variables, absolute row times), without `auth`:
        the signature covers the wire form, which the simple form no longer is."""
        out = self.head()
        if self.data_format_id is not None:
            out["data_format_id"] = self.data_format_id
        if self.embedded_format and self.data_format is not None:
            out["data_format"] = self.data_format.to_json()
        if self.data is not None:
            out["data"] = dict(self.data)
        if self.historical_data is not None:
            out["historical_data"] = [dict(r) for r in self.historical_data]
        if self.accessories:
            out["accessories"] = [a.to_simple() for a in self.accessories]
        return out

    def scaled(self, row: dict[str, Any]) -> dict[str, Any]:
        """A row with each value multiplied by its variable's scale_factor."""
        fmt = self.data_format
        if fmt is None:
            return dict(row)
        return {k: (fmt.variables[k].scaled(v) if k in fmt.variables else v) for k, v in row.items()}


def request_head(
    serial_number: str, timestamp: Any, request_count: int | None, data_collection_timestamp: Any
) -> dict[str, Any]:
    """sn, ts, rc and dct by long key, in the order sent, those not sent (None) left out: one
    place for the simple form, the condensed form and a built request to take them from."""
    optional = {
        "timestamp": timestamp,
        "request_count": request_count,
        "data_collection_timestamp": data_collection_timestamp,
    }
    return {"serial_number": serial_number, **{k: v for k, v in optional.items() if v is not None}}


def _requested(value: Any) -> bool:
    return value is True or (isinstance(value, int) and not isinstance(value, bool) and value == 1)


# -- parsing ----------------------------------------------------------------------------------


def parse_body(
    body: bytes,
    content_type: str | None,
    *,
    formats: FormatLookup = _no_formats,
    received_at: float,
    max_bytes: int = MAX_BODY_BYTES,
    max_depth: int = MAX_DEPTH,
) -> MetricsRequest:
    """Bytes + Content-Type -> MetricsRequest (MetricsError 400/413/415/422 otherwise).
    `formats` looks up a registered data format by id; `received_at` is UNIX seconds."""
    encoding = encoding_of(content_type)
    value = decode(body, encoding, max_bytes, max_depth)
    raw = (lambda: _raw_text(body, value)) if encoding is Encoding.JSON else None
    return parse_request(value, formats=formats, received_at=received_at, raw=raw)


def _raw_text(body: bytes, value: Any) -> RawText | None:
    """The device's own text of ts, rc, d, hd and each row, for signature checks (§5 bug 6)."""
    if not isinstance(value, dict):
        return None
    try:
        text = body.decode("utf-8")
        spans = json_spans(text)

        def of(*keys: str) -> Any:
            return next((spans[k] for k in keys if k in spans), None)

        def cut(span: Any) -> str | None:
            return text[span.start : span.end] if span is not None else None

        hd = of("hd", "historical_data")
        rows = tuple(cut(s) for s in array_item_spans(text, hd)) if hd is not None else None
        return RawText(cut(of("ts", "timestamp")), cut(of("rc", "request_count")), cut(of("d", "data")), cut(hd), rows)  # type: ignore[arg-type]
    except (ValueError, IndexError):  # pragma: no cover - the text already parsed once
        return None


def parse_request(
    value: Any,
    *,
    formats: FormatLookup = _no_formats,
    received_at: float,
    raw: RawText | Callable[[], RawText | None] | None = None,
    where: str = "",
    depth: int = 0,
) -> MetricsRequest:
    """A decoded Device Request Object -> MetricsRequest."""
    root = where or "$"
    if not isinstance(value, dict):
        raise MetricsError("not_an_object", f"a Device Request Object must be an object, got {type_name(value)}", root)
    pre = f"{where}." if where else ""
    fields: dict[str, Any] = {}
    shown: dict[str, str] = {}
    short_used = long_used = False
    for key, v in value.items():
        if key in REQUEST_SHORT_TO_LONG:
            name, short_used = REQUEST_SHORT_TO_LONG[key], True
        elif key in REQUEST_SHORT_TO_LONG.values():
            name, long_used = key, True
        else:
            raise MetricsError(
                "unknown_field",
                f"unknown key {key[:40]!r} in a Device Request Object (current data goes in d, readings in hd)",
                pre + key[:40],
            )
        if name in fields:
            raise MetricsError("duplicate_field", f"{name} given twice (as {shown[name]!r} and {key!r})", pre + key)
        fields[name], shown[name] = v, key

    def at(name: str) -> str:
        return pre + shown.get(name, name)

    if "serial_number" not in fields:
        raise MetricsError("missing_field", "serial_number (sn) is required", pre + "sn")
    sn = fields["serial_number"]
    if not isinstance(sn, str):
        raise MetricsError("wrong_type", f"serial_number must be a string, got {type_name(sn)}", at("serial_number"))
    if not sn or len(sn) > MAX_SERIAL or _CONTROL.search(sn):
        raise MetricsError(
            "bad_value", f"serial_number must be 1..{MAX_SERIAL} printable characters", at("serial_number")
        )

    ts = parse_time(fields["timestamp"], at("timestamp")) if "timestamp" in fields else None
    dct = (
        parse_time(fields["data_collection_timestamp"], at("data_collection_timestamp"))
        if "data_collection_timestamp" in fields
        else None
    )
    rc = fields.get("request_count")
    if rc is not None or "request_count" in fields:
        if not isinstance(rc, int) or isinstance(rc, bool) or rc < 0:
            raise MetricsError(
                "wrong_type", f"request_count must be a whole number >= 0, got {type_name(rc)}", at("request_count")
            )
    auth = fields.get("auth")
    if "auth" in fields and not isinstance(auth, str):
        raise MetricsError("wrong_type", f"auth must be a string, got {type_name(auth)}", at("auth"))

    # data format: registered (df) or embedded (dfo), never both
    if "data_format_id" in fields and "data_format" in fields:
        raise MetricsError(
            "both_data_formats", "data_format_id (df) and data_format (dfo) given together; send one", at("data_format")
        )
    fmt: DataFormat | None = None
    df = fields.get("data_format_id")
    if "data_format_id" in fields:
        if not isinstance(df, int) or isinstance(df, bool) or df < 0:
            raise MetricsError(
                "wrong_type", f"data_format_id must be a whole number, got {type_name(df)}", at("data_format_id")
            )
        fmt = formats(df)
        if fmt is None:
            raise MetricsError(
                "unknown_data_format",
                f"no data format {df} is registered on this server; POST it to /data_format first",
                at("data_format_id"),
            )
    elif "data_format" in fields:
        fmt = parse_data_format(fields["data_format"], at("data_format"))

    base = ts if ts is not None else dct if dct is not None else int(received_at)

    data = None
    if "data" in fields:
        data = _expand(fields["data"], fmt, "data", at("data"))
    hd_value = fields.get("historical_data", MISSING)
    rows: tuple[dict[str, Any], ...] | None = None
    if hd_value is not MISSING:
        if hd_value == {}:  # openpaygo's simple payload sends "historical_data": {} when unset
            rows = ()
        elif not isinstance(hd_value, list):
            raise MetricsError(
                "wrong_type",
                f"historical_data must be an array of rows, got {type_name(hd_value)}",
                at("historical_data"),
            )
        else:
            rows = _historical(hd_value, fmt, base, at("historical_data"))
    if not data and not rows:
        raise MetricsError("no_data", "at least one of data (d) and historical_data (hd) must carry something", root)

    accessories: list[MetricsRequest] = []
    if "accessories" in fields:
        acc = fields["accessories"]
        if not isinstance(acc, list):
            raise MetricsError(
                "wrong_type",
                f"accessories must be an array of Device Request Objects, got {type_name(acc)}",
                at("accessories"),
            )
        if acc and depth >= MAX_ACCESSORY_DEPTH:
            raise MetricsError(
                "too_deep", f"accessories nested deeper than {MAX_ACCESSORY_DEPTH} levels", at("accessories")
            )
        for i, item in enumerate(acc):
            accessories.append(
                parse_request(
                    item, formats=formats, received_at=received_at, where=f"{at('accessories')}[{i}]", depth=depth + 1
                )
            )

    signed = SignedFields(
        sn, fields.get("timestamp"), rc, fields.get("data", MISSING), hd_value, raw if depth == 0 else None
    )
    return MetricsRequest(
        serial_number=sn,
        data=data,
        historical_data=rows,
        timestamp=ts,
        request_count=rc,
        data_collection_timestamp=dct,
        auth=auth,
        data_format_id=df if "data_format_id" in fields else None,
        data_format=fmt,
        embedded_format="data_format" in fields,
        accessories=tuple(accessories),
        condensed_keys=short_used or not long_used,
        data_time=base,
        signed=signed,
    )


def _order_of(fmt: DataFormat | None, which: str) -> tuple[str | None, ...]:
    if fmt is None:
        return ()
    return fmt.data_order if which == "data" else fmt.historical_data_order


def _expand(value: Any, fmt: DataFormat | None, which: str, where: str) -> dict[str, Any]:
    """One row (the `data` object/array or a historical row) -> {name: value}."""
    order = _order_of(fmt, which)
    order_name = "data_order" if which == "data" else "historical_data_order"
    out: dict[str, Any] = {}
    seen: set[str] = set()
    if isinstance(value, list):
        if not order:
            raise MetricsError("no_data_format", f"an array needs a data format with a {order_name} (df or dfo)", where)
        if len(value) > len(order):
            raise MetricsError(
                "bad_index",
                f"{len(value)} values but the {order_name} has {len(order)} variables",
                f"{where}[{len(order)}]",
            )
        for i, v in enumerate(value):
            if v is None:
                continue
            name = order[i]
            if name is None:
                raise MetricsError("bad_index", f"position {i} is an unused slot of the {order_name}", f"{where}[{i}]")
            out[name] = v
    elif isinstance(value, dict):
        for key, v in value.items():
            if is_index_key(key):
                if not order:
                    raise MetricsError(
                        "no_data_format",
                        f"index key {key!r} needs a data format with a {order_name} (df or dfo)",
                        f"{where}.{key}",
                    )
                idx = int(key)
                if idx >= len(order) or order[idx] is None:
                    raise MetricsError(
                        "bad_index",
                        f"index {idx} has no variable in the {order_name} ({len(order)} slots)",
                        f"{where}.{key}",
                    )
                name = order[idx]
            else:
                name = DATA_SHORT_TO_LONG.get(check_name(key, f"{where}.{key}"), key)
            if name in seen:
                raise MetricsError("duplicate_variable", f"{name!r} given twice in one row", f"{where}.{key}")
            seen.add(name)  # type: ignore[arg-type]
            if v is not None:
                out[name] = v  # type: ignore[index]
    else:
        raise MetricsError("wrong_type", f"a row must be an object or an array, got {type_name(value)}", where)
    _check_types(out, fmt, which, where)
    return out


def _check_types(row: dict[str, Any], fmt: DataFormat | None, which: str, where: str) -> None:
    tc = row.get("token_count")
    if tc is not None and (not isinstance(tc, int) or isinstance(tc, bool) or tc < 0):
        raise MetricsError(
            "type_mismatch", f"token_count must be a whole number >= 0, got {type_name(tc)}", f"{where}.token_count"
        )
    for flag in ("active_until_timestamp_requested", "active_seconds_left_requested"):
        v = row.get(flag)
        if v is not None and not (isinstance(v, bool) or (isinstance(v, int) and v in (0, 1))):
            raise MetricsError(
                "type_mismatch", f"{flag} must be true/false (or 1/0), got {type_name(v)}", f"{where}.{flag}"
            )
    if fmt is not None:
        for name, v in row.items():
            vt = fmt.variables.get(name)
            if vt is not None and name not in (ROW_TIMESTAMP, ROW_RELATIVE_TIME):
                vt.check(v, f"{where}.{name}")


def _historical(rows: list, fmt: DataFormat | None, base: int | float, where: str) -> tuple[dict[str, Any], ...]:
    """Rows expanded, each given its absolute time: its own `timestamp` (which resets the base),
    else `relative_time` after the previous row (the first: after the base), else the format's
    interval after the previous row (the first: the base itself)."""
    interval = fmt.historical_data_interval if fmt is not None else None
    out = []
    prev: int | float | None = None
    for i, item in enumerate(rows):
        w = f"{where}[{i}]"
        row = _expand(item, fmt, "historical", w)
        if ROW_TIMESTAMP in row:
            t = parse_time(row[ROW_TIMESTAMP], f"{w}.timestamp")
            if ROW_RELATIVE_TIME in row:  # an explicit time wins over a relative one
                _check_rel(row, w)
                del row[ROW_RELATIVE_TIME]
        elif ROW_RELATIVE_TIME in row:
            rel = _check_rel(row, w)
            t = whole((prev if prev is not None else base) + rel)
            del row[ROW_RELATIVE_TIME]
        elif interval is not None:
            t = base if prev is None else whole(prev + interval)
        else:
            raise MetricsError(
                "no_time",
                "this row has no timestamp or relative_time, and the data format defines no historical_data_interval",
                w,
            )
        row[ROW_TIMESTAMP] = t
        prev = t
        out.append(row)
    return tuple(out)


def _check_rel(row: dict[str, Any], where: str) -> int | float:
    rel = row[ROW_RELATIVE_TIME]
    if not is_number(rel):
        raise MetricsError(
            "wrong_type", f"relative_time must be a number of seconds, got {type_name(rel)}", f"{where}.relative_time"
        )
    return rel
