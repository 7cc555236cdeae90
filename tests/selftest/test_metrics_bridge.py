"""The Metrics device tests in bridge mode (docs/rigs/virtual-bridge.toml): the simulated device
has no network link, and the bench relays its requests over the UART (METRICS EXPORT / IMPORT,
bench/dut/metrics_relay.py). Every Metrics test must run and pass there as in direct mode:
none skipped, none failed."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.selftest import background
from tests.selftest.device_suite import ROOT, run_device_suite

RIG = ROOT / "docs" / "rigs" / "virtual-bridge.toml"
TESTS = ROOT / "tests" / "device" / "test_metrics.py"


def metrics_tests() -> set[str]:
    return {
        f"tests/device/test_metrics.py::{node.name}"
        for node in ast.parse(TESTS.read_text()).body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }


@background.scenario
def bridge_mode(tmp: Path) -> tuple[dict, str, Path]:
    results, output = run_device_suite(tmp, args=("--rig", str(RIG), "-k", "metrics"))
    return results, output, tmp / "run" / "logs"


def test_metrics_tests_pass_in_bridge_mode(request):
    expected = metrics_tests()
    assert len(expected) >= 6, expected
    results, output, logs = background.result(request, bridge_mode)
    ran = {n: r for n, r in results.items() if n in expected}
    assert set(ran) == expected, f"not run in bridge mode: {sorted(expected - set(ran))}\n{output}"
    not_passed = {n: f"{r.outcome}: {r.message}" for n, r in ran.items() if r.outcome != "passed"}
    assert not not_passed, f"Metrics tests that did not pass in bridge mode: {not_passed}\n{output}"
    # and the bench really was the modem: every test's traffic shows relayed sessions
    for nodeid in expected:
        name = nodeid.split("::")[1]
        log = next(logs.glob(f"*{name}.log")).read_text()
        assert "METRICS EXPORT" in log and "metrics relay: rc=" in log and "METRICS IMPORT" in log, (
            f"{name}: no relayed session in its traffic log"
        )
