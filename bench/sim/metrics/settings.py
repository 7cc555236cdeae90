"""How the simulated device reports (the build's Metrics settings, changed by `METRICS CONFIG`
until the next boot) and which base URL it can use and keep."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

MODES = ("off", "direct", "bridge")
AUTH_METHODS = {"none", "sa", "ta", "ca", "da", "ra"}  # Metrics request auth (PROV, METRICS CONFIG auth=)
ENCODINGS = ("json", "cbor")
MAX_URL = 200
NO_URL = "-"  # `url=-`: no base URL (docs/protocol.md "Metrics sessions"), as METRICS CONFIG answers it
URL_USAGE = "url= must be http(s)://host[:port][/path], at most 200 characters, or - (no base URL)"


@dataclass(frozen=True)
class MetricsSettings:
    """How the device reports. The build's values come from FirmwareConfig; `METRICS CONFIG`
    changes mode, period, sample and encoding until the next boot."""

    mode: str = "off"  # off | direct (HTTP POST itself) | bridge (over the UART, relayed by the bench)
    period_s: float = 3600.0  # one session every period (MCU tick seconds)
    sample_s: int = 60  # one historical row every sample_s
    encoding: str = "json"  # json | cbor
    buffer_rows: int = 256  # rows held in RAM, in flight included
    request_rows: int = 64  # at most this many rows per request
    reply_timeout_s: float = 10.0  # direct: the device gives up on a reply after this long
    # The first row when logging starts, or one sample_s later: the specification leaves it to the
    # device (rows carry their own times). The virtual rig's build logs at once, so a test that
    # needs a row has it without waiting a whole interval after the factory reset.
    first_row_at_start: bool = False
    max_body_bytes: int = 6000  # a request body stays under this (its base64 fits a 8192-byte line)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"metrics mode {self.mode!r}; one of {', '.join(MODES)}")
        if not (isinstance(self.period_s, (int, float)) and 0.05 <= self.period_s <= 7 * 86400):
            raise ValueError("metrics period must be 0.05 .. 604800 seconds")
        if not isinstance(self.sample_s, int) or isinstance(self.sample_s, bool) or not 1 <= self.sample_s <= 86400:
            raise ValueError("metrics sample interval must be a whole number of seconds, 1 .. 86400")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"metrics encoding {self.encoding!r}; one of {', '.join(ENCODINGS)}")
        if not 2 <= self.buffer_rows <= 100_000:
            raise ValueError("metrics buffer must hold 2 .. 100000 rows")
        if not 1 <= self.request_rows < self.buffer_rows:
            raise ValueError("metrics rows per request must be 1 .. buffer_rows - 1")
        if not 0.05 <= self.reply_timeout_s <= 600:
            raise ValueError("metrics reply timeout must be 0.05 .. 600 seconds")
        if not 512 <= self.max_body_bytes <= 6000:
            raise ValueError("metrics request body limit must be 512 .. 6000 bytes")


def valid_base_url(url: Any) -> bool:
    """A URL the device can use and keep: http(s)://host[:port][/path], ASCII, no spaces or '='
    (the same text PROV url= could have given it), at most 200 characters."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL or not url.isascii():
        return False
    if any(c.isspace() or c == "=" for c in url):
        return False
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.query and not parts.fragment


def url_to_store(arg: str) -> str | None:
    """What a `url=` argument (PROV, METRICS CONFIG) stores: the URL, "" for `-` (none), or None
    for a value the protocol forbids (an empty one never reaches here: request_line refuses it)."""
    if arg == NO_URL:
        return ""
    return arg if valid_base_url(arg) else None
