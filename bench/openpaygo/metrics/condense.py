"""Simple -> condensed, and whole requests built for the wire (the device simulator's side).

A row is condensed to an array in the data format's order, or to an index-keyed object
(`{"6":1}`) when that is shorter or when it holds variables outside the order; a historical
row's `timestamp` is left out when the interval (or the request time, for the first row) gives
it anyway. Condensing an expanded request and expanding it again gives the same request."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.openpaygo.metrics.auth import MISSING, SignedFields, request_signature
from bench.openpaygo.metrics.codec import MetricsRequest, request_head
from bench.openpaygo.metrics.format import DataFormat
from bench.openpaygo.metrics.keys import (
    DATA_LONG_TO_SHORT,
    REQUEST_LONG_TO_SHORT,
    ROW_RELATIVE_TIME,
    ROW_TIMESTAMP,
)
from bench.openpaygo.metrics.timestamps import whole
from bench.openpaygo.metrics.wire import Encoding, canonical_json, encode
from bench.secret import Secret


def condense_row(values: Mapping[str, Any], order: Sequence[str | None]) -> list | dict:
    """{name: value} -> the shortest of the array and the index-keyed object for this order.
    Names outside the order stay names (short forms for token_count & co.)."""
    index = {name: i for i, name in enumerate(order) if name is not None}
    named = {k: v for k, v in values.items() if v is not None}
    obj = {(str(index[k]) if k in index else DATA_LONG_TO_SHORT.get(k, k)): v for k, v in named.items()}
    if not named or any(k not in index for k in named):
        return obj
    arr: list[Any] = [None] * (max(index[k] for k in named) + 1)
    for k, v in named.items():
        arr[index[k]] = v
    return arr if len(canonical_json(arr)) <= len(canonical_json(obj)) else obj


def _short_data(values: Mapping[str, Any]) -> dict:
    return {DATA_LONG_TO_SHORT.get(k, k): v for k, v in values.items() if v is not None}


def condense_rows(rows: Iterable[Mapping[str, Any]], fmt: DataFormat | None, base: float | int | None) -> list:
    """Historical rows -> condensed rows, dropping each timestamp the reader would derive."""
    interval = fmt.historical_data_interval if fmt is not None else None
    order = fmt.historical_data_order if fmt is not None else ()
    out: list = []
    prev: float | int | None = None  # the previous row's time as the reader computes it (None: unknown)
    for i, row in enumerate(rows):
        row = dict(row)
        start = base if i == 0 else prev
        expected = None if interval is None or start is None else (start if i == 0 else whole(start + interval))
        t = row.get(ROW_TIMESTAMP)
        rel = row.get(ROW_RELATIVE_TIME)
        if t is not None and rel is None and expected is not None and t == expected:
            del row[ROW_TIMESTAMP]
        if t is not None:
            prev = t
        elif rel is not None:
            prev = None if start is None else whole(start + rel)
        else:
            prev = expected
        out.append(condense_row(row, order) if order else _short_data(row))
    return out


def to_condensed(req: MetricsRequest, *, reference_time: float | int | None = None, auth: str | None = None) -> dict:
    """An expanded request -> its condensed form (short keys, rows in the format's order).
    `reference_time` stands for the reception time when the request carries no ts/dct."""
    fmt = req.data_format
    out = {REQUEST_LONG_TO_SHORT[k]: v for k, v in req.head().items()}
    if req.embedded_format and fmt is not None:
        out["dfo"] = fmt.to_json()
    elif req.data_format_id is not None:
        out["df"] = req.data_format_id
    if req.data is not None:
        out["d"] = (
            condense_row(req.data, fmt.data_order) if fmt is not None and fmt.data_order else _short_data(req.data)
        )
    if req.historical_data is not None:
        base = req.timestamp if req.timestamp is not None else req.data_collection_timestamp
        base = base if base is not None else reference_time
        out["hd"] = condense_rows(req.historical_data, fmt, base)
    if req.accessories:
        out["acc"] = [to_condensed(a, reference_time=reference_time) for a in req.accessories]
    if auth is not None:
        out["a"] = auth
    return out


@dataclass(frozen=True)
class BuiltRequest:
    """A request ready to POST: body bytes, its Content-Type, and the payload it encodes."""

    body: bytes
    content_type: str
    payload: dict


def build_request(
    serial_number: str,
    *,
    data: Mapping[str, Any] | None = None,
    historical_data: Sequence[Mapping[str, Any]] | None = None,
    timestamp: int | float | str | None = None,
    request_count: int | None = None,
    data_collection_timestamp: int | float | str | None = None,
    data_format: DataFormat | None = None,
    embed_format: bool = False,
    condensed: bool = True,
    encoding: Encoding = Encoding.JSON,
    auth_method: str | None = None,
    key: Secret | str | None = None,
    accessories: Sequence[Mapping[str, Any]] = (),
) -> BuiltRequest:
    """A Device Request Object as a device sends it. Condensed: short keys, `d`/`hd` in the
    format's order (`df` = data_format.id unless `embed_format`); simple: long keys, named
    variables. `auth_method` (sa/ta/ca/da/ra) signs with `key` over what is sent, as the
    reference does. `accessories` are payload dicts already in wire form."""
    if auth_method is not None and key is None:
        raise ValueError("a signed request needs the device key")
    long_to_wire = (lambda k: REQUEST_LONG_TO_SHORT[k]) if condensed else (lambda k: k)
    head = request_head(serial_number, timestamp, request_count, data_collection_timestamp)
    payload = {long_to_wire(k): v for k, v in head.items()}
    fmt = data_format
    if fmt is not None:
        if embed_format or fmt.id is None:
            payload[long_to_wire("data_format")] = fmt.to_json()
        else:
            payload[long_to_wire("data_format_id")] = fmt.id
    wire_d: Any = MISSING
    wire_hd: Any = MISSING
    if data is not None:
        if condensed:
            wire_d = condense_row(data, fmt.data_order) if fmt is not None and fmt.data_order else _short_data(data)
        else:
            wire_d = dict(data)
        payload[long_to_wire("data")] = wire_d
    if historical_data is not None:
        if condensed:
            base = timestamp if isinstance(timestamp, (int, float)) else None
            wire_hd = condense_rows(historical_data, fmt, base)
        else:
            wire_hd = [dict(r) for r in historical_data]
        payload[long_to_wire("historical_data")] = wire_hd
    if accessories:
        payload[long_to_wire("accessories")] = [dict(a) for a in accessories]
    if auth_method is not None:
        signed = SignedFields(serial_number, timestamp, request_count, wire_d, wire_hd)
        payload[long_to_wire("auth")] = request_signature(signed, auth_method, key)  # type: ignore[arg-type]
    return BuiltRequest(encode(payload, encoding), encoding.content_type, payload)
