"""Which device test catches which fault is said once, by the `catches` marker
(bench/detection/catalogue.py): read from the suite's files, checked against the simulator's
catalogue, and every fault is named by at least one test."""

from __future__ import annotations

import pytest

from bench.detection.catalogue import CATALOGUE, MarkerError, build_catalogue, marked_tests
from bench.sim.faults import CATALOGUE as SIM_FAULTS


def test_every_fault_is_caught_by_at_least_one_marked_test():
    assert list(CATALOGUE) == list(SIM_FAULTS)
    lonely = [name for name, f in CATALOGUE.items() if not f.caught_by]
    assert not lonely, f"faults no device test's catches marker names: {lonely}"
    assert all(t.startswith("tests/device/test_") and "::test_" in t for f in CATALOGUE.values() for t in f.caught_by)


def _suite(tmp_path, body: str):
    (tmp_path / "test_x.py").write_text("import pytest\n\n" + body, encoding="utf-8")
    return tmp_path


def test_markers_are_read_without_importing_the_suite(tmp_path):
    suite = _suite(
        tmp_path,
        '@pytest.mark.catches("no_lockout", "key_echoed")\n@pytest.mark.quick\n'
        'def test_a():\n    raise SystemExit("never imported")\n\n\ndef test_b():\n    pass\n',
    )
    marked = marked_tests(suite)
    assert list(marked.values()) == [("no_lockout", "key_echoed")] and next(iter(marked)).endswith("test_x.py::test_a")
    assert build_catalogue(suite)["no_lockout"].caught_by == tuple(marked)


@pytest.mark.parametrize(
    "decorator, message",
    [
        ('@pytest.mark.catches("no_such_fault")', "names no_such_fault, which the simulator's fault catalogue"),
        ("@pytest.mark.catches(NAME)", "takes fault names as plain strings"),
    ],
)
def test_a_marker_the_catalogue_cannot_use_is_refused_naming_the_test(tmp_path, decorator, message):
    suite = _suite(tmp_path, f"{decorator}\ndef test_a():\n    pass\n")
    with pytest.raises(MarkerError, match=message) as e:
        marked_tests(suite)
    assert "test_x.py::test_a" in str(e.value)
