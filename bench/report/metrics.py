"""The run's OpenPAYGO Metrics evidence in the report: the requests the bench's Metrics server
captured, as an HTML table (pytest-html extra) and a CSV, and the historical series the device
reported as a plot. It renders the plain data bench/server/evidence.py makes of the stored
requests; it reads nothing of the server itself.

Nothing secret reaches it (device keys and the Authorization header are never stored, docs/server.md
"Storage"; a payload signature is not shown); as a last guard, anything shaped like a JWT in a
displayed text is masked, and a CSV cell that a spreadsheet would run as a formula is quoted.
"""

from __future__ import annotations

import csv
import html
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from bench.report.plots import metrics_series_plot

CSV_COLUMNS = (
    "id",
    "received_at",
    "method",
    "route",
    "kind",
    "status",
    "verdict",
    "error_code",
    "serial_number",
    "request_count",
    "timestamp",
    "auth",
    "hd_rows",
    "body_bytes",
    "body_stored_bytes",
    "reply_bytes",
    "tokens",
)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


class MetricsEvidenceLike(Protocol):
    """bench/server/evidence.py's MetricsEvidence, as the report reads it."""

    @property
    def requests(self) -> list[dict[str, Any]]: ...
    @property
    def series(self) -> dict[str, list[tuple[float, float]]]: ...
    @property
    def units(self) -> dict[str, str]: ...


def mask_secrets(text: str) -> str:
    """Text with anything shaped like a JWT replaced."""
    return _JWT.sub("JWT(masked)", text)


def _text(value: Any) -> str:
    return "" if value is None else mask_secrets(str(value))


# -- the table ---------------------------------------------------------------------------------


def requests_table_html(requests: Sequence[dict[str, Any]], *, limit: int = 200) -> str:
    """One row per request (the first `limit`, then a line saying how many were left out),
    every text HTML-escaped. `requests`: the summaries of bench/server/evidence.py."""
    head = (
        "<tr><th>received (UTC)</th><th>route</th><th>status</th><th>serial</th><th>rc</th><th>ts</th>"
        "<th>auth</th><th>rows in hd</th><th>bytes in / out</th><th>tokens answered</th></tr>"
    )
    rows = []
    for s in requests[: max(0, limit)]:
        status = f"{s['status']}" + (f" {s['error_code']}" if s["error_code"] else "")
        colour = "green" if s["verdict"] == "accepted" else "red"
        cells = (
            s["received_at"],
            f"{s['method']} {s['route']}",
            status,
            s["serial_number"],
            s["request_count"],
            s["timestamp"],
            s["auth"],
            s["hd_rows"],
            f"{_body_bytes(s)} / {s['reply_bytes']}",
            s["tokens"],
        )
        tds = "".join(
            f"<td style='color:{colour}'>{html.escape(_text(c))}</td>"
            if i == 2
            else f"<td>{html.escape(_text(c))}</td>"
            for i, c in enumerate(cells)
        )
        rows.append(f"<tr>{tds}</tr>")
    more = ""
    if len(requests) > limit:
        more = f"<p>{len(requests) - max(0, limit)} more request(s) not shown (see the CSV).</p>"
    return f"<table class='metrics-requests'>{head}{''.join(rows)}</table>{more}"


def _body_bytes(s: dict[str, Any]) -> str:
    """The body's length, saying so when the server kept only an excerpt of it (a refusal)."""
    stored = s.get("body_stored_bytes")
    if stored is None or stored >= s["body_bytes"]:
        return f"{s['body_bytes']}"
    return f"{s['body_bytes']} (only the first {stored} stored)"


# -- files -------------------------------------------------------------------------------------


def _csv_cell(value: Any) -> Any:
    """A value safe to open in a spreadsheet: text that would start a formula gets a quote."""
    if isinstance(value, str):
        value = mask_secrets(value)
        if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
            return "'" + value
    return "" if value is None else value


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "metrics"


def write_metrics_evidence(
    directory: Path, evidence: MetricsEvidenceLike, name: str, *, plot: bool = True, title: str | None = None
) -> list[Path]:
    """`<name>-requests.csv` (one line per request, CSV_COLUMNS) and, with `plot` and any
    historical rows, `<name>-series.png` (titled `title`, default `name`); the files written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    base = _safe_name(name)
    out = []
    csv_path = directory / f"{base}-requests.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for s in evidence.requests:
            writer.writerow([_csv_cell(s[c]) for c in CSV_COLUMNS])
    out.append(csv_path)
    if plot:
        series = evidence.series
        if series:
            first = min(points[0][0] for points in series.values())
            start = datetime.fromtimestamp(first, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            out.append(
                metrics_series_plot(
                    directory / f"{base}-series.png",
                    series,
                    f"{title or name}: historical data from {start}",
                    units=evidence.units,
                )
            )
    return out
