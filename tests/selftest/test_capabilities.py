"""A test that needs a capability the DUT lacks is skipped with that reason and listed as not
covered; it is never passed silently. And a test that needs only token entry and a status readout
runs on a DUT that offers nothing else (from its device ledger, without factory reset)."""

from __future__ import annotations

from pathlib import Path

from tests.selftest import background
from tests.selftest.device_suite import run_device_suite

# One test per capability a production DUT may lack, and the token tests it can still be given.
SELECTED = (
    "test_identity or test_provisioning_round_trip or test_extended_tokens or test_rtc_keeps_time "
    "or test_power_cycle_reports_power_on_reset or test_time_divider or test_request_counter "
    "or test_metrics_payload or test_tokens or test_credit_end"
)


@background.scenario
def limited_dut(tmp: Path):
    rig = tmp / "limited.toml"
    rig.write_text(
        '[station]\nid = "virtual-limited"\n\n[dut]\ncapabilities = ["token", "status"]\n'
        "lockout_unit_s = 1\n\n[sim]\nlockout_unit_s = 1\n"
    )
    return run_device_suite(tmp, args=["--rig", str(rig), "-k", SELECTED])


def test_missing_capabilities_skip_with_the_reason_and_are_listed(request):
    results, output = background.result(request, limited_dut)
    skipped = {n: r.message for n, r in results.items() if r.outcome == "skipped"}
    assert "tests/device/test_identity.py::test_provisioning_round_trip" in skipped, output
    assert "tests/device/test_timekeeping.py::test_rtc_keeps_time_while_unpowered" in skipped, output
    lacking = (
        "factory_reset",
        "identity",
        "rtc",
        "rtc_set",
        "nvm",
        "extended_tokens",
        "boot_reason",
        "metrics_bridge",
        "metrics_report",
    )
    for nodeid, message in skipped.items():
        assert "not covered" in message and any(f"'{cap}'" in message for cap in lacking), (nodeid, message)
    assert not [n for n, r in results.items() if r.outcome in ("failed", "error")], output
    ran = {n for n, r in results.items() if r.outcome == "passed"}
    assert {
        "tests/device/test_tokens.py::test_valid_token_accepted",
        "tests/device/test_timekeeping.py::test_credit_end_holds_while_unpowered",
    } <= ran, output
    assert "not covered (DUT lacks the capability)" in output
    assert "test_provisioning_round_trip: the reference adapter/DUT does not offer 'factory_reset'" in output
