"""Run the device suite in a child pytest against a virtual rig and read back what happened.

A child process per run, because each run needs its own virtual rig and its own pytest session;
the runs mostly wait on the simulated device, so a thread pool runs many side by side.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.detection import forkserver
from bench.locations import find_root  # noqa: F401  (re-exported: bench.detection.runner.find_root)
from bench.report.junit import CaseResult, read_junit
from bench.sim.hook_trace import ENV as HOOK_TRACE_ENV

TRACE_DIR = "hooks"  # a traced run's hook trace, in its folder


class SuiteDidNotRun(AssertionError):
    """The child pytest left no JUnit file (it crashed before running tests).

    An AssertionError so a self-test that calls the runner fails (not errors) on it."""


ROOT = Path(__file__).resolve().parents[2]

GOOD = "good"  # the run without a fault
# The runs mostly wait on the simulated device (lockouts, sessions, off times): with 10 of them
# beside the other self-tests a 2-core machine stayed about 0.7 cores busy, so more workers finish
# sooner: 7 per core, at least 10 (each run takes ~100 MB). A slower machine can lower it.
DEFAULT_JOBS = max(10, 7 * (os.cpu_count() or 1))
# The detection matrix's runs are background work beside a self-test session's own tests, which
# run one after the other on the main thread: forked (bench/detection/forkserver.py), they yield
# the CPU to it, so the session's serial part is not stretched by 14 runs sharing 2 cores with
# it. Their checks hold: they wait on simulated devices at the same niceness, and their verdicts
# are the proof (the matrix's good runs must pass). A self-test that judges a measured value
# (the RTC drift's interval) runs at the session's own niceness: a niced run reads scheduling
# delays as drift.
BACKGROUND_NICE = 10
# Runs that take longest (a 5 s+ decode per token, 10 s boot timeouts): started first.
RUN_FIRST = ("slow_decode", "backfeed_from_uart")


def bytecode_cache_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for child runs: the parent's, with compiled bytecode cached in one folder
    under the system temp directory (PYTHONPYCACHEPREFIX) even where PYTHONDONTWRITEBYTECODE is
    set. A self-test session starts a hundred and more Python processes (child pytest runs and
    their simulators); without a cache each compiles the bench and pytest rewrites its modules
    again, about 0.3 CPU-s a process. The checkout gets no __pycache__ folders."""
    env = dict(os.environ if environ is None else environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "paygo-bench-pycache"))
    return env


def jobs_from_env() -> int:
    """PAYGO_SELFTEST_JOBS, else DEFAULT_JOBS (at least 1)."""
    try:
        return max(1, int(os.environ.get("PAYGO_SELFTEST_JOBS", str(DEFAULT_JOBS))))
    except ValueError:
        return DEFAULT_JOBS


def run_device_suite(
    out_dir: Path,
    faults: Iterable[str] = (),
    args: Sequence[str] = (),
    timeout_s: float = 600,
    plots: bool = False,
    root: Path | None = None,
    paths: Sequence[str] = ("tests/device",),
    trace: bool = False,
    nice: int = 0,
) -> tuple[dict[str, CaseResult], str]:
    """plots=False by default: the self-tests judge outcomes, and drawing every PNG of every
    suite run would cost them time, not evidence (the report tests turn them on). `paths`: the
    whole device suite, or some of its tests by node id. trace: note which fault hooks each test
    reaches, in out_dir/hooks (bench/detection/hooks.py reads it). nice: added to the child's
    niceness where runs are forked (BACKGROUND_NICE for the detection matrix's runs)."""
    root = root or ROOT
    out_dir = Path(out_dir).resolve()  # the child runs in the checkout, not in our cwd
    junit = out_dir / "junit.xml"
    env = bytecode_cache_env()
    if trace:
        (out_dir / TRACE_DIR).mkdir(parents=True, exist_ok=True)
        env[HOOK_TRACE_ENV] = str(out_dir / TRACE_DIR)
    pytest_args = [
        *paths,
        "-q",
        "-p",
        "no:cacheprovider",
        # The device suite uses no hypothesis; its pytest plugin costs each run ~0.4 s of start-up.
        "-p",
        "no:hypothesispytest",
        *(("-p", "bench.detection.hook_windows") if trace else ()),
        *(() if plots else ("--no-plots",)),
        "--report-dir",
        str(out_dir / "run"),
        f"--junitxml={junit}",
        "-o",
        "junit_family=xunit2",
        *[a for f in faults for a in ("--sim-fault", f)],
        *args,
    ]
    cmd = [sys.executable, "-m", "pytest", *pytest_args]
    if forkserver.available() and root.resolve() == ROOT:  # the server imports this checkout's bench
        proc: subprocess.CompletedProcess[str] | forkserver.Finished = forkserver.run_pytest(
            pytest_args, root, env, timeout_s, nice=nice
        )
    else:
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout_s, env=env)
    output = proc.stdout[-12000:] + proc.stderr[-2000:]
    if not junit.exists():
        raise SuiteDidNotRun(f"the device suite did not run (exit {proc.returncode}):\n{output}")
    return read_junit(junit), output


# The same catalogue on a device built without factory reset and RTC set, judged from its device
# ledger (docs/ledger.md): a column of the matrix. Its runs are keyed <fault>@no-reset.
NO_RESET = "@no-reset"
NO_RESET_RIG = "docs/rigs/no-reset-virtual.toml"


@dataclass(frozen=True)
class RunSpec:
    """One device-suite run: its key (a fault name, GOOD, or good-NN, with NO_RESET for the
    no-reset column), the faults switched on, extra pytest arguments and the tests to run."""

    key: str
    faults: tuple[str, ...]
    args: tuple[str, ...] = ()
    paths: tuple[str, ...] = ("tests/device",)
    trace: bool = False


@dataclass
class DetectionRuns:
    pool: ThreadPoolExecutor
    futures: dict[str, Future]
    dirs: dict[str, Path]


def good_key(index: int, numbered: bool) -> str:
    """GOOD for the self-test's single good run; good-01..good-NN when runs are counted."""
    return f"{GOOD}-{index:02d}" if numbered else GOOD


def plan_runs(
    faults: Iterable[str],
    good_runs: int = 1,
    numbered: bool = False,
    selection: Callable[[str], Sequence[str]] | None = None,
) -> list[RunSpec]:
    """The longest runs first, so the pool's tail is short; then the good runs (traced: which
    tests reach which fault hooks), then the rest. selection(fault): the tests of a fault's
    reduced run (bench/detection/hooks.py); without it every fault runs the whole suite."""
    faults = set(faults)
    first = [f for f in RUN_FIRST if f in faults]
    numbered = numbered or good_runs > 1
    goods = [RunSpec(good_key(i, numbered), (), trace=True) for i in range(1, good_runs + 1)]

    def spec(fault: str) -> RunSpec:
        return RunSpec(fault, (fault,), paths=tuple(selection(fault)) if selection else ("tests/device",))

    return [spec(f) for f in first] + goods + [spec(f) for f in sorted(faults - set(first))]


def plan_no_reset_runs(faults: Iterable[str], catalogue, rig: str = NO_RESET_RIG) -> list[RunSpec]:
    """The no-reset column: the good device's whole suite once, then each fault on the tests the
    catalogue names for it (only those: a fault there is caught when one of them fails)."""
    specs = [RunSpec(GOOD + NO_RESET, (), ("--rig", rig))]
    for f in sorted(set(faults)):
        specs.append(RunSpec(f + NO_RESET, (f,), ("--rig", rig), tuple(catalogue[f].caught_by)))
    return specs


def longest_first(specs: Iterable[RunSpec]) -> list[RunSpec]:
    """The no-reset column's good run (a whole suite from the ledger), then every run of a slow
    fault (RUN_FIRST, in both columns), then the rest in their order (the fault column's good
    run before its faults, the no-reset column's short runs last): the pool's tail stays short."""

    def rank(spec: RunSpec) -> int:
        return 0 if spec.key == GOOD + NO_RESET else 1 if spec.faults and spec.faults[0] in RUN_FIRST else 2

    return sorted(specs, key=rank)  # stable


def start_runs(
    specs: Sequence[RunSpec],
    mkdir: Callable[[str], Path],
    jobs: int,
    args: Sequence[str] = (),
    timeout_s: float = 600,
    root: Path | None = None,
    pool: ThreadPoolExecutor | None = None,
) -> DetectionRuns:
    """Submit every run to a pool of `jobs` workers (or the given pool); they run in the
    background until their results are asked for (or the pool is shut down)."""
    # Many threads starting processes at once: vfork() shares the parent's memory with the child
    # until it execs, which other running threads can disturb (CPython gh-91401; seen here as
    # "[Errno 14] Bad address" from exec); fork() is the documented fail-safe.
    subprocess._USE_VFORK = False  # type: ignore[misc]
    pool = pool or ThreadPoolExecutor(max(1, jobs), thread_name_prefix="device-suite")
    futures: dict[str, Future] = {}
    dirs: dict[str, Path] = {}
    for spec in specs:
        dirs[spec.key] = mkdir(spec.key)
        futures[spec.key] = pool.submit(
            run_device_suite,
            dirs[spec.key],
            faults=spec.faults,
            args=(*spec.args, *args),
            timeout_s=timeout_s,
            root=root,
            paths=spec.paths,
            trace=spec.trace,
            nice=BACKGROUND_NICE,
        )
    return DetectionRuns(pool, futures, dirs)


def start_detection_runs(
    faults: set[str],
    mkdir: Callable[[str], Path],
    jobs: int | None = None,
    no_reset: Iterable[str] | None = None,
    pool: ThreadPoolExecutor | None = None,
    reduced: bool = False,
) -> DetectionRuns:
    """One run per fault plus one good device (the fault-detection self-test's runs), and the
    no-reset column's good run and runs for the faults in `no_reset` (None: no column).
    reduced: each fault on its reduced selection while the full-matrix record holds
    (bench/detection/hooks.py), else the whole suite."""
    from bench.detection.catalogue import CATALOGUE
    from bench.detection.hooks import reduced_selection

    selection = reduced_selection(ROOT, CATALOGUE) if reduced else None
    column = plan_no_reset_runs(no_reset, CATALOGUE) if no_reset is not None else []
    specs = longest_first(column[:1] + plan_runs(faults, 1, selection=selection) + column[1:])
    return start_runs(specs, lambda key: mkdir(key.replace("@", "_")), jobs or jobs_from_env(), pool=pool)
