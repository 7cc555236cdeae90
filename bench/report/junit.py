"""Read a JUnit XML file back into per-test outcomes (for the bench's own detection checks)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CaseResult:
    nodeid: str
    outcome: str  # passed | failed | error | skipped
    message: str


def nodeid_of(classname: str, name: str) -> str:
    """`tests.device.test_x` + `test_y` → `tests/device/test_x.py::test_y` (module-level tests)."""
    return classname.replace(".", "/") + ".py::" + name


_RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


def read_junit(path: Path) -> dict[str, CaseResult]:
    """One result per test; where a test has several entries (a teardown error), the worst."""
    results: dict[str, CaseResult] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        nodeid = nodeid_of(case.get("classname", ""), case.get("name", ""))
        outcome, message = "passed", ""
        for tag, name in (("error", "error"), ("failure", "failed"), ("skipped", "skipped")):
            el = case.find(tag)
            if el is not None:
                outcome, message = name, el.get("message", "")
                break
        previous = results.get(nodeid)
        if previous is None or _RANK[outcome] > _RANK[previous.outcome]:
            results[nodeid] = CaseResult(nodeid, outcome, message)
    return results
