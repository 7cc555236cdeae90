"""The report's header: what was tested, where, by whom, with what, as the run record holds it
(bench/record) -- the DUT as it described itself, not as the rig file says it should be -- and
the device tests this DUT could not be given (not covered: it lacks the capability)."""

from __future__ import annotations

import html
from typing import Iterable, Sequence

from bench.record.model import RunRecord
from bench.secret import Secret, mask


def _row(name: str, value: object) -> str:
    text = "-" if value in (None, "", []) else str(value)
    return f"<tr><th style='text-align:left'>{html.escape(name)}</th><td>{html.escape(text)}</td></tr>"


def _dut_rows(record: RunRecord) -> list[str]:
    d, ident = record.dut, record.dut.identity
    rows = [_row("DUT adapter", d.adapter), _row("DUT profile serial (rig file)", d.profile_serial)]
    if ident is None:
        return rows + [_row("DUT identity", "not read (the rig never came up, or the DUT reports none)")]
    src = f" (from its {ident.source})"
    serial = ident.serial_number or ("not provisioned at bring-up" if ident.source == "ID" else "not reported")
    rows += [_row("DUT model" + src, ident.model), _row("DUT firmware" + src, ident.firmware),
             _row("DUT protocol" + src, ident.protocol), _row("DUT serial" + src, serial)]
    if ident.capabilities is not None:
        rows.append(_row("DUT capabilities" + src, ", ".join(ident.capabilities)))
    if d.hardware_model or d.firmware_version:
        rows.append(_row("pinned in the rig file", f"model {d.hardware_model or '-'}, firmware {d.firmware_version or '-'}"))
    return rows


def run_header_html(record: RunRecord, not_covered: Sequence[tuple[str, str]] = (),
                    secrets: Iterable[Secret | str | None] = ()) -> str:
    """A table of the run's identity, then the not-covered list; every text escaped, secrets
    masked (none belongs here; a DUT that echoes its key in its ID must not leak it)."""
    s = record.station
    rows = _dut_rows(record) + [
        _row("station", f"{s.id}{' (' + s.location + ')' if s.location else ''} on {s.host}"),
        _row("operator", s.operator or "not given (--operator)"),
        _row("rig file", s.rig_file or "built-in virtual rig"),
        _row("rig file SHA-256", s.rig_sha256),
        _row("bench version", record.bench_version),
        _row("test spec", f"{record.spec.path} ({record.spec.product}, version {record.spec.version or '-'})"
             if record.spec is not None else "none: each test's own limits"),
        _row("run id", record.run_id),
        _row("started (UTC)", record.started_at.strftime("%Y-%m-%d %H:%M:%S")),
    ]
    if s.virtual and s.sim_faults:
        rows.append(_row("simulator faults switched on", ", ".join(s.sim_faults)))
    for inst in record.instruments:
        rows.append(_row(f"{inst.role} *IDN?", f"{inst.idn or 'not asked'} ({inst.resource}, {inst.profile}, "
                                              f"channel {inst.channel})"))
    out = "<h2>Run</h2><table class='paygo-run-header'>" + "".join(rows) + "</table>"
    if not_covered:
        items = "".join(f"<li><code>{html.escape(n)}</code>: {html.escape(r)}</li>" for n, r in not_covered)
        out += (f"<h2>Not covered ({len(not_covered)})</h2><p>Device tests this DUT could not be given "
                f"(skipped, not passed):</p><ul class='paygo-not-covered'>{items}</ul>")
    return mask(out, secrets)
