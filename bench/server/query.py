"""GET /device_data: stored requests cut to a time range, in the simple format.

A stored request is kept if any of its data falls in [start, end]: its `data` (timed by ts,
else dct, else reception) and/or the historical rows whose `timestamp` is in range. Accessories
are cut the same way."""

from __future__ import annotations

from typing import Any


def cut(simple: dict[str, Any], received: float, start: float, end: float) -> dict[str, Any] | None:
    """The request with only what lies in [start, end], or None if nothing does."""
    out = {k: v for k, v in simple.items() if k not in ("data", "historical_data", "accessories")}
    data_time = simple.get("timestamp", simple.get("data_collection_timestamp", int(received)))
    keep = False
    if "data" in simple and isinstance(data_time, (int, float)) and start <= data_time <= end:
        out["data"] = simple["data"]
        keep = True
    rows = [r for r in simple.get("historical_data", []) if start <= r.get("timestamp", start - 1) <= end]
    if rows:
        out["historical_data"] = rows
        keep = True
    accessories = [a for a in (cut(a, received, start, end) for a in simple.get("accessories", [])) if a]
    if accessories:
        out["accessories"] = accessories
        keep = True
    return out if keep else None
