"""A test that needs a capability the DUT lacks is skipped with that reason and listed as not
covered; it is never passed silently."""

from __future__ import annotations

from tests.selftest.device_suite import run_device_suite


def test_missing_capabilities_skip_with_the_reason_and_are_listed(tmp_path):
    rig = tmp_path / "limited.toml"
    rig.write_text('[station]\nid = "virtual-limited"\n\n[dut]\ncapabilities = ["token", "status"]\n')
    results, output = run_device_suite(tmp_path, args=["--rig", str(rig)])
    skipped = {n: r.message for n, r in results.items() if r.outcome == "skipped"}
    assert "tests/device/test_identity.py::test_provisioning_round_trip" in skipped, output
    assert "tests/device/test_tokens.py::test_valid_token_accepted" in skipped, output
    lacking = ("factory_reset", "identity", "rtc", "rtc_set", "nvm", "extended_tokens", "boot_reason", "metrics_bridge")
    for nodeid, message in skipped.items():
        assert "not covered" in message and any(f"'{cap}'" in message for cap in lacking), (nodeid, message)
    assert not [n for n, r in results.items() if r.outcome in ("failed", "error")], output
    assert "not covered (DUT lacks the capability)" in output
    assert "test_provisioning_round_trip: the reference adapter/DUT does not offer 'factory_reset'" in output
