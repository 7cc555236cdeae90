"""A pytest plugin for the detection runner's traced runs (`-p bench.detection.hook_windows`):
when PAYGO_HOOK_TRACE_DIR is set, it writes `<dir>/windows.txt`, the time.monotonic() span of each
test (setup, call and teardown) and of each shared fixture's setup, so the simulator's hook trace
(bench/sim/hook_trace.py) can be told apart test by test (bench/detection/hooks.py).

A shared (session, package, module or class scoped) fixture is set up inside the first test that
needs it, but serves every later one: what its setup reaches belongs to no single test."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO

import pytest

from bench.sim.hook_trace import ENV

WINDOWS_FILE = "windows.txt"
_out: IO[str] | None = None


def _write(kind: str, start: float, end: float, name: str) -> None:
    if _out is not None:
        _out.write(f"{kind} {start:.6f} {end:.6f} {name}\n")


def pytest_configure(config: pytest.Config) -> None:
    global _out
    folder = os.environ.get(ENV)
    if folder:
        _out = (Path(folder) / WINDOWS_FILE).open("a", encoding="utf-8", buffering=1)


def pytest_unconfigure(config: pytest.Config) -> None:
    global _out
    if _out is not None:
        _out.close()
        _out = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    start = time.monotonic()
    try:
        return (yield)
    finally:
        _write("test", start, time.monotonic(), item.nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest):
    start = time.monotonic()
    try:
        return (yield)
    finally:
        if fixturedef.scope != "function":
            _write("shared", start, time.monotonic(), fixturedef.argname)
