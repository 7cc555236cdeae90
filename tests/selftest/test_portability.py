"""Hosts without pseudo-terminals (Windows): the virtual rig links the device over
socket://127.0.0.1:<port>, still opened through pyserial, and the whole device suite runs."""

from __future__ import annotations

from pathlib import Path

from tests.selftest import background
from tests.selftest.device_suite import run_device_suite


@background.scenario
def suite_over_a_socket(tmp: Path):
    rig = tmp / "socket-rig.toml"
    rig.write_text('[station]\nid = "virtual-socket"\n\n[sim]\nlink = "socket"\n')
    return tmp, *run_device_suite(tmp, args=["--rig", str(rig)])


def test_device_suite_over_a_socket_link(request):
    tmp, results, output = background.result(request, suite_over_a_socket)
    assert results and all(r.outcome == "passed" for r in results.values()), output
    bring_up = (tmp / "run" / "logs" / "bring-up.log").read_text()
    assert "DUT link socket://127.0.0.1:" in bring_up, bring_up[:500]
