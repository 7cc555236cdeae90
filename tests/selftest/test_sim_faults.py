"""The simulator's faults are typed (bench/sim/faults.py): a `Fault` member per catalogue entry,
its value the name rig files, CLI options and records use. The code a fault changes tests for the
member, never for a string, so a misspelt fault cannot be a condition that is silently never true."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bench.sim import faults
from bench.sim.faults import CATALOGUE, Fault, validate
from bench.sim.firmware_config import FirmwareConfig

SIM = Path(faults.__file__).parent


def test_a_fault_is_its_catalogue_name():
    assert list(CATALOGUE) == [f.value for f in Fault] and all(type(name) is str for name in CATALOGUE)
    for name, fault in CATALOGUE.items():
        assert fault == name and Fault(name) is fault and fault.name == name.upper()
        assert fault.layer in ("firmware", "decoder", "board") and fault.description
    assert Fault.NO_LOCKOUT in frozenset({"no_lockout"}) and "no_lockout" in frozenset({Fault.NO_LOCKOUT})


def test_validate_gives_the_faults_or_names_the_unknown_ones():
    assert validate(["key_echoed", "no_lockout"]) == (Fault.KEY_ECHOED, Fault.NO_LOCKOUT)
    with pytest.raises(ValueError, match=r"^unknown simulator fault\(s\) no_lockuot; known: accepts_starting_code, "):
        validate(["no_lockout", "no_lockuot"])


def test_a_firmware_build_holds_faults_and_refuses_a_misspelt_one():
    assert FirmwareConfig(faults=frozenset({"key_echoed"})).faults == {Fault.KEY_ECHOED}
    assert all(type(f) is Fault for f in FirmwareConfig(faults=frozenset({"key_echoed"})).faults)
    with pytest.raises(ValueError, match="unknown simulator fault"):
        FirmwareConfig(faults=frozenset({"key_echoes"}))


def test_no_simulator_module_tests_a_fault_by_its_name_as_a_string():
    found = [
        f"{path.relative_to(SIM)}:{node.lineno}: {node.value!r}"
        for path in sorted(SIM.rglob("*.py"))
        if path.name != "faults.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in CATALOGUE
    ]
    assert not found, f"use the Fault member instead: {found}"
