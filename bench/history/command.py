"""`paygo-bench history`: index the runs under reports/, list them with their verdicts and key
measurements, say what newly fails and what was fixed since the last comparable run, what is
flaky, and draw the trend (docs/history.md).

`add_parser(subparsers)` adds the subcommand to bench/cli.py's parser; `main(argv)` runs it alone.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.history.db import RESULTS_DB_ENV

EXAMPLES = """examples:
  paygo-bench history                             # the last 20 runs under reports/
  paygo-bench history --station lab-3 --last 60   # one station's last 60 nights
  paygo-bench history --rig lab.toml              # runs made with exactly this rig file
  paygo-bench history --measure rtc_drift --measure 'G8*_decode_time' --measure boot_time
  paygo-bench history --plot rtc_drift            # trend of the drift only
  paygo-bench history --db postgresql://bench@db.lab/results --product PG-1 --firmware 2.3.1
                                                  # the lab's shared database: every station
  paygo-bench history --upload                    # send queued records (and reports/) to the database
"""


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reports", metavar="DIR", help="the reports directory (default: reports/ of the checkout)")
    p.add_argument("--rig", metavar="FILE", help="only runs made with this exact rig file (same SHA-256)")
    p.add_argument("--station", metavar="ID", help="only runs of this station id (any version of its rig file)")
    p.add_argument("--product", metavar="MODEL", help="only runs of this product (the DUT's model)")
    p.add_argument("--firmware", metavar="VERSION", help="only runs of this firmware version")
    p.add_argument(
        "--db",
        metavar="URL",
        help=f"the results database (sqlite:///FILE, postgresql://...; default ${RESULTS_DB_ENV}, else "
        "reports/history.sqlite kept equal to the records)",
    )
    p.add_argument(
        "--upload",
        action="store_true",
        help="send the queued records, and every record under --reports, to the database (idempotent)",
    )
    p.add_argument("--last", type=int, default=20, metavar="N", help="show the last N runs (default 20)")
    p.add_argument(
        "--measure",
        action="append",
        metavar="NAME",
        help="a key measurement column (a name or a glob, e.g. 'G8*_decode_time'; repeatable; "
        "default rtc_drift and G8*_decode_time)",
    )
    p.add_argument(
        "--plot",
        action="append",
        metavar="NAME",
        help="a measurement to plot (repeatable; default: the key measurements)",
    )
    p.add_argument("--no-plot", action="store_true", help="write neither trend.png nor index.html")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "history",
        help="list past runs, new failures, flaky tests and trends",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(p)
    p.set_defaults(func=lambda args, extra=None: run(args))
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="paygo-bench history",
        description=__doc__.splitlines()[0],
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(list(sys.argv[1:] if argv is None else argv)))


def _default_reports() -> Path:
    from bench.locations import reports_root

    return reports_root()


def run(args: argparse.Namespace) -> int:
    from bench.history.analysis import (
        DEFAULT_MEASUREMENTS,
        column_units,
        comparable,
        compare,
        firmware_matrix,
        flaky_tests,
        trend,
    )
    from bench.history.db import is_local, resolve
    from bench.history.index import INDEX_NAME, HistoryIndex, HistoryIndexError, RunFilter
    from bench.history.publish import deliver, queued
    from bench.history.view import HistoryView, text_report

    reports = Path(args.reports) if args.reports else _default_reports()
    if args.last < 1:
        print("paygo-bench history: --last must be at least 1", file=sys.stderr)
        return 2
    try:
        rig_sha = hashlib.sha256(Path(args.rig).read_bytes()).hexdigest() if args.rig else None
    except OSError as e:
        print(f"paygo-bench history: --rig {args.rig}: {e.strerror or e}", file=sys.stderr)
        return 2
    url = resolve(args.db, None, reports)
    local = is_local(url, reports)
    if local and not reports.is_dir():
        print(f"no runs: {reports} does not exist")
        return 0
    if queued(reports):  # what earlier runs could not send goes first
        for line in deliver(url, reports).lines:
            print(line)
    try:
        index = HistoryIndex(reports / INDEX_NAME if local else url)
    except HistoryIndexError as e:
        print(f"paygo-bench history: {e}", file=sys.stderr)
        return 2
    shown_as = str(args.reports) if args.reports else None
    with index:
        try:
            if local or (args.upload and reports.is_dir()):
                update = index.update(reports, shown_as=shown_as, mirror=local)
                for skip in update.skipped:
                    print(f"skipped {skip.path}: {skip.reason}", file=sys.stderr)
                print(
                    (f"index {reports / INDEX_NAME}" if local else f"uploaded {shown_as or reports} to {index.shown}")
                    + f": {len(update.indexed)} new or updated, {update.unchanged} unchanged"
                    + (f", {len(update.older)} older than the database's" if update.older else "")
                    + (f", {len(update.removed)} removed" if update.removed else "")
                    + (f", {len(update.skipped)} skipped" if update.skipped else "")
                )
            rows = index.runs(RunFilter(args.station, rig_sha, args.product, args.firmware))
            if not local:
                print(f"results database {index.shown}: {len(rows)} matching runs")
            if not rows:
                what = " ".join(
                    f"--{name} {value}"
                    for name, value in (
                        ("station", args.station),
                        ("rig", args.rig),
                        ("product", args.product),
                        ("firmware", args.firmware),
                    )
                    if value
                )
                print(f"no runs{' matching ' + what if what else ''} in {reports if local else index.shown}")
                return 0
            window = rows[-args.last :]
            wanted = {r.run_id: r for r in window}
            pairs = _newest_pairs(rows, wanted, comparable)
            loaded = {run_id: index.load(r) for run_id, r in wanted.items()}
        except Exception as e:  # the database went away or refused a query: one line, never its password
            from sqlalchemy.exc import SQLAlchemyError

            if not isinstance(e, SQLAlchemyError):
                raise
            print(f"paygo-bench history: {index.describe_error(e)}", file=sys.stderr)
            return 2
    shown = [loaded[r.run_id] for r in window]
    measures = tuple(args.measure or DEFAULT_MEASUREMENTS)
    changes = [compare(loaded[p.run_id] if p is not None else None, loaded[n.run_id], k) for n, p, k in pairs]
    view = HistoryView(
        tuple(shown),
        measures,
        column_units(shown, measures),
        tuple(changes),
        tuple(flaky_tests(shown)),
        len(rows),
        tuple(firmware_matrix(rows)),
    )
    print(text_report(view))
    if not args.no_plot:
        print(_write_plot_and_page(view, tuple(args.plot or measures), reports / "history", trend))
    return 0


def _newest_pairs(rows, wanted: dict, comparable) -> list:
    """Each station/rig/suite's newest run in the window with the last earlier run given the same
    tests (perhaps outside the window, then added to `wanted`) and how many runs came before."""
    pairs = []
    for members in _groups(rows).values():
        newest = [r for r in members if r.run_id in wanted]
        if newest:
            previous = comparable(members, newest[-1])
            pairs.append((newest[-1], previous, members.index(newest[-1])))
            if previous is not None:
                wanted.setdefault(previous.run_id, previous)
    return pairs


def _groups(rows) -> dict:
    groups: dict = {}
    for r in rows:
        groups.setdefault(r.group, []).append(r)
    return groups


def _write_plot_and_page(view, plot_specs, out_dir: Path, trend) -> str:
    from bench.history.page import render
    from bench.history.trend_plot import trend_plot
    from bench.record.writer import write_text_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    png = trend_plot(out_dir / "trend.png", trend(view.runs, plot_specs), "trend: " + ", ".join(plot_specs))
    page = out_dir / "index.html"
    write_text_atomic(page, render(view, png))
    return f"\ntrend plot: {png}\npage: {page}"
