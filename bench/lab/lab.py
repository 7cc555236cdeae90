"""The stations' runs side by side: a live line per station (rewritten in place on a terminal,
one line per change otherwise), Ctrl-C stopping every run cleanly, then a table, lab.json and
the lab's verdict.

The lab's verdict is the worst station's, in this order: FAILED (a device failed: the finding a
lab must act on first), BENCH ERROR (a station could not judge its device), INCOMPLETE, PASSED.
PASSED only when every station PASSED; the last line counts every verdict and names every
station that did not pass, so neither a BENCH ERROR nor an INCOMPLETE hides behind another.
"""

from __future__ import annotations

import queue
import shutil
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from bench.lab.child import ChildRun, child_argv
from bench.lab.plan import Station
from bench.record.verdict import BENCH_ERROR, EXIT_CODES, FAILED, INCOMPLETE, PASSED
from bench.record.writer import write_json_atomic

WORST_FIRST = (FAILED, BENCH_ERROR, INCOMPLETE, PASSED)
STOP_GRACE_S = 120.0  # after a stop, how long a run may take to leave its supply safe before it is killed
LAB_RECORD = "lab.json"


def lab_verdict(verdicts: list[str]) -> str:
    """The worst of the stations' verdicts (WORST_FIRST); no station: BENCH ERROR."""
    return next((v for v in WORST_FIRST if v in verdicts), BENCH_ERROR)


def status_text(run: ChildRun) -> str:
    """The station's live state: test k of n and the verdict so far, or its verdict."""
    tests = f"{run.done}/{run.total} tests" if run.total else "no test finished"
    failed = f", {len(run.failed)} failed" if run.failed else ""
    if run.finished:
        return f"{run.verdict} ({tests}{failed}, {run.wall_s:.1f} s)"
    if not run.total:
        return "stopping" if run.stop_sent else "starting"
    so_far = "failing" if run.failed else "passing"
    return f"test {run.done} of {run.total}, {so_far} so far{failed}" + (", stopping" if run.stop_sent else "")


class Board:
    """One line per station: on a terminal redrawn in place; otherwise printed when it changes."""

    def __init__(self, runs: list[ChildRun], out: TextIO) -> None:
        self.runs = runs
        self.out = out
        self.tty = out.isatty()
        self.width = max(len(r.station.id) for r in runs)
        self.shown: dict[str, str] = {}
        self.drawn = False

    def line(self, run: ChildRun) -> str:
        text = f"  {run.station.id:<{self.width}}  {status_text(run)}"
        return text[: shutil.get_terminal_size().columns - 1] if self.tty else text  # one row each, to redraw

    def update(self) -> None:
        if self.tty:
            if self.drawn:
                self.out.write(f"\x1b[{len(self.runs)}F")
            self.out.write("".join(f"\x1b[2K{self.line(r)}\n" for r in self.runs))
            self.drawn = True
        else:
            for run in self.runs:
                text = self.line(run)
                if self.shown.get(run.station.id) != text:
                    self.shown[run.station.id] = text
                    self.out.write(f"{datetime.now(UTC):%H:%M:%SZ}{text}\n")
        self.out.flush()

    def say(self, text: str) -> None:
        """A line above the live lines (they are drawn again below it)."""
        if self.tty and self.drawn:
            self.out.write(f"\x1b[{len(self.runs)}F\x1b[J")
            self.drawn = False
        self.out.write(text + "\n")
        self.update()


class _Stop(KeyboardInterrupt):
    pass


def _raise_stop(signum, frame) -> None:
    raise _Stop(signal.Signals(signum).name)


def run_lab(
    stations: list[Station],
    lab_dir: Path,
    run_dirs: list[Path],
    suite: str | None = None,
    operator: str | None = None,
    k: str | None = None,
    extra: list[str] | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Run every station at once; print the table and the verdict line; return the exit code."""
    events: queue.Queue = queue.Queue()
    runs = [
        ChildRun(s, child_argv(s, d, suite, operator, k, extra or []), d, lab_dir / f"{s.id}.log", events)
        for s, d in zip(stations, run_dirs, strict=True)
    ]
    started_at = datetime.now(UTC)
    start = time.monotonic()
    out.write(f"paygo-bench: {len(runs)} stations in parallel, console logs and {LAB_RECORD} in {lab_dir}\n")
    board = Board(runs, out)
    previous = {
        name: signal.getsignal(getattr(signal, name)) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
    }
    for name in previous:
        signal.signal(getattr(signal, name), _raise_stop)
    stopping: float | None = None
    pending = list(runs)
    try:
        while not all(r.finished for r in runs):
            try:
                while pending and stopping is None:
                    pending.pop(0).start()
                try:
                    events.get(timeout=0.5)
                except queue.Empty:
                    pass
                board.update()
                if stopping is not None and time.monotonic() - stopping > STOP_GRACE_S:
                    for run in runs:
                        run.kill()
            except KeyboardInterrupt as e:
                why = str(e) or "Ctrl-C"
                if stopping is None:
                    stopping = time.monotonic()
                    board.say(
                        f"paygo-bench: {why}: stopping every station (each run ends as on Ctrl-C: record "
                        "interrupted, supply to its safe state)"
                    )
                    for run in runs:
                        run.stop()
                else:
                    board.say(f"paygo-bench: {why}: already stopping; waiting for each supply to be left safe")
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)
    board.update()
    wall = time.monotonic() - start
    verdict = lab_verdict([r.verdict or BENCH_ERROR for r in runs])
    _table(runs, out)
    record = _write_record(lab_dir, runs, verdict, started_at, wall, out)
    if record is not None:
        out.write(f"paygo-bench: lab record {record}\n")
    out.write(f"paygo-bench: {verdict_line(verdict, runs, wall)}\n")
    out.flush()
    return EXIT_CODES[verdict]


def verdict_line(verdict: str, runs: list[ChildRun], wall: float) -> str:
    """`FAILED: 4 stations in 12.3 s: 3 PASSED, 1 FAILED (lab-c)`: every verdict counted, every
    station not PASSED named."""
    parts = []
    for v in WORST_FIRST:
        ids = [r.station.id for r in runs if r.verdict == v]
        if ids:
            parts.append(f"{len(ids)} {v}" + (f" ({', '.join(ids)})" if v != PASSED else ""))
    return f"{verdict}: {len(runs)} stations in {wall:.1f} s: {', '.join(parts)}"


def _table(runs: list[ChildRun], out: TextIO) -> None:
    cwd = Path.cwd()

    def shown(path: Path) -> str:  # relative to the current folder when inside it
        return str(path.relative_to(cwd)) if path.is_absolute() and path.is_relative_to(cwd) else str(path)

    rows = [("station", "rig", "verdict", "tests", "wall", "report")]
    for r in runs:
        tests = f"{r.done}/{r.total}" + (f", {len(r.failed)} failed" if r.failed else "") if r.total else "-"
        report = r.run_dir / "report.html"
        rows.append(
            (
                r.station.id,
                shown(Path(r.station.rig_file)),
                r.verdict or BENCH_ERROR,
                tests,
                f"{r.wall_s:.1f} s",
                shown(report) if report.exists() else f"(none: {shown(r.log_path)})",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out.write("\n")
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")
    for r in runs:
        if r.verdict != PASSED:
            out.write(f"  {r.station.id}: {r.line}\n")


def _write_record(
    lab_dir: Path, runs: list[ChildRun], verdict: str, started_at: datetime, wall: float, out: TextIO
) -> Path | None:
    """lab.json: the lab's verdict and each station's, with where its run's files are."""
    from bench.locations import cannot

    doc = {
        "lab_record": 1,
        "started_at": started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "wall_s": round(wall, 3),
        "verdict": verdict,
        "exit_status": EXIT_CODES[verdict],
        "stations": [
            {
                "station": r.station.id,
                "rig": r.station.rig_file,
                "verdict": r.verdict,
                "verdict_line": r.line,
                "exit_status": r.exit_status,
                "tests_done": r.done,
                "tests_total": r.total,
                "failed": sorted(r.failed),
                "wall_s": round(r.wall_s, 3),
                "run_dir": str(r.run_dir),
                "record": str(r.run_dir / "record.json"),
                "console_log": str(r.log_path),
            }
            for r in runs
        ],
    }
    path = lab_dir / LAB_RECORD
    try:
        write_json_atomic(path, doc)
    except OSError as e:  # the stations' own records stand; the table above says it all
        out.write(f"paygo-bench: {cannot('write', path, e)}\n")
        return None
    return path
