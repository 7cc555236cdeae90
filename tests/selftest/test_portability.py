"""Hosts without pseudo-terminals (Windows): the virtual rig links the device over
socket://127.0.0.1:<port>, still opened through pyserial, and the whole device suite runs."""

from __future__ import annotations

from tests.selftest.device_suite import run_device_suite


def test_device_suite_over_a_socket_link(tmp_path):
    rig = tmp_path / "socket-rig.toml"
    rig.write_text('[station]\nid = "virtual-socket"\n\n[sim]\nlink = "socket"\n')
    results, output = run_device_suite(tmp_path, args=["--rig", str(rig)])
    assert results and all(r.outcome == "passed" for r in results.values()), output
    bring_up = (tmp_path / "run" / "logs" / "bring-up.log").read_text()
    assert "DUT link socket://127.0.0.1:" in bring_up, bring_up[:500]
