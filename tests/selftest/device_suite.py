"""Run the device suite in a child pytest against a virtual rig, and read back what happened."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import pytest

from bench.report.junit import CaseResult, read_junit

ROOT = Path(__file__).resolve().parents[2]


def run_device_suite(
    out_dir: Path, faults=(), args=(), timeout_s: float = 600, plots: bool = False
) -> tuple[dict[str, CaseResult], str]:
    """plots=False by default: the self-tests judge outcomes, and drawing every PNG of every
    suite run would cost them time, not evidence (the report tests turn them on)."""
    junit = out_dir / "junit.xml"
    cmd = [
        sys.executable, "-m", "pytest", "tests/device", "-q", "-p", "no:cacheprovider",
        *(() if plots else ("--no-plots",)),
        "--report-dir", str(out_dir / "run"), f"--junitxml={junit}", "-o", "junit_family=xunit2",
        *[a for f in faults for a in ("--sim-fault", f)], *args,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    output = proc.stdout[-12000:] + proc.stderr[-2000:]
    if not junit.exists():
        raise AssertionError(f"the device suite did not run (exit {proc.returncode}):\n{output}")
    return read_junit(junit), output


# -- the fault-detection runs (tests/selftest/test_fault_detection.py) -----------------------

DETECTION_MODULE = "tests/selftest/test_fault_detection.py"
GOOD = "good"  # the run without a fault
# The runs mostly wait on the simulated device (a 2-core machine stayed about half a core busy
# with 6 of them beside the other self-tests), so more workers finish sooner; each run takes
# ~100 MB. A slower machine can lower it.
JOBS = max(1, int(os.environ.get("PAYGO_SELFTEST_JOBS", "10")))
# Runs that take longest (a 5 s+ decode per token, 10 s boot timeouts): started first.
RUN_FIRST = ("slow_decode", "backfeed_from_uart")


@dataclass
class DetectionRuns:
    pool: ThreadPoolExecutor
    futures: dict[str, Future]


DETECTION_RUNS_KEY = pytest.StashKey[DetectionRuns]()


def selected_faults(items: Iterable[pytest.Item]) -> set[str]:
    """The faults whose detection test the session selected."""
    return {
        item.callspec.params["fault"]
        for item in items
        if item.nodeid.startswith(DETECTION_MODULE) and "fault" in getattr(getattr(item, "callspec", None), "params", {})
    }


def start_detection_runs(faults: set[str], mkdir: Callable[[str], Path]) -> DetectionRuns:
    """Submit one device-suite run per fault plus the good device (longest first); they run in
    the background until their results are asked for."""
    first = [f for f in RUN_FIRST if f in faults]
    pool = ThreadPoolExecutor(JOBS, thread_name_prefix="device-suite")
    futures: dict[str, Future] = {}
    for name in first + [GOOD] + sorted(faults - set(first)):
        futures[name] = pool.submit(run_device_suite, mkdir(name), faults=[] if name == GOOD else [name])
    return DetectionRuns(pool, futures)
