"""Start the fault-detection suite runs as soon as collection is done, so they overlap the other
self-tests instead of following them (tests/selftest/device_suite.py)."""

from __future__ import annotations

import pytest

from tests.selftest.device_suite import (
    DETECTION_MODULE, DETECTION_RUNS_KEY, no_reset_selection, selected_faults, start_detection_runs)


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly or not any(i.nodeid.startswith(DETECTION_MODULE) for i in session.items):
        return
    factory = session.config._tmp_path_factory  # the tmp_path_factory fixture's object (no fixture yet)
    session.config.stash[DETECTION_RUNS_KEY] = start_detection_runs(
        selected_faults(session.items), lambda name: factory.mktemp(name),
        no_reset=no_reset_selection(session.items))


def pytest_sessionfinish(session: pytest.Session) -> None:
    runs = session.config.stash.get(DETECTION_RUNS_KEY, None)
    if runs is not None:  # interrupted before the module ran: do not leave suites running
        runs.pool.shutdown(wait=False, cancel_futures=True)
