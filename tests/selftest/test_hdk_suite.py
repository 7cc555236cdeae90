"""The device suite on the virtual HDK rig (docs/rigs/hdk-virtual.toml): whatever the HDK
protocol cannot exercise is skipped as "not covered", never failed and never passed silently,
and what it can exercise passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.selftest.device_suite import run_device_suite

RIG = Path(__file__).resolve().parents[2] / "docs" / "rigs" / "hdk-virtual.toml"
_T = "tests/device/"
# The HDK can do these: they must pass.
SUPPORTED = {_T + "test_power.py::test_device_silent_when_unpowered", _T + "test_power.py::test_power_cycle_reboots_device"}
# These need what the HDK lacks, named in their skip reason.
NOT_COVERED = {_T + "test_identity.py::test_identity": "'identity'"}


def test_device_suite_on_the_hdk(tmp_path):
    results, output = run_device_suite(tmp_path, args=("--rig", str(RIG)))
    broken = {n: r.message for n, r in results.items() if r.outcome in ("failed", "error")}
    assert not broken, f"tests failed or errored on the HDK rig: {broken}\n{output}"
    skipped = {n: r.message for n, r in results.items() if r.outcome == "skipped"}
    for nodeid, message in skipped.items():
        assert "not covered" in message and "the hdk adapter/DUT does not offer" in message, (nodeid, message)
    for nodeid, capability in NOT_COVERED.items():
        assert capability in skipped.get(nodeid, ""), (nodeid, results.get(nodeid), output)
    passed = {n for n, r in results.items() if r.outcome == "passed"}
    assert SUPPORTED <= passed, (SUPPORTED - passed, output)
    assert "not covered (DUT lacks the capability)" in output
