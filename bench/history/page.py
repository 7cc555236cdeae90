"""The history as one self-contained HTML page (reports/history/index.html): the table, new
failures, fixes, flaky tests and the trend plot inline as base64, so it can be mailed or archived
alone. Every text from a record is escaped."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from bench.history.view import (
    MATRIX_HEADER,
    NUMERIC_FROM,
    HistoryView,
    matrix_rows,
    no_comparison,
    rig_label,
    table_rows,
)

_STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px}td.n{text-align:right;font-family:monospace}
tr.failed td{background:#fde8e8}tr.incomplete td,tr.running td{background:#fff6dc}
tr.bench-error td{background:#eceff1}td.verdict{font-weight:bold}
.fail{color:#b00;font-weight:bold}code{font-size:12px}img{max-width:100%}"""


def render(view: HistoryView, png: Path | None) -> str:
    header, rows = table_rows(view)
    reasons = {d.run.run_id: d.run.verdict_reason or d.run.status_reason or "" for d in view.runs}
    body = ["<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = "n" + (" fail" if cell.endswith("!") else "") if i >= NUMERIC_FROM else ("verdict" if i == 2 else "")
            title = f' title="{escape(reasons[row[0]])}"' if i == 2 and reasons[row[0]] else ""
            cells.append(f'<td class="{cls}"{title}>{escape(cell)}</td>')
        body.append(f'<tr class="{escape(row[2].lower().replace(" ", "-"))}">' + "".join(cells) + "</tr>")
    body.append("</table>")
    body.append(
        f"<p>{len(view.runs)} of {view.total_runs} runs; required = of the suite's required tests, how many "
        "ran and passed (the verdict's reason on hover); <span class=fail>!</span> = outside its limits; "
        "n/c = not covered.</p>"
    )
    by_id = {d.run.run_id: d.run for d in view.runs}
    for ch in view.changes:
        where = escape(rig_label(by_id[ch.run_id])) if ch.run_id in by_id else ""
        body.append(f"<h2>{escape(ch.run_id)} <small>({where})</small></h2>")
        if ch.previous_id is None:
            text = no_comparison(ch)
            body.append(f"<p>{escape(text[:1].upper() + text[1:])}.</p>")
            continue
        body.append(f"<h3>New failures since {escape(ch.previous_id)}</h3>")
        body.append(
            _list(
                [
                    f"<code>{escape(c.nodeid)}</code> ({escape(c.before)} → {escape(c.now)}): {escape(c.reason or '')}"
                    for c in ch.new_failures
                ]
            )
        )
        body.append("<h3>Fixed</h3>")
        body.append(
            _list([f"<code>{escape(c.nodeid)}</code> ({escape(c.before)} → {escape(c.now)})" for c in ch.fixed])
        )
    body.append(
        "<h2>Flaky tests</h2><p>Failed, then passed on a rerun with no rig, bench or DUT change (docs/history.md).</p>"
    )
    body.append(
        _list(
            [
                f"<code>{escape(f.nodeid)}</code>: "
                + "; ".join(f"failed in {escape(x.failed_in)}, passed in {escape(x.passed_in)}" for x in f.flips)
                for f in view.flaky
            ]
        )
    )
    if view.matrix:
        body.append("<h2>Firmware x suite profile</h2><p>Every station's runs: verdict counts and the newest run.</p>")
        body.append("<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in MATRIX_HEADER) + "</tr>")
        for row in matrix_rows(view):
            body.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
        body.append("</table>")
    if png is not None and png.is_file():
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        body.append(
            f'<h2>Trend</h2><img alt="trend of {escape(", ".join(view.measures))}" src="data:image/png;base64,{data}">'
        )
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>paygo-bench history</title>"
        f"<style>{_STYLE}</style></head><body><h1>paygo-bench history</h1><p>Made {made}.</p>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>" if items else "<p>None.</p>"
