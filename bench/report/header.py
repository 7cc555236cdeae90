"""The report's header: the verdict first (what the run found, the DUT, the station, how much
of the suite profile's required tests it covered and where the supply was left), then what was tested, where, by whom, with
what, as the run record holds it (bench/record) -- the DUT as it described itself, not as the
rig file says it should be -- then the required tests that did not run and pass, and the device
tests this DUT could not be given (not covered: it lacks the capability)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from bench.record.model import RunRecord
from bench.record.verdict import BENCH_ERROR, FAILED, INCOMPLETE, PASSED
from bench.secret import Secret, mask

VERDICT_COLOURS = {PASSED: "#1a7f37", FAILED: "#cf222e", INCOMPLETE: "#b35900", BENCH_ERROR: "#57606a"}
RUNNING_COLOUR = "#57606a"
MAX_MISSING_SHOWN = 100


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
    rows += [
        _row("DUT model" + src, ident.model),
        _row("DUT firmware" + src, ident.firmware),
        _row("DUT protocol" + src, ident.protocol),
        _row("DUT serial" + src, serial),
    ]
    if ident.capabilities is not None:
        rows.append(_row("DUT capabilities" + src, ", ".join(ident.capabilities)))
    if d.hardware_model or d.firmware_version:
        rows.append(
            _row("pinned in the rig file", f"model {d.hardware_model or '-'}, firmware {d.firmware_version or '-'}")
        )
    return rows


def dut_serial(record: RunRecord) -> str:
    """The serial the DUT reported, else the one the rig's profile gives it."""
    ident = record.dut.identity
    return (ident.serial_number if ident is not None and ident.serial_number else None) or record.dut.profile_serial


def coverage_text(record: RunRecord) -> str:
    return f"{record.suite.covered} of {record.suite.required} required (suite {record.suite.name})"


def title_text(record: RunRecord, secrets: Iterable[Secret | str | None] = ()) -> str:
    """The page title: verdict, DUT, station and coverage, as a browser tab or a file list shows it."""
    verdict = record.verdict or "RUNNING"
    return mask(
        f"{verdict} - DUT {dut_serial(record)} - station {record.station.id} - {coverage_text(record)}", secrets
    )


def supply_text(record: RunRecord) -> str:
    """Where the run left the supply (its safe state, as measured), or why that is not known."""
    if record.safe_state is not None:
        return record.safe_state.line()
    if record.verdict is None:
        return "not known yet: the run has not ended"
    return "not switched by this run (no test opened the PSU)"


def verdict_html(record: RunRecord) -> str:
    verdict = record.verdict or "RUNNING"
    colour = VERDICT_COLOURS.get(verdict, RUNNING_COLOUR)
    reason = record.verdict_reason or "the run has not ended"
    rows = [
        _row("verdict", f"{verdict}: {reason}"),
        _row("DUT serial", dut_serial(record)),
        _row("station", record.station.id),
        _row("coverage", f"{coverage_text(record)}: {record.suite.title}"),
        _row("supply at the end", supply_text(record)),
    ]
    return (
        f"<h2 class='paygo-verdict' style='color:#fff;background:{colour};padding:6px 12px;display:inline-block'>"
        f"{html.escape(verdict)}</h2><table class='paygo-verdict-summary'>{''.join(rows)}</table>"
    )


def _missing_html(record: RunRecord) -> str:
    missing = record.suite.missing
    if not missing:
        return ""
    items = "".join(
        f"<li><code>{html.escape(m.nodeid)}</code>: {html.escape(m.why)}</li>" for m in missing[:MAX_MISSING_SHOWN]
    )
    more = (
        f"<p>... and {len(missing) - MAX_MISSING_SHOWN} more (record.json lists them all)</p>"
        if len(missing) > MAX_MISSING_SHOWN
        else ""
    )
    return (
        f"<h2>Required, not passed ({len(missing)})</h2><p>Tests the suite profile "
        f"<code>{html.escape(record.suite.name)}</code> requires that did not run and pass:</p>"
        f"<ul class='paygo-missing'>{items}</ul>{more}"
    )


def run_header_html(
    record: RunRecord, not_covered: Sequence[tuple[str, str]] = (), secrets: Iterable[Secret | str | None] = ()
) -> str:
    """The verdict, a table of the run's identity, then the missing and not-covered lists; every
    text escaped, secrets masked (none belongs here; a DUT that echoes its key must not leak it)."""
    s = record.station
    rows = _dut_rows(record) + [
        _row("station", f"{s.id}{' (' + s.location + ')' if s.location else ''} on {s.host}"),
        _row("operator", s.operator or "not given (--operator)"),
        _row("rig file", s.rig_file or "built-in virtual rig"),
        _row("rig file SHA-256", s.rig_sha256),
        _row("bench version", record.bench_version),
        _row(
            "test spec",
            f"{record.spec.path} ({record.spec.product}, version {record.spec.version or '-'})"
            if record.spec is not None
            else "none: each test's own limits",
        ),
        _row("run id", record.run_id),
        _row("started (UTC)", record.started_at.strftime("%Y-%m-%d %H:%M:%S")),
    ]
    if record.ledger is not None:
        led = record.ledger
        how = "each test factory-resets the DUT" if led.mode == "fresh" else f"tests continue from it; {led.bring_up}"
        rows.append(_row("device ledger", f"{led.path}: {how}"))
        rows += [_row("ledger finding", finding) for finding in led.findings]
    if s.virtual and s.sim_faults:
        rows.append(_row("simulator faults switched on", ", ".join(s.sim_faults)))
    for inst in record.instruments:
        rows.append(
            _row(
                f"{inst.role} *IDN?",
                f"{inst.idn or 'not asked'} ({inst.resource}, {inst.profile}, channel {inst.channel})",
            )
        )
    out = verdict_html(record) + "<h2>Run</h2><table class='paygo-run-header'>" + "".join(rows) + "</table>"
    out += _missing_html(record)
    if not_covered:
        items = "".join(f"<li><code>{html.escape(n)}</code>: {html.escape(r)}</li>" for n, r in not_covered)
        out += (
            f"<h2>Not covered ({len(not_covered)})</h2><p>Device tests this DUT could not be given "
            f"(skipped, not passed):</p><ul class='paygo-not-covered'>{items}</ul>"
        )
    return mask(out, secrets)
