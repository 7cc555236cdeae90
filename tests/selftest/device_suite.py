"""The device-suite runner the self-tests share: a re-export of bench/detection/runner.py (the
`paygo-bench selftest` command uses the same one), plus what ties the fault-detection runs to
this pytest session."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from bench.detection.runner import (  # noqa: F401  (re-exported for the self-tests)
    GOOD,
    NO_RESET,
    ROOT,
    RUN_FIRST,
    DetectionRuns,
    jobs_from_env,
    run_device_suite,
    start_detection_runs,
)

DETECTION_MODULE = "tests/selftest/test_fault_detection.py"
JOBS = jobs_from_env()
DETECTION_RUNS_KEY = pytest.StashKey[DetectionRuns]()


NO_RESET_TEST = "test_fault_is_caught_without_factory_reset"


def selected_faults(items: Iterable[pytest.Item], no_reset: bool = False) -> set[str]:
    """The faults whose detection test the session selected (with no_reset: the no-reset column's)."""
    return {
        item.callspec.params["fault"]
        for item in items
        if item.nodeid.startswith(DETECTION_MODULE)
        and "fault" in getattr(getattr(item, "callspec", None), "params", {})
        and (NO_RESET_TEST in item.nodeid) == no_reset
    }


def no_reset_selection(items: Iterable[pytest.Item]) -> set[str] | None:
    """The faults of the no-reset column the session selected; None if it selected none of the
    column's tests (not even its good run)."""
    items = list(items)
    if not any(i.nodeid.startswith(DETECTION_MODULE) and "without_factory_reset" in i.nodeid for i in items):
        return None
    return selected_faults(items, no_reset=True)
