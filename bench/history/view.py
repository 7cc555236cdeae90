"""What `paygo-bench history` shows, gathered once and rendered as text (here) or HTML (page.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.history.analysis import FirmwareSuite, FlakyTest, KeyValue, RunChanges, key_value
from bench.history.model import RunData, RunRow


@dataclass(frozen=True)
class HistoryView:
    runs: tuple[RunData, ...]  # the window, oldest first
    measures: tuple[str, ...]  # key measurement names (globs allowed)
    units: dict[str, str]
    changes: tuple[RunChanges, ...]  # each station/rig/suite's newest run against its last comparable run
    flaky: tuple[FlakyTest, ...]
    total_runs: int  # matching runs before --last
    matrix: tuple[FirmwareSuite, ...] = ()  # every matching run (not only the window): firmware x suite


def format_value(kv: KeyValue | None) -> str:
    """4 significant digits; `!` marks a value outside its limits."""
    if kv is None:
        return "-"
    text = f"{kv.value:.4g}" if kv.value is not None else (kv.text or "null")
    return text + ("!" if kv.outcome == "FAIL" else "")


def column_title(spec: str, units: dict[str, str]) -> str:
    unit = units.get(spec)
    return f"{spec} ({unit})" if unit else spec


def started(run: RunRow) -> str:
    return run.started_at.strftime("%Y-%m-%d %H:%M:%S")


def rig_label(run: RunRow) -> str:
    rig = f"rig {run.rig_sha256[:12]}" if run.rig_sha256 else "built-in rig"
    return f"station {run.station}, {rig}, suite {run.suite or 'unknown'}"


def verdict_text(run: RunRow) -> str:
    """The verdict; a run with none is still running, or was killed (its record says running)."""
    return run.verdict or run.status


def coverage_text(run: RunRow) -> str:
    """n/m: of the tests the suite profile required, how many ran and passed ("-": a 1.x record)."""
    return "-" if run.suite_required is None else f"{run.suite_covered}/{run.suite_required}"


NUMERIC_FROM = 4  # the first column aligned right


def table_rows(view: HistoryView) -> tuple[list[str], list[list[str]]]:
    header = ["run id", "started (UTC)", "verdict", "suite", "required", "pass", "fail", "error", "n/c"]
    header += [column_title(s, view.units) for s in view.measures]
    rows = []
    for data in view.runs:
        r = data.run
        rows.append(
            [
                r.run_id,
                started(r),
                verdict_text(r),
                r.suite or "-",
                coverage_text(r),
                str(r.counts.passed),
                str(r.counts.failed),
                str(r.counts.error),
                str(r.counts.not_covered),
            ]
            + [format_value(key_value(data.measurements, s)) for s in view.measures]
        )
    return header, rows


def no_comparison(ch: RunChanges) -> str:
    if ch.earlier == 0:
        return "the first run of this station, rig file and suite: nothing to compare with"
    return (
        f"none of the {ch.earlier} earlier run{'s' * (ch.earlier != 1)} of this station, rig file and suite "
        "was given the same tests: nothing to compare with"
    )


MATRIX_HEADER = ["product", "firmware", "suite", "passed", "failed", "incomplete", "bench error", "running"]
MATRIX_HEADER += ["stations", "last run", "last verdict"]


def matrix_rows(view: HistoryView) -> list[list[str]]:
    return [
        [
            e.product or "-",
            e.firmware or "-",
            e.suite or "-",
            *(str(n) for n in (e.passed, e.failed, e.incomplete, e.bench_error, e.running)),
            ",".join(e.stations),
            e.last_run,
            e.last_verdict,
        ]
        for e in view.matrix
    ]


def _table(header: list[str], rows: list[list[str]], numeric: set[int]) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    return [line(header)] + [line(r) for r in rows]


def text_report(view: HistoryView) -> str:
    header, rows = table_rows(view)
    out = _table(header, rows, set(range(NUMERIC_FROM, len(header))))
    shown = len(view.runs)
    out.append(
        f"{shown} run{'s' * (shown != 1)}"
        + (f" (last {shown} of {view.total_runs})" if shown < view.total_runs else "")
        + "; required = of the suite's required tests, how many ran and passed; ! = outside its limits; "
        "n/c = not covered"
    )
    by_id = {d.run.run_id: d.run for d in view.runs}
    for ch in view.changes:
        run = by_id.get(ch.run_id)
        where = f" ({rig_label(run)})" if run else ""
        out.append("")
        if ch.previous_id is None:
            out.append(f"{ch.run_id}{where}: {no_comparison(ch)}")
            continue
        out.append(f"new failures in {ch.run_id} since {ch.previous_id}{where}: {len(ch.new_failures) or 'none'}")
        out += [f"  {c.nodeid} ({c.before} -> {c.now}): {c.reason or ''}".rstrip(": ") for c in ch.new_failures]
        out.append(f"fixed in {ch.run_id}: {len(ch.fixed) or 'none'}")
        out += [f"  {c.nodeid} ({c.before} -> {c.now})" for c in ch.fixed]
    out.append("")
    out.append(f"flaky (failed, then passed on a rerun with no rig, bench or DUT change): {len(view.flaky) or 'none'}")
    for f in view.flaky:
        runs = ", ".join(f"{x.failed_in} -> {x.passed_in}" for x in f.flips)
        out.append(f"  {f.nodeid}: {len(f.flips)}x ({runs})")
    if view.matrix:
        out.append("")
        n = view.total_runs
        out.append(f"firmware x suite profile, every station ({n} run{'s' * (n != 1)}; verdict counts, newest run):")
        out += ["  " + x for x in _table(MATRIX_HEADER, matrix_rows(view), set(range(3, 8)))]
    return "\n".join(out)
