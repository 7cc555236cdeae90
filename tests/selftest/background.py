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
from types import CodeType
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


def _names_used(code: CodeType) -> set[str]:
    """The global names a function's code (and the functions and lambdas inside it) refers to."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= _names_used(const)
    return names


def wanted(item: pytest.Item) -> set[str]:
    """The scenarios ("module:function") the selected test waits for: those its own function or
    one of its fixtures names, from its module."""
    module = getattr(getattr(item, "module", None), "__name__", None)
    functions = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for defs in getattr(info, "name2fixturedefs", {}).values():
        functions += [d.func for d in defs]
    names: set[str] = set()
    for fn in functions:
        code = getattr(fn, "__code__", None)
        if code is not None:
            names |= {f"{fn.__module__}:{n}" for n in _names_used(code)}
    return {n for n in names if n in SCENARIOS and n.split(":", 1)[0] == module}


def start(items: Iterable[pytest.Item], pool: ThreadPoolExecutor, mkdir: Callable[[str], Path]) -> dict[str, Future]:
    """Submit the scenarios the selected tests wait for (not a whole module's for one test of it)."""
    names = set().union(*(wanted(item) for item in items))
    return {name: pool.submit(fn, mkdir(name.rsplit(":", 1)[1])) for name, fn in SCENARIOS.items() if name in names}


def result(request: pytest.FixtureRequest, fn: Callable[[Path], Any]) -> Any:
    """The scenario's result: from the background pool, or run now if it was not started."""
    future = request.config.stash.get(FUTURES_KEY, {}).get(_name(fn))
    if future is not None:
        return future.result()
    return fn(request.getfixturevalue("tmp_path_factory").mktemp(fn.__name__))
