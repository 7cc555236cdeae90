"""The documents that describe the bench stay true to it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from bench.detection.catalogue import CATALOGUE, marked_tests
from bench.detection.tests_doc import with_catches_column

ROOT = Path(__file__).resolve().parents[2]


def device_tests() -> set[str]:
    found = set()
    for path in sorted((ROOT / "tests" / "device").glob("test_*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                found.add(f"{path.name}::{node.name}")
    return found


def test_every_device_test_is_in_the_catalogue_doc():
    doc = (ROOT / "docs" / "tests.md").read_text()
    listed = set(re.findall(r"`(test_\w+\.py::test_\w+)`", doc))
    assert device_tests(), "no device tests found"
    assert listed == device_tests(), (
        f"docs/tests.md is out of date: missing {sorted(device_tests() - listed)}, stale {sorted(listed - device_tests())}"
    )


def test_the_catalogue_doc_s_catches_column_is_the_markers():
    """docs/tests.md's catches column is written from the `catches` markers: never by hand."""
    doc = (ROOT / "docs" / "tests.md").read_text()
    assert with_catches_column(doc, marked_tests()) == doc, (
        "docs/tests.md's catches column differs from the markers: python -m bench.detection.tests_doc"
    )
    for fault in CATALOGUE.values():  # and the column is the one the matrix judges by
        for test in fault.caught_by:
            row = next(
                line for line in doc.splitlines() if line.startswith(f"| `{test.removeprefix('tests/device/')}`")
            )
            assert f"`{fault.name}`" in row.rsplit("|", 2)[-2], (test, fault.name)


def test_readme_has_exactly_the_two_setup_commands_ci_runs():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^pip install -e .*$", readme, re.M)
    assert commands == ["pip install -e . && paygo-bench run", 'pip install -e ".[test]" && pytest'], commands
    assert "README.md" in (ROOT / ".ci" / "run").read_text()


def test_protocol_doc_lists_every_command_the_simulator_answers():
    doc = (ROOT / "docs" / "protocol.md").read_text()
    from bench.sim import firmware

    src = Path(firmware.__file__).read_text()
    commands = set(re.findall(r'^\s+"([A-Z]+)": self\._', src, re.M))
    assert commands, "no commands found in the simulator's dispatch table"
    for name in commands:
        assert f"`{name}" in doc, f"docs/protocol.md does not document {name}"
