"""Long self-test scenarios that mostly wait on the virtual rig (several device-suite sessions in
a row on one simulated device, say), started as soon as pytest has collected, on the same pool as
the fault-detection runs, so they overlap the other self-tests instead of following them. The
scenario runs in a worker and returns what it saw; the test that asked for it waits for it and
makes the assertions (so a failure is reported where it belongs).

A test module declares a scenario with `@scenario`; its test calls `result(request, fn)`. Run
alone (no pool), the scenario runs in the test itself."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

SCENARIOS: dict[str, Callable[[Path], Any]] = {}  # "module:function" -> the scenario
FUTURES_KEY = pytest.StashKey[dict]()


def _name(fn: Callable) -> str:
    return f"{fn.__module__}:{fn.__name__}"


def scenario(fn: Callable[[Path], Any]) -> Callable[[Path], Any]:
    """Register fn(tmp_dir) -> result as a background scenario of its test module."""
    SCENARIOS[_name(fn)] = fn
    return fn


def start(items: Iterable[pytest.Item], pool: ThreadPoolExecutor, mkdir: Callable[[str], Path]) -> dict[str, Future]:
    """Submit the scenarios of every module the session selected a test of."""
    modules = {item.module.__name__ for item in items if getattr(item, "module", None) is not None}
    return {
        name: pool.submit(fn, mkdir(name.rsplit(":", 1)[1]))
        for name, fn in SCENARIOS.items()
        if name.split(":", 1)[0] in modules
    }


def result(request: pytest.FixtureRequest, fn: Callable[[Path], Any]) -> Any:
    """The scenario's result: from the background pool, or run now if it was not started."""
    future = request.config.stash.get(FUTURES_KEY, {}).get(_name(fn))
    if future is not None:
        return future.result()
    return fn(request.getfixturevalue("tmp_path_factory").mktemp(fn.__name__))
