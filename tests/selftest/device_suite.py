"""The device-suite runner the self-tests share: a re-export of bench/detection/runner.py (the
`paygo-bench selftest` command uses the same one), plus what ties the fault-detection runs to
this pytest session."""

from __future__ import annotations

from typing import Iterable

import pytest

from bench.detection.runner import (  # noqa: F401  (re-exported for the self-tests)
    GOOD, ROOT, RUN_FIRST, DetectionRuns, jobs_from_env, run_device_suite, start_detection_runs)

DETECTION_MODULE = "tests/selftest/test_fault_detection.py"
JOBS = jobs_from_env()
DETECTION_RUNS_KEY = pytest.StashKey[DetectionRuns]()


def selected_faults(items: Iterable[pytest.Item]) -> set[str]:
    """The faults whose detection test the session selected."""
    return {
        item.callspec.params["fault"]
        for item in items
        if item.nodeid.startswith(DETECTION_MODULE) and "fault" in getattr(getattr(item, "callspec", None), "params", {})
    }
