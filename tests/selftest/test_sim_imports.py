"""The simulator stands where hardware stands: bench/sim imports the standard library, openpaygo,
cbor2, jwt (the modem's JWT signing), siphash24 (SipHash in C), bench.openpaygo, bench.secret (a secret that prints as ***)
and itself, never the host side (bench.dut, bench.power, bench.station,
bench.rig, bench.fixtures, ...) that it is there to test (docs/simulator.md)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import bench.sim

SIM = Path(bench.sim.__file__).parent
ALLOWED = ("openpaygo", "cbor2", "jwt", "siphash24", "bench.openpaygo", "bench.secret", "bench.sim")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_simulator_imports_nothing_of_the_host_side():
    found = {
        f"{path.relative_to(SIM)}: {name}"
        for path in sorted(SIM.rglob("*.py"))
        for name in _imports(path)
        if name.split(".")[0] not in sys.stdlib_module_names
        and not any(name == a or name.startswith(a + ".") for a in ALLOWED)
    }
    assert not found, sorted(found)
