"""The spec's example session, shared by the Metrics benchmarks: one hourly request carrying 30
readings (2-minute resolution) of 5 metrics, a few alarms and the token count, signed with
Recursive Data Auth; the server answers with one token (docs/metrics.md "Transport and size": the spec's "Purpose")."""

from __future__ import annotations

import random
from typing import Any

from bench.openpaygo.metrics.condense import BuiltRequest, build_request
from bench.openpaygo.metrics.format import DataFormat, parse_data_format
from bench.openpaygo.metrics.wire import Encoding
from bench.secret import Secret

SERIAL = "SIM000001"
KEY = Secret("a29ab82edc5fbbc41ec9530f6dac86b1")  # the public quick-test key (docs/tokens.md "Quick test")
STARTING_CODE = 123456789
METRICS = ["battery_voltage", "battery_current", "panel_voltage", "output_1_current", "output_2_current"]
FORMAT_JSON: dict[str, Any] = {
    "data_order": ["token_count", "tampered", "overload_alert", "low_battery_alert", "firmware_version"],
    "historical_data_order": METRICS,
    "historical_data_interval": -120,
    "variables": {
        m: {"name": m.replace("_", " ").title(), "type": "float", "unit": "V" if m.endswith("voltage") else "A"}
        for m in METRICS
    },
}


# The same readings as integers in hundredths, with scale_factor 0.01: what scale_factor is for
# ("put 12 in your variable to mean 1200"), and what lets CBOR beat JSON (small ints take 1-3
# bytes, while a float like 12.34 has no exact short form and takes 9).
FORMAT_SCALED_JSON: dict[str, Any] = {
    **FORMAT_JSON,
    "variables": {m: {**v, "type": "integer", "scale_factor": 0.01} for m, v in FORMAT_JSON["variables"].items()},
}


def session_format(fid: int = 1, scaled: bool = False) -> DataFormat:
    return parse_data_format(FORMAT_SCALED_JSON if scaled else FORMAT_JSON).with_id(fid)


def session_rows(seed: int = 0) -> list[dict[str, float]]:
    """30 rows of 5 readings with two decimals, newest first (interval -120 s)."""
    rng = random.Random(seed)
    return [
        {
            "battery_voltage": round(rng.uniform(11.5, 13.8), 2),
            "battery_current": round(rng.uniform(-3, 3), 2),
            "panel_voltage": round(rng.uniform(0, 21), 2),
            "output_1_current": round(rng.uniform(0, 2), 2),
            "output_2_current": round(rng.uniform(0, 2), 2),
        }
        for _ in range(30)
    ]


def session_request(
    variant: str,
    *,
    timestamp: int,
    request_count: int,
    token_count: int = 1,
    fmt: DataFormat | None = None,
    seed: int = 0,
) -> BuiltRequest:
    """variant: one of VARIANTS ("-scaled": integer hundredths with scale_factor 0.01)."""
    scaled = variant.endswith("-scaled")
    fmt = fmt or session_format(scaled=scaled)
    data = {
        "token_count": token_count,
        "tampered": False,
        "overload_alert": False,
        "low_battery_alert": True,
        "firmware_version": "1.14.2",
    }
    rows = session_rows(seed)
    if scaled:
        rows = [{k: round(v * 100) for k, v in r.items()} for r in rows]
    if variant.startswith("json-simple"):
        rows = [{**r, "timestamp": timestamp - 120 * i} for i, r in enumerate(rows)]
    return build_request(
        SERIAL,
        data=data,
        historical_data=rows,
        timestamp=timestamp,
        request_count=request_count,
        data_format=fmt,
        condensed="condensed" in variant,
        encoding=Encoding.CBOR if variant.startswith("cbor") else Encoding.JSON,
        auth_method="ra",
        key=KEY,
    )


VARIANTS = ("json-simple", "json-condensed", "cbor-condensed", "json-condensed-scaled", "cbor-condensed-scaled")
