"""The fault catalogue as the detection matrix judges it: each simulator defect (its name, layer
and description, bench/sim/faults.py) with the device tests that must catch it, read from the
`catches` marker on each device test. The marker is the one place that says which test catches
which fault: the matrix, the self-tests' expectations and docs/tests.md's column come from it.

The suite's files are read as text (ast), not imported: the marker's arguments must be plain
strings."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from bench.locations import checkout_root
from bench.sim.faults import CATALOGUE as SIM_FAULTS
from bench.suites import DEVICE_SUITE

MARKER = "catches"
EXPLORES = "explores"  # a random exploration: may fail on any fault beyond the ones it names


@dataclass(frozen=True)
class Fault:
    name: str
    layer: str  # firmware | decoder | board
    description: str
    caught_by: tuple[str, ...]  # device test node ids (relative to the checkout: tests/device/...)


class MarkerError(ValueError):
    """A `catches` marker the catalogue cannot use (a name that is not a fault, not a string)."""


def _prefix(suite: Path) -> str:
    root = checkout_root()
    try:
        return suite.relative_to(root).as_posix() + "/" if root is not None else ""
    except ValueError:
        return ""


def _faults_of(node: ast.FunctionDef, where: str) -> tuple[str, ...]:
    out: list[str] = []
    for dec in node.decorator_list:
        if isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute) and dec.func.attr == MARKER:
            for arg in dec.args:
                if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                    raise MarkerError(f"{where}: @pytest.mark.{MARKER} takes fault names as plain strings")
                out.append(arg.value)
    return tuple(out)


def marked_tests(suite: Path = DEVICE_SUITE) -> dict[str, tuple[str, ...]]:
    """node id -> the faults its `catches` marker names (tests without one are left out)."""
    prefix, out = _prefix(suite), {}
    for path in sorted(suite.glob("test_*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                nodeid = f"{prefix}{path.name}::{node.name}"
                faults = _faults_of(node, nodeid)
                unknown = [f for f in faults if f not in SIM_FAULTS]
                if unknown:
                    raise MarkerError(
                        f"{nodeid}: @pytest.mark.{MARKER} names {', '.join(unknown)}, which the "
                        "simulator's fault catalogue (bench/sim/faults.py) does not have"
                    )
                if faults:
                    out[nodeid] = faults
    return out


def _is_marker(dec: ast.expr, name: str) -> bool:
    target = dec.func if isinstance(dec, ast.Call) else dec
    return isinstance(target, ast.Attribute) and target.attr == name


def explorer_tests(suite: Path = DEVICE_SUITE) -> frozenset[str]:
    """The node ids of tests marked `explores` (the random walk): such a test must fail on the
    faults its `catches` marker names and pass on the good device, and may fail on any other fault
    (finding a defect nobody aimed it at is its purpose, never a false alarm)."""
    prefix, out = _prefix(suite), set()
    for path in sorted(suite.glob("test_*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and any(_is_marker(d, EXPLORES) for d in node.decorator_list):
                out.add(f"{prefix}{path.name}::{node.name}")
    return frozenset(out)


def build_catalogue(suite: Path = DEVICE_SUITE) -> dict[str, Fault]:
    """Every simulator fault, in catalogue order, with the tests that catch it."""
    marked = marked_tests(suite)
    return {
        name: Fault(name, f.layer, f.description, tuple(t for t, faults in marked.items() if name in faults))
        for name, f in SIM_FAULTS.items()
    }


CATALOGUE = build_catalogue()
EXPLORERS = explorer_tests()
