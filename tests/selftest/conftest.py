"""Start the long background work as soon as collection is done, so it overlaps the other
self-tests instead of following them: the background scenarios of the selected modules
(tests/selftest/background.py), then the fault-detection suite runs (tests/selftest/device_suite.py),
on one pool of PAYGO_SELFTEST_JOBS workers."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench.detection.runner import bytecode_cache_env
from tests.selftest import background
from tests.selftest.device_suite import (
    DETECTION_MODULE,
    DETECTION_RUNS_KEY,
    JOBS,
    no_reset_selection,
    selected_faults,
    start_detection_runs,
)

POOL_KEY = pytest.StashKey[ThreadPoolExecutor]()
SCRATCH_KEY = pytest.StashKey[Path]()


def scratch_dirs(config: pytest.Config) -> Callable[[str], Path]:
    """mktemp(name) for the background work, which starts before any fixture exists: numbered
    folders under one per-session folder (made when first needed), removed when the session
    passes, kept when it fails."""
    numbers = itertools.count()

    def mktemp(name: str) -> Path:
        if SCRATCH_KEY not in config.stash:
            config.stash[SCRATCH_KEY] = Path(tempfile.mkdtemp(prefix="paygo-selftest-"))
        path = config.stash[SCRATCH_KEY] / f"{name}{next(numbers)}"
        path.mkdir()
        return path

    return mktemp


@pytest.fixture
def server(start_metrics_server):
    """A Metrics server for the test (the plugin's factory, defaults: the rig's DUT registered)."""
    return start_metrics_server()


@pytest.fixture
def server_dut(server):
    """The device `server` knows, with its key: what a device under test would be provisioned with.
    Not named `dut`: that is the plugin's DUT adapter, which other fixtures ask for."""
    return server.registry.get(server.registry.serials()[0])


def pytest_configure(config: pytest.Config) -> None:
    """Every child process of the session (suite runs, scenarios, simulators) shares one bytecode
    cache (bench/detection/runner.py `bytecode_cache_env`)."""
    env = bytecode_cache_env()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = env["PYTHONPYCACHEPREFIX"]


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests that wait for background work go last (those with a scenario, then the
    fault-detection ones, in the order their work was submitted), so the main thread does its own
    tests while the pool works instead of waiting early."""

    def rank(item: pytest.Item) -> int:
        if item.nodeid.startswith(DETECTION_MODULE):
            return 2
        return 1 if background.wanted(item) else 0

    items.sort(key=rank)  # stable: the order inside each group is kept


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    mktemp = scratch_dirs(session.config)
    subprocess._USE_VFORK = False  # type: ignore[attr-defined]  # threads starting processes: runner.start_runs
    pool = ThreadPoolExecutor(JOBS, thread_name_prefix="selftest-background")
    session.config.stash[POOL_KEY] = pool
    session.config.stash[background.FUTURES_KEY] = background.start(session.items, pool, mktemp)
    if any(i.nodeid.startswith(DETECTION_MODULE) for i in session.items):
        session.config.stash[DETECTION_RUNS_KEY] = start_detection_runs(
            selected_faults(session.items),
            mktemp,
            no_reset=no_reset_selection(session.items),
            pool=pool,
            reduced=True,
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    pool = session.config.stash.get(POOL_KEY, None)
    if pool is not None:  # interrupted before the tests waited for it all: leave nothing running
        pool.shutdown(wait=False, cancel_futures=True)
    scratch = session.config.stash.get(SCRATCH_KEY, None)
    if scratch is not None:
        if exitstatus == pytest.ExitCode.OK:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            session.config.get_terminal_writer().line(f"self-test background runs kept in {scratch}")


# -- results databases for the history self-tests (tests/selftest/test_history*.py) ------------


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server for the session (tests/selftest/pg_server.py), started on first use."""
    from tests.selftest.pg_server import Server

    server = Server().start()
    yield server
    server.stop()


@pytest.fixture
def pg_url(request) -> str:
    """A fresh database on the PostgreSQL server; skipped, saying why, when there is none."""
    server = request.getfixturevalue("pg_server")
    if server.url is None:
        pytest.skip(f"no PostgreSQL server for the results-database tests: {server.why_not}")
    return server.fresh_database()


@pytest.fixture(params=["local", "sqlite", "postgresql"])
def db(request, tmp_path) -> str | None:
    """The history's database: None (reports/history.sqlite, kept equal to the records), a
    results database in an SQLite file, or one on a real PostgreSQL server."""
    if request.param == "local":
        return None
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lab-results.sqlite'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_db(request, tmp_path) -> str:
    """A results database shared by stations: an SQLite file, or a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lab-results.sqlite'}"
    return request.getfixturevalue("pg_url")
