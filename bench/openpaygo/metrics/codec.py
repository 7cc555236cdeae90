"""OpenPAYGO Metrics requests: a request body (JSON or CBOR, simple or condensed, v0.11 or v1.0)
parsed into a typed `MetricsRequest` whose data is expanded to the simple form, and back.

Expansion is complete, unlike openpaygo's (docs/metrics.md "openpaygo 0.6.3: what the bench does
not inherit"): short keys inside `d` objects ("Short keys in d"), `dct` and `dtc` ("dtc for
dct"), index-keyed objects in `d` as well as `hd`, data arrays and index keys checked against the
order, declared variable types checked, row times from `timestamp` (number or ISO),
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
    parse_data_format,
    type_name,
)
from bench.openpaygo.metrics.keys import (
    REQUEST_SHORT_TO_LONG,
    ROW_TIMESTAMP,
)
from bench.openpaygo.metrics.rows import expand, historical
from bench.openpaygo.metrics.timestamps import parse_time
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
# A request count a server keeps to guard against replays: a 64-bit signed integer, as SQLite
# stores it (no device counter comes near it).
MAX_REQUEST_COUNT = 2**63 - 1
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
    """The device's own text of ts, rc, d, hd and each row, for signature checks ("Re-dumped JSON" in
    docs/metrics.md)."""
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
    f = _Fields.of(value, f"{where}." if where else "")
    sn = _serial_number(f)
    ts = parse_time(f.values["timestamp"], f.at("timestamp")) if "timestamp" in f.values else None
    dct = (
        parse_time(f.values["data_collection_timestamp"], f.at("data_collection_timestamp"))
        if "data_collection_timestamp" in f.values
        else None
    )
    rc = _request_count(f)
    auth = f.values.get("auth")
    if "auth" in f.values and not isinstance(auth, str):
        raise MetricsError("wrong_type", f"auth must be a string, got {type_name(auth)}", f.at("auth"))
    fmt = _data_format(f, formats)
    base = ts if ts is not None else dct if dct is not None else int(received_at)
    data = expand(f.values["data"], fmt, "data", f.at("data")) if "data" in f.values else None
    hd_value = f.values.get("historical_data", MISSING)
    rows = _historical_rows(f, hd_value, fmt, base)
    if not data and not rows:
        raise MetricsError("no_data", "at least one of data (d) and historical_data (hd) must carry something", root)
    signed = SignedFields(
        sn, f.values.get("timestamp"), rc, f.values.get("data", MISSING), hd_value, raw if depth == 0 else None
    )
    return MetricsRequest(
        serial_number=sn,
        data=data,
        historical_data=rows,
        timestamp=ts,
        request_count=rc,
        data_collection_timestamp=dct,
        auth=auth,
        data_format_id=f.values.get("data_format_id") if "data_format_id" in f.values else None,
        data_format=fmt,
        embedded_format="data_format" in f.values,
        accessories=_accessories(f, formats, received_at, depth),
        condensed_keys=f.short_used or not f.long_used,
        data_time=base,
        signed=signed,
    )


@dataclass
class _Fields:
    """A request object's fields by long name, with the key each was sent as (for errors)."""

    values: dict[str, Any]
    shown: dict[str, str]
    prefix: str
    short_used: bool
    long_used: bool

    @classmethod
    def of(cls, value: dict, prefix: str) -> _Fields:
        values: dict[str, Any] = {}
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
                    prefix + key[:40],
                )
            if name in values:
                raise MetricsError(
                    "duplicate_field", f"{name} given twice (as {shown[name]!r} and {key!r})", prefix + key
                )
            values[name], shown[name] = v, key
        return cls(values, shown, prefix, short_used, long_used)

    def at(self, name: str) -> str:
        return self.prefix + self.shown.get(name, name)


def _serial_number(f: _Fields) -> str:
    if "serial_number" not in f.values:
        raise MetricsError("missing_field", "serial_number (sn) is required", f.prefix + "sn")
    sn = f.values["serial_number"]
    if not isinstance(sn, str):
        raise MetricsError("wrong_type", f"serial_number must be a string, got {type_name(sn)}", f.at("serial_number"))
    if not sn or len(sn) > MAX_SERIAL or _CONTROL.search(sn):
        raise MetricsError(
            "bad_value", f"serial_number must be 1..{MAX_SERIAL} printable characters", f.at("serial_number")
        )
    return sn


def _request_count(f: _Fields) -> int | None:
    rc = f.values.get("request_count")
    if rc is not None or "request_count" in f.values:
        if not isinstance(rc, int) or isinstance(rc, bool) or rc < 0:
            raise MetricsError(
                "wrong_type", f"request_count must be a whole number >= 0, got {type_name(rc)}", f.at("request_count")
            )
        if rc > MAX_REQUEST_COUNT:
            raise MetricsError(
                "bad_value", f"request_count {rc} is above {MAX_REQUEST_COUNT}, the largest kept", f.at("request_count")
            )
    return rc


def _data_format(f: _Fields, formats: FormatLookup) -> DataFormat | None:
    """The request's data format: registered (df) or embedded (dfo), never both."""
    if "data_format_id" in f.values and "data_format" in f.values:
        raise MetricsError(
            "both_data_formats",
            "data_format_id (df) and data_format (dfo) given together; send one",
            f.at("data_format"),
        )
    if "data_format_id" in f.values:
        df = f.values["data_format_id"]
        if not isinstance(df, int) or isinstance(df, bool) or df < 0:
            raise MetricsError(
                "wrong_type", f"data_format_id must be a whole number, got {type_name(df)}", f.at("data_format_id")
            )
        fmt = formats(df)
        if fmt is None:
            raise MetricsError(
                "unknown_data_format",
                f"no data format {df} is registered on this server; POST it to /data_format first",
                f.at("data_format_id"),
            )
        return fmt
    if "data_format" in f.values:
        return parse_data_format(f.values["data_format"], f.at("data_format"))
    return None


def _historical_rows(
    f: _Fields, hd_value: Any, fmt: DataFormat | None, base: int | float
) -> tuple[dict[str, Any], ...] | None:
    if hd_value is MISSING:
        return None
    if hd_value == {}:  # openpaygo's simple payload sends "historical_data": {} when unset
        return ()
    if not isinstance(hd_value, list):
        raise MetricsError(
            "wrong_type",
            f"historical_data must be an array of rows, got {type_name(hd_value)}",
            f.at("historical_data"),
        )
    return historical(hd_value, fmt, base, f.at("historical_data"))


def _accessories(f: _Fields, formats: FormatLookup, received_at: float, depth: int) -> tuple[MetricsRequest, ...]:
    if "accessories" not in f.values:
        return ()
    acc = f.values["accessories"]
    if not isinstance(acc, list):
        raise MetricsError(
            "wrong_type",
            f"accessories must be an array of Device Request Objects, got {type_name(acc)}",
            f.at("accessories"),
        )
    if acc and depth >= MAX_ACCESSORY_DEPTH:
        raise MetricsError(
            "too_deep", f"accessories nested deeper than {MAX_ACCESSORY_DEPTH} levels", f.at("accessories")
        )
    where = f.at("accessories")
    return tuple(
        parse_request(item, formats=formats, received_at=received_at, where=f"{where}[{i}]", depth=depth + 1)
        for i, item in enumerate(acc)
    )
