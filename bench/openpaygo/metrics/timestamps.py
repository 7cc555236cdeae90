"""Times in Metrics payloads: UNIX numbers (v1.0) or ISO 8601 strings (v0.11 `ts`, e.g.
"2018-06-30T23:58:59Z"), read into UNIX seconds. A time without a zone is UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bench.openpaygo.metrics.errors import MetricsError
from bench.openpaygo.metrics.format import is_number, type_name

MAX_UNIX = 253402300799  # 9999-12-31T23:59:59Z: the last second ISO 8601 and datetime can show


def whole(value: float | int) -> float | int:
    """An integral float as an int (1611583070.0 -> 1611583070), anything else unchanged."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def parse_iso(text: str, where: str) -> datetime:
    """ISO 8601 / RFC 3339 text -> aware UTC datetime."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise MetricsError(
            "bad_value", f"{text[:40]!r} is not an ISO 8601 date and time (e.g. 2018-06-30T23:58:59Z)", where
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def parse_time(value: Any, where: str, *, signed: bool = False) -> float | int:
    """A UNIX time: a number (>= 0 unless `signed`) or an ISO 8601 string."""
    if isinstance(value, str):
        return whole(parse_iso(value, where).timestamp())
    if not is_number(value):
        raise MetricsError(
            "wrong_type", f"a time must be a UNIX number or an ISO 8601 string, got {type_name(value)}", where
        )
    low = -MAX_UNIX if signed else 0
    if not low <= value <= MAX_UNIX:
        raise MetricsError("bad_value", f"time {value!r} is outside {low}..{MAX_UNIX}", where)
    return whole(value)


def iso_utc(unix: float | int) -> str:
    """UNIX seconds -> "2021-01-25T13:57:50Z" (microseconds kept when present)."""
    dt = datetime.fromtimestamp(unix, tz=UTC)
    return dt.isoformat().replace("+00:00", "Z")
