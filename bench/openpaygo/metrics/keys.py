"""Every short key of both spec versions (v0.11 draft and v1.0.0-rc1), in one place.

openpaygo 0.6.3 spells data_collection_timestamp's short key `dtc` where the spec says `dct`
("dtc for dct" in docs/metrics.md): both are read, `dct` is written."""

from __future__ import annotations

REQUEST_LONG_TO_SHORT = {
    "serial_number": "sn",
    "data": "d",
    "historical_data": "hd",
    "timestamp": "ts",
    "request_count": "rc",
    "data_collection_timestamp": "dct",
    "auth": "a",
    "data_format_id": "df",
    "data_format": "dfo",
    "accessories": "acc",
}
REQUEST_SHORT_TO_LONG = {v: k for k, v in REQUEST_LONG_TO_SHORT.items()}
REQUEST_SHORT_TO_LONG["dtc"] = "data_collection_timestamp"  # openpaygo's spelling ("dtc for dct")

REPLY_LONG_TO_SHORT = {
    "serial_number": "sn",
    "token_list": "tkl",
    "active_until_timestamp": "auts",
    "active_seconds_left": "asl",
    "settings": "st",
    "extra_data": "ed",
    "auth": "a",
}
REPLY_SHORT_TO_LONG = {v: k for k, v in REPLY_LONG_TO_SHORT.items()}

DATA_LONG_TO_SHORT = {
    "token_count": "tc",
    "active_until_timestamp_requested": "autsr",
    "active_seconds_left_requested": "aslr",
}
DATA_SHORT_TO_LONG = {v: k for k, v in DATA_LONG_TO_SHORT.items()}

# Time keys of a data row (never shortened).
ROW_TIMESTAMP = "timestamp"
ROW_RELATIVE_TIME = "relative_time"
