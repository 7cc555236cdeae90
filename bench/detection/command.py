"""`paygo-bench selftest`: run the device suite against every defect in the fault catalogue and
the good device several times, and write the detection matrix (Markdown and HTML).

Exit 0 only if every fault is caught exactly and every good run passed in full; 1 otherwise;
2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import as_completed
from datetime import UTC, datetime
from pathlib import Path

from bench.detection.hook_windows import WINDOWS_FILE
from bench.detection.hooks import RECORD, FullMatrixRecord, HookMap, read_trace, reduced_section, sources_digest
from bench.detection.matrix import SuiteRun, build_matrix, fault_row, good_summary, no_reset_cell, no_reset_good
from bench.detection.mutation_doc import stored_section, with_section
from bench.detection.render import RunInfo, html_page, markdown, summary_line
from bench.detection.runner import (
    DEFAULT_JOBS,
    NO_RESET,
    NO_RESET_RIG,
    TRACE_DIR,
    RunSpec,
    SuiteDidNotRun,
    find_root,
    jobs_from_env,
    longest_first,
    plan_no_reset_runs,
    plan_runs,
    start_runs,
)
from bench.version import bench_version

EXAMPLES = """examples:
  paygo-bench selftest                          # every fault, 20 good runs: reports/selftest-<stamp>/
  paygo-bench selftest --docs                   # also write docs/detection-matrix.md
  paygo-bench selftest --fault key_echoed --good-runs 2 -k identity   # a quick subset
"""
MATRIX_MD = "detection-matrix.md"
MATRIX_HTML = "detection-matrix.html"


def configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--jobs",
        type=int,
        default=jobs_from_env(),
        help=f"suite runs side by side (default $PAYGO_SELFTEST_JOBS or {DEFAULT_JOBS})",
    )
    parser.add_argument("--good-runs", type=int, default=20, help="full runs the good device must pass (default 20)")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME",
        help="only this fault (repeatable; default every fault in the catalogue)",
    )
    parser.add_argument("--out", help="write here (default reports/selftest-<UTC stamp>/)")
    parser.add_argument("--docs", action="store_true", help=f"also write docs/{MATRIX_MD}")
    parser.add_argument("-k", help="restrict every suite run to this pytest -k expression (a quick check)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds one suite run may take (default 900)")
    parser.add_argument(
        "--no-reset-rig",
        default=NO_RESET_RIG,
        metavar="FILE",
        help=f"the rig of the matrix's no-reset column (default {NO_RESET_RIG})",
    )
    parser.add_argument(
        "--skip-no-reset",
        action="store_true",
        help="leave out the no-reset column (the device without factory reset, from its ledger)",
    )
    parser.set_defaults(func=run)
    return parser


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `selftest` on the paygo-bench command's subparsers."""
    return configure(
        subparsers.add_parser(
            "selftest",
            help="run the suite against every simulated defect and write the detection matrix",
            epilog=EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )


def _usage_error(message: str) -> int:
    print(f"paygo-bench selftest: {message}", file=sys.stderr)
    return 2


def _collect(future) -> SuiteRun:
    """A run's results, or the reason it left none (a crashed or stuck run is a failure, not a
    crash of the whole matrix)."""
    try:
        results, _ = future.result()
        return SuiteRun(results)
    except SuiteDidNotRun as e:
        return SuiteRun({}, str(e))
    except Exception as e:  # a timeout or an OS error: recorded in the matrix, not raised
        return SuiteRun({}, f"{type(e).__name__}: {e}")


def _explorers() -> frozenset[str]:
    from bench.detection.catalogue import EXPLORERS

    return EXPLORERS


def _progress(spec: RunSpec, suite: SuiteRun, catalogue) -> str:
    if spec.key.endswith(NO_RESET):
        if spec.faults:
            return f"fault {spec.faults[0]} without reset: {no_reset_cell(catalogue[spec.faults[0]], suite).text}"
        good = no_reset_good(suite)
        return f"good run without reset: {'passed' if good.ok else 'FAILED ' + good.problems[1][:200]}"
    if spec.faults:
        row = fault_row(catalogue[spec.key], suite, [*suite.results, *catalogue[spec.key].caught_by], _explorers())
        caught = row.count("caught")
        return f"fault {spec.key}: {row.verdict} ({caught} test{'s' * (caught != 1)})"
    g = good_summary([suite])
    return (
        f"{spec.key} run: "
        + ("passed" if g.ok else f"FAILED {g.problems.get(1, '')[:200]}")
        + f" ({len(suite.results)} tests)"
    )


def run(args: argparse.Namespace, extra: list[str] | None = None) -> int:
    from bench.detection.catalogue import CATALOGUE

    unknown = [f for f in args.fault if f not in CATALOGUE]
    if unknown:
        return _usage_error(f"unknown fault(s) {', '.join(unknown)}; the catalogue has {', '.join(CATALOGUE)}")
    if args.jobs < 1 or args.good_runs < 0 or args.timeout <= 0:
        return _usage_error("--jobs must be at least 1, --good-runs at least 0, --timeout positive")
    try:
        root = find_root()
    except FileNotFoundError as e:
        return _usage_error(str(e))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out).resolve() if args.out else root / "reports" / f"selftest-{stamp}"
    suite_args = (*(("-k", args.k) if args.k else ()), *(extra or ()))
    faults = list(dict.fromkeys(args.fault)) or list(CATALOGUE)
    specs = plan_runs(faults, args.good_runs, numbered=True)
    if not args.skip_no_reset:
        column = plan_no_reset_runs(faults, CATALOGUE, args.no_reset_rig)
        specs = longest_first(column[:1] + specs + column[1:])
    print(
        f"paygo-bench selftest: {len(faults)} fault(s) + {args.good_runs} good run(s)"
        f"{'' if args.skip_no_reset else ', and the no-reset column'}, {args.jobs} at a time; "
        f"writing {out}",
        flush=True,
    )
    started = time.monotonic()
    suites = _run_all(specs, out / "runs", args, suite_args, root, CATALOGUE)
    if suites is None:
        print("paygo-bench selftest: interrupted; no matrix written", file=sys.stderr)
        return 130
    whole = not suite_args and not args.fault
    record = full_record(specs, suites, out / "runs", root) if whole and args.good_runs else None
    uncovered = record.uncovered(CATALOGUE) if record else {}
    matrix = _write_matrix(
        specs,
        suites,
        out,
        RunInfo(datetime.now(UTC), bench_version(), time.monotonic() - started, suite_args),
        root if args.docs else None,
        CATALOGUE,
        reduced_section(record, uncovered, CATALOGUE) if record else [],
    )
    if record is not None:
        (out / "detection-matrix.json").write_text(record.to_json(), encoding="utf-8")
        if args.docs:
            (root / RECORD).write_text(record.to_json(), encoding="utf-8")
            print(f"paygo-bench selftest: full-matrix record {root / RECORD} (the self-tests' reduced matrix uses it)")
    for fault, tests in uncovered.items():
        print(f"paygo-bench selftest: the reduced run of {fault} would miss {', '.join(tests)}", file=sys.stderr)
    return 0 if matrix.ok and not uncovered else 1


def full_record(specs: list, suites: dict[str, SuiteRun], runs_dir: Path, root: Path) -> FullMatrixRecord:
    """What this full run established, for the reduced matrix: each fault's tests that did not
    pass, and the union of the good runs' hook maps."""
    hooks = HookMap()
    goods = [s for s in specs if s.trace]
    for spec in goods:
        folder = runs_dir / spec.key.replace("@", "_") / TRACE_DIR
        if (folder / WINDOWS_FILE).exists():
            hooks = hooks.merge(read_trace(folder))
    not_passed = {
        s.key: sorted(n for n, r in suites[s.key].results.items() if r.outcome in ("failed", "error"))
        for s in specs
        if s.faults and not s.key.endswith(NO_RESET)
    }
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    return FullMatrixRecord(sources_digest(root), stamp, len(goods), hooks, not_passed)


def _run_all(
    specs: list, runs_dir: Path, args: argparse.Namespace, suite_args: tuple, root: Path, catalogue: dict
) -> dict[str, SuiteRun] | None:
    """Every planned suite run, `args.jobs` at a time, a line of progress as each ends; None if
    interrupted (Ctrl-C)."""
    runs_dir.mkdir(parents=True, exist_ok=True)

    def mkdir(key: str) -> Path:
        path = runs_dir / key.replace("@", "_")
        path.mkdir(parents=True, exist_ok=True)
        return path

    runs = start_runs(specs, mkdir, args.jobs, args=suite_args, timeout_s=args.timeout, root=root)
    by_future = {runs.futures[s.key]: s for s in specs}
    suites: dict[str, SuiteRun] = {}
    try:
        for done, future in enumerate(as_completed(by_future), 1):
            spec = by_future[future]
            suites[spec.key] = suite = _collect(future)
            if suite.error:
                (runs_dir / spec.key.replace("@", "_") / "error.txt").write_text(suite.error, encoding="utf-8")
            print(f"[{done}/{len(specs)}] {_progress(spec, suite, catalogue)}", flush=True)
    except KeyboardInterrupt:
        runs.pool.shutdown(wait=False, cancel_futures=True)
        return None
    runs.pool.shutdown(wait=True)
    return suites


def _write_matrix(
    specs: list,
    suites: dict[str, SuiteRun],
    out: Path,
    info: RunInfo,
    docs_root: Path | None,
    catalogue: dict,
    extra: list[str],
):
    """The matrix from the runs, as markdown and HTML in `out` (and docs/ when asked)."""
    plain = [s for s in specs if not s.key.endswith(NO_RESET)]
    column = [s for s in specs if s.key.endswith(NO_RESET)]
    matrix = build_matrix(
        {s.key: suites[s.key] for s in plain if s.faults},
        catalogue,
        [suites[s.key] for s in plain if not s.faults],
        {s.faults[0]: suites[s.key] for s in column if s.faults} or None,
        next((suites[s.key] for s in column if not s.faults), None),
        _explorers(),
    )
    md = markdown(matrix, info) + "\n".join(extra)
    (out / MATRIX_MD).write_text(md, encoding="utf-8")
    (out / MATRIX_HTML).write_text(html_page(matrix, info), encoding="utf-8")
    print(f"paygo-bench selftest: {summary_line(matrix)}")
    print(f"paygo-bench selftest: matrix {out / MATRIX_MD} and {out / MATRIX_HTML}")
    if docs_root is not None:
        docs_md = with_section(md, stored_section(docs_root))  # the mutation score, kept
        (docs_root / "docs" / MATRIX_MD).write_text(docs_md, encoding="utf-8")
        print(f"paygo-bench selftest: matrix {docs_root / 'docs' / MATRIX_MD}")
    return matrix


def main(argv: list[str] | None = None) -> int:
    """Run without the paygo-bench console script (`python -m bench.detection.command`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:  # everything after -- goes to every child pytest untouched
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    parser = configure(
        argparse.ArgumentParser(
            prog="paygo-bench selftest",
            description=__doc__.splitlines()[0],
            epilog=EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse's usage error (2) or --help (0)
        return int(e.code or 0)
    return args.func(args, extra)


if __name__ == "__main__":
    sys.exit(main())
