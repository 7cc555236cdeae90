"""What the device suite costs on the virtual rig, test by test, and what the detection matrix costs
as faults and tests are added, as printed tables.

Why it exists: the self-tests run the device suite once per simulator fault plus good runs (the
detection matrix, bench/detection/runner.py), so every added fault and every added device test
is paid for many times over, side by side on a few cores. This shows that price before the
addition lands:

1. Per test, waiting against busy. The device suite runs once on the virtual rig in a child
   pytest (`pytest tests/device --no-plots`, its own new report directory) with this folder's
   plugin, cost_plugin.py, which times every test over setup + call + teardown: wall
   (time.monotonic), busy = the CPU of the bench process plus that of the simulator (a separate
   process) over the same span, waiting = wall - busy. The session's start-up (process start to
   the first test), pytest's own time between tests and its wind-down (last test to exit) are rows
   of their own; the totals are the whole process's, as the operating system accounts its CPU.
2. Cost growth. From the measured run (wall W, CPU C) and the mean test, a model of the detection
   matrix's wall time for 10, 20, 40, 80 faults and 0, 5, 10, 20 added device tests, with the
   workers (PAYGO_SELFTEST_JOBS) and cores of this machine:
   wall = max(the longest run, sum of the runs' walls / jobs, sum of the runs' CPU / cores).
   It is a model: it assumes the runs share the cores evenly and that an added test costs what
   the suite's mean test costs. With --matrix, the real `paygo-bench selftest --good-runs 1
   --skip-no-reset` is timed once beside the model's figure for today's catalogue (several
   minutes).

    python benchmarks/suite_cost.py [--runs 1] [--matrix] [--write-docs LABEL]

--runs N: run the suite N times (per test: medians; the whole run: min, median, max).
--write-docs LABEL: (re)write the figures of docs/speed.md marked LABEL (e.g. before, after)
between their markers, the rest of the document untouched; a new label is added at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

try:
    import resource
except ImportError:  # Windows: the CPU of finished children is not available
    resource = None  # type: ignore[assignment]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOC = ROOT / "docs" / "speed.md"
SUITE = "tests/device"
PREFIX = SUITE + "/"
STARTUP = "(start-up: process start to first test)"
BETWEEN = "(pytest between tests)"
WINDDOWN = "(wind-down: last test to exit)"
FAULTS = (10, 20, 40, 80)
ADDED_TESTS = (0, 5, 10, 20)


@dataclass(frozen=True)
class Cost:
    """One row: wall seconds; busy = CPU seconds of the bench process and the simulator together,
    and the bench's share of it (None: not available)."""

    name: str
    wall: float
    busy: float | None
    bench_cpu: float | None = None
    outcome: str = "passed"

    @property
    def sim_cpu(self) -> float | None:
        return None if self.busy is None or self.bench_cpu is None else self.busy - self.bench_cpu

    @property
    def waiting(self) -> float | None:
        return None if self.busy is None else self.wall - self.busy


@dataclass(frozen=True)
class SuiteRun:
    """One child pytest: its rows (tests and the session's own), its whole wall and CPU."""

    rows: list[Cost]
    wall: float
    cpu: float
    exit_code: int

    @property
    def tests(self) -> list[Cost]:
        return [r for r in self.rows if not r.name.startswith("(")]

    def row(self, name: str) -> Cost:
        return next(r for r in self.rows if r.name == name)


def _sum(*xs: float | None) -> float | None:
    return None if None in xs else sum(x for x in xs if x is not None)


def suite_run(records: Sequence[dict], spawn: float, end: float, cpu: float, exit_code: int = 0) -> SuiteRun:
    """The rows of one run from the plugin's records (cumulative clocks before and after each
    test), the monotonic times at which the child was started and reaped, and its whole CPU (its
    own and its reaped children's, as the operating system accounts them)."""
    rows = []
    for r in records:
        bench = r["cpu1"] - r["cpu0"]
        sim = None if r["children0"] is None or r["children1"] is None else r["children1"] - r["children0"]
        rows.append(Cost(r["nodeid"].removeprefix(PREFIX), r["t1"] - r["t0"], _sum(bench, sim), bench, r["outcome"]))
    if not records:  # no test ran: the whole process is its start-up
        return SuiteRun([Cost(STARTUP, end - spawn, cpu)], end - spawn, cpu, exit_code)
    first, last = records[0], records[-1]
    before = _sum(first["cpu0"], first["children0"])  # CPU from the process start to the first test
    after = _sum(last["cpu1"], last["children1"])  # ... to the end of the last
    tests_busy = _sum(*(t.busy for t in rows))
    between_bench = (last["cpu1"] - first["cpu0"]) - sum(t.bench_cpu or 0.0 for t in rows)
    rows += [
        Cost(STARTUP, first["t0"] - spawn, before, first["cpu0"]),
        Cost(
            BETWEEN,
            (last["t1"] - first["t0"]) - sum(t.wall for t in rows),
            None if after is None or before is None or tests_busy is None else after - before - tests_busy,
            between_bench,
        ),
        Cost(WINDDOWN, end - last["t1"], None if after is None else cpu - after),
    ]
    return SuiteRun(rows, end - spawn, cpu, exit_code)


def _median(xs: Sequence[float | None]) -> float | None:
    return None if None in xs else statistics.median(x for x in xs if x is not None)


def median_run(runs: Sequence[SuiteRun]) -> SuiteRun:
    """Per row, the median wall and CPU over several runs of the same suite; the whole run's too."""
    if len(runs) == 1:
        return runs[0]
    rows = []
    for name in [r.name for r in runs[0].rows]:
        same = [r for run in runs for r in run.rows if r.name == name]
        outcome = "failed" if any(r.outcome == "failed" for r in same) else same[0].outcome
        rows.append(
            Cost(
                name,
                statistics.median(r.wall for r in same),
                _median([r.busy for r in same]),
                _median([r.bench_cpu for r in same]),
                outcome,
            )
        )
    return SuiteRun(
        rows,
        statistics.median(r.wall for r in runs),
        statistics.median(r.cpu for r in runs),
        max(r.exit_code for r in runs),
    )


def _s(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def cost_table(run: SuiteRun) -> str:
    """Rows sorted by wall time, longest first; totals (the whole process); the share of waiting."""
    width = max(len(r.name) for r in run.rows) + 2
    head = f"{'test':<{width}}{'wall s':>8}{'busy s':>8}{'bench':>8}{'sim':>8}{'waiting s':>11}{'wait %':>8}"
    lines = [head]
    tests = run.tests
    ends = {tests[0].name: " (first: + session set-up)", tests[-1].name: " (last: + session teardown)"} if tests else {}
    for r in sorted(run.rows, key=lambda r: r.wall, reverse=True):
        share = "n/a" if r.waiting is None or r.wall <= 0 else f"{100 * r.waiting / r.wall:.0f}"
        mark = ends.get(r.name, "") + ("" if r.outcome == "passed" else f"  {r.outcome.upper()}")
        lines.append(
            f"{r.name:<{width}}{r.wall:>8.2f}{_s(r.busy):>8}{_s(r.bench_cpu):>8}{_s(r.sim_cpu):>8}"
            f"{_s(r.waiting):>11}{share:>8}{mark}"
        )
    waiting = run.wall - run.cpu
    lines.append(
        f"{'total (the whole process)':<{width}}{run.wall:>8.2f}{run.cpu:>8.2f}{'':>8}{'':>8}{waiting:>11.2f}"
        f"{100 * waiting / run.wall if run.wall > 0 else 0:>8.0f}"
    )
    lines.append(
        f"{len(tests)} tests: {sum(t.wall for t in tests):.2f} s wall; the suite waits "
        f"{100 * waiting / run.wall if run.wall > 0 else 0:.0f} % of its wall time and keeps "
        f"{run.cpu / run.wall if run.wall > 0 else 0:.2f} cores busy"
    )
    return "\n".join(lines)


def mean_test(run: SuiteRun) -> tuple[float, float]:
    """The mean device test's (wall, CPU); its CPU from the whole run when the simulator's is not
    available (the tests' share of it: the run's CPU less the start-up's)."""
    tests = run.tests
    if not tests:
        return 0.0, 0.0
    wall = sum(t.wall for t in tests) / len(tests)
    busy = [t.busy for t in tests]
    if None in busy:
        startup = run.row(STARTUP).busy or 0.0
        return wall, (run.cpu - startup) / len(tests)
    return wall, sum(b for b in busy if b is not None) / len(tests)


def predict_wall(runs: Sequence[tuple[float, float]], jobs: int, cores: int) -> tuple[float, str]:
    """The model: runs of (wall, CPU) seconds on `jobs` workers and `cores` cores take at least the
    longest run, their summed wall over the workers, and their summed CPU over the cores; which
    of the three binds is said beside it."""
    if not runs:
        return 0.0, "nothing"
    bounds = {
        "one run": max(w for w, _ in runs),
        "waiting": sum(w for w, _ in runs) / max(1, jobs),
        "CPU": sum(c for _, c in runs) / max(1, cores),
    }
    bound = max(bounds, key=lambda k: bounds[k])
    return bounds[bound], bound


def subset_run(run: SuiteRun, tests: Sequence[str]) -> tuple[float, float]:
    """(wall, CPU) of a run of only these tests (node ids), from the full run's rows: the
    session's own rows plus those tests'."""
    own = [r for r in run.rows if r.name.startswith("(")]
    picked = {t.removeprefix(PREFIX) for t in tests}
    rows = own + [r for r in run.tests if r.name in picked]
    busy = [r.busy for r in rows]
    if None in busy:  # no simulator CPU: scale the run's CPU by the wall share
        wall = sum(r.wall for r in rows)
        return wall, run.cpu * wall / run.wall if run.wall > 0 else 0.0
    return sum(r.wall for r in rows), sum(b for b in busy if b is not None)


def _mmss(s: float) -> str:
    whole = round(s)
    return f"{whole // 60}:{whole % 60:02d}" if whole < 3600 else f"{s / 3600:.1f} h"


def growth_table(
    run: SuiteRun,
    jobs: int,
    cores: int,
    current_faults: int,
    good_runs: int = 1,
    faults: Sequence[int] = FAULTS,
    added: Sequence[int] = ADDED_TESTS,
) -> str:
    """Predicted matrix wall (m:ss) for each number of faults (rows) and added device tests
    (columns): one full suite run per fault plus `good_runs` good runs."""
    w_test, c_test = mean_test(run)
    lines = [
        "Detection matrix (one run per fault + "
        f"{good_runs} good), model: wall = max(longest run, runs x wall / {jobs} jobs, runs x CPU / {cores} cores)",
        f"one run now: wall {run.wall:.1f} s, CPU {run.cpu:.1f} s; each added device test (the mean test): "
        f"+{w_test:.2f} s wall, +{c_test:.2f} s CPU per run",
        f"{'faults':>8}{'runs':>6}" + "".join(f"{'+' + str(n) + ' tests':>14}" for n in added) + "   bound (+0)",
    ]
    lines.append(
        f"{'1 run':>8}{'':>6}" + "".join(f"{_mmss(run.wall + n * w_test):>14}" for n in added) + "   the suite alone"
    )
    for n_faults in sorted({*faults, current_faults}):
        runs = n_faults + good_runs
        cells, bound0 = [], ""
        for n in added:
            wall, bound = predict_wall([(run.wall + n * w_test, run.cpu + n * c_test)] * runs, jobs, cores)
            cells.append(_mmss(wall))
            bound0 = bound0 or bound
        note = "   (the catalogue now)" if n_faults == current_faults else ""
        lines.append(f"{n_faults:>8}{runs:>6}" + "".join(f"{c:>14}" for c in cells) + f"   {bound0}{note}")
    return "\n".join(lines)


def no_reset_line(run: SuiteRun, jobs: int, cores: int, catalogue) -> str:
    """The self-test also runs the no-reset column (a good full run, then each fault on only its
    catching tests): the model's figure for the matrix with it."""
    from bench.detection.runner import plan_no_reset_runs

    full = (run.wall, run.cpu)
    specs = plan_no_reset_runs(catalogue, catalogue)
    column = [full if spec.paths == (SUITE,) else subset_run(run, spec.paths) for spec in specs]
    matrix = [full] * (len(catalogue) + 1)
    wall, bound = predict_wall(matrix + column, jobs, cores)
    return (
        f"with the no-reset column (tests/selftest/test_fault_detection.py runs it: {len(column)} more runs, "
        f"{sum(w for w, _ in column):.0f} s wall, {sum(c for _, c in column):.0f} s CPU): "
        f"{_mmss(wall)} ({bound})"
    )


# docs/speed.md: a figures section per label, between these markers.
BEGIN = "<!-- suite_cost.py figures: {label} -->"
END = "<!-- end of suite_cost.py figures: {label} -->"


def replace_section(doc: str, label: str, body: str) -> str:
    """The document with the section marked `label` holding `body`: replaced in place when the
    markers are there, else added at the end; everything outside the markers is kept as it is."""
    begin, end = BEGIN.format(label=label), END.format(label=label)
    block = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(doc):
        return pattern.sub(lambda _: block, doc, count=1)
    return doc.rstrip("\n") + "\n\n" + block + "\n"


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({model}), {platform.system()} {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )


def children_cpu() -> float:
    if resource is None:
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_suite(tmp: Path, args: Sequence[str] = ()) -> SuiteRun:
    """The device suite once in a child pytest with the cost plugin, its own new report directory."""
    out = tmp / "cost.jsonl"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), str(ROOT), env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "pytest", SUITE, "-q", "-p", "no:cacheprovider", "--no-plots"]
    cmd += ["--report-dir", str(tmp / "run"), "-p", "cost_plugin", "--cost-out", str(out), *args]
    cpu0 = children_cpu()
    spawn = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    end = time.monotonic()
    cpu = children_cpu() - cpu0
    if not out.exists():
        sys.exit(f"the device suite did not run (exit {proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    records = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return suite_run(records, spawn, end, cpu, proc.returncode)


def machine_cpu() -> float | None:
    """CPU seconds the whole machine has been busy since boot (/proc/stat: every state but idle
    and iowait), or None where there is no /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(f) for f in fields[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def time_matrix(jobs: int, tmp: Path) -> tuple[float, float, int, str]:
    """`paygo-bench selftest --good-runs 1 --skip-no-reset` once: wall, CPU, exit status, and the
    end of what it printed. Its runs are forked by a fork server (bench/detection/forkserver.py)
    that is not this process's child, so their CPU is not in RUSAGE_CHILDREN: the CPU is the
    machine's busy time while it ran (run it on an otherwise idle machine), where /proc/stat
    exists, else only the processes this one waited for."""
    cmd = [sys.executable, "-m", "bench.cli", "selftest", "--good-runs", "1", "--skip-no-reset"]
    cmd += ["--jobs", str(jobs), "--out", str(tmp / "matrix")]
    cpu0, busy0 = children_cpu(), machine_cpu()
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    busy1 = machine_cpu()
    cpu = busy1 - busy0 if busy0 is not None and busy1 is not None else children_cpu() - cpu0
    return wall, cpu, proc.returncode, (proc.stdout + proc.stderr)[-2000:]


def junit_seconds(text: str) -> float | None:
    """A run's session time from its JUnit file (the testsuite's `time`); None if it has none."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    try:
        return float(suite.get("time", "")) if suite is not None else None
    except ValueError:
        return None


def matrix_runs(runs_dir: Path) -> dict[str, float]:
    """Each matrix run's session time, by run key, read from its JUnit file."""
    found = {}
    for junit in sorted(runs_dir.glob("*/junit.xml")):
        seconds = junit_seconds(junit.read_text(encoding="utf-8", errors="replace"))
        if seconds is not None:
            found[junit.parent.name] = seconds
    return found


def matrix_lines(
    wall: float, cpu: float, code: int, runs: dict[str, float], model: tuple[float, str], jobs: int, cores: int
) -> list[str]:
    """The measured matrix beside the model: its runs' own times (the longest named), and the model
    fed with those times instead of the good run's, to tell a wrong model from a wrong input."""
    lines = [
        f"measured: paygo-bench selftest --good-runs 1 --skip-no-reset --jobs {jobs} (exit {code}): "
        f"wall {_mmss(wall)} ({wall:.0f} s), CPU {cpu:.0f} s; the model: {_mmss(model[0])} ({model[1]}), "
        f"measured / model {wall / model[0] if model[0] else 0:.2f}"
    ]
    if runs:
        times = sorted(runs.values())
        longest = sorted(runs, key=lambda k: runs[k], reverse=True)[:3]
        lines.append(
            f"its {len(runs)} runs, pytest session s (side by side, so longer than alone): min {times[0]:.0f}, "
            f"median {statistics.median(times):.0f}, max {times[-1]:.0f}; longest: "
            + ", ".join(f"{k} {runs[k]:.0f}" for k in longest)
        )
        fed, bound = predict_wall([(t, cpu / len(runs)) for t in runs.values()], jobs, cores)
        lines.append(f"the model with these runs' own times and the measured CPU: {_mmss(fed)} ({bound})")
    return lines


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.detection.catalogue import CATALOGUE
    from bench.detection.runner import jobs_from_env

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1, help="device-suite runs (default 1)")
    ap.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="matrix workers (default $PAYGO_SELFTEST_JOBS, else the self-tests' default)",
    )
    ap.add_argument(
        "--cores", type=int, default=os.cpu_count() or 1, help="cores for the model (default: this machine's)"
    )
    ap.add_argument(
        "--matrix", action="store_true", help="also time paygo-bench selftest --good-runs 1 --skip-no-reset once"
    )
    ap.add_argument(
        "--write-docs", metavar="LABEL", default=None, help="(re)write docs/speed.md's figures marked LABEL"
    )
    ap.add_argument("-k", default=None, help="only the device tests matching this pytest -k expression (a quick check)")
    args = ap.parse_args()
    jobs = args.jobs or jobs_from_env()
    started = datetime.now(UTC)
    out: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        out.append(text)

    runs = []
    with tempfile.TemporaryDirectory(prefix="paygo-bench-suite-cost-") as tmp:
        for i in range(args.runs):
            folder = Path(tmp) / f"run-{i + 1}"
            folder.mkdir()
            runs.append(run_suite(folder, (["-k", args.k] if args.k else [])))
        run = median_run(runs)
        say(
            f"Device suite on the virtual rig, per test (setup + call + teardown){', medians' if len(runs) > 1 else ''}"
        )
        say(f"{started:%Y-%m-%d %H:%M} UTC, {machine()}")
        if len(runs) > 1:
            walls = sorted(r.wall for r in runs)
            say(
                f"{len(runs)} runs, whole-process wall s: min {walls[0]:.1f}, median {statistics.median(walls):.1f}, max {walls[-1]:.1f}"
            )
        if any(r.exit_code for r in runs):
            say(f"NOTE: a run exited {max(r.exit_code for r in runs)}: its figures are not a good device's")
        if any(r.sim_cpu is None for r in run.tests):
            say("simulator CPU: not available here (no /proc): busy and waiting are not shown per test")
        say(cost_table(run))
        say()
        say(growth_table(run, jobs, args.cores, len(CATALOGUE)))
        say(no_reset_line(run, jobs, args.cores, CATALOGUE))
        if args.matrix:
            wall, cpu, code, output = time_matrix(jobs, Path(tmp))
            if code:
                print(f"paygo-bench selftest exited {code}; the end of its output:\n{output}", file=sys.stderr)
            model = predict_wall([(run.wall, run.cpu)] * (len(CATALOGUE) + 1), jobs, args.cores)
            runs_found = matrix_runs(Path(tmp) / "matrix" / "runs")
            for line in matrix_lines(wall, cpu, code, runs_found, model, jobs, args.cores):
                say(line)
    if args.write_docs:
        cmd = "python benchmarks/suite_cost.py" + (f" --runs {args.runs}" if args.runs > 1 else "")
        cmd += " --matrix" if args.matrix else ""
        body = f"`{cmd}`, jobs {jobs}, cores {args.cores}:\n\n```\n" + "\n".join(out) + "\n```"
        DOC.write_text(replace_section(DOC.read_text(encoding="utf-8"), args.write_docs, body), encoding="utf-8")
        print(f"wrote the figures marked {args.write_docs!r} in {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
