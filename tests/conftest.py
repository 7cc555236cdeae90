"""The bench's own test sessions (`pytest` in the checkout): what concerns them and not a lab's
device runs, which get everything from the bench's plugin (the root conftest registers nothing)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from bench.fixtures.keys import RUN_PLACE_KEY

_SELFTEST_REPORTS = pytest.StashKey[Path]()


def _runs_selftests(config: pytest.Config) -> bool:
    """Whether the session collects the bench's self-tests (tests/selftest, or a folder holding it)."""
    selftests = (Path(str(config.rootpath)) / "tests" / "selftest").resolve()
    for arg in config.args:
        path = (Path(str(config.invocation_params.dir)) / arg.split("::", 1)[0]).resolve()
        if path == selftests or path in selftests.parents or selftests in path.parents:
            return True
    return False


@pytest.hookimpl(trylast=True)  # after the bench's plugin has chosen where its run goes
def pytest_configure(config: pytest.Config) -> None:
    """The self-tests' own device-suite run goes to a temporary folder, not into reports/: that is
    the history a lab reads (`paygo-bench history`), and a developer's self-test session is not a
    run of a device. Kept when the session fails, removed when it passes; `--report-dir` still puts
    it where it says."""
    if _runs_selftests(config):  # the self-tests' `paygo-bench run`s never write into a lab's results database
        os.environ.pop("PAYGO_BENCH_RESULTS_DB", None)
    place = config.stash.get(RUN_PLACE_KEY, None)
    if place is None or place.report_dir is not None or place.path is not None or not _runs_selftests(config):
        return
    place.root = config.stash[_SELFTEST_REPORTS] = Path(tempfile.mkdtemp(prefix="paygo-selftest-reports-"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    folder = session.config.stash.get(_SELFTEST_REPORTS, None)
    if folder is not None and exitstatus == pytest.ExitCode.OK:
        shutil.rmtree(folder, ignore_errors=True)
