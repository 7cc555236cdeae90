"""Identity and factory provisioning (docs/protocol.md "Identity" and "Provisioning")."""

from __future__ import annotations

import pytest

from bench.station.profile import provisioning_for


@pytest.mark.catches("wrong_protocol_major")
@pytest.mark.needs("identity")
@pytest.mark.quick
def test_identity(dut, rig, rig_up):
    """docs/protocol.md "Identity": the DUT names its model and firmware and speaks a compatible protocol
    major version; the boot banner agrees with ID; a pinned model/firmware (rig file) matches."""
    ident = dut.identify()
    assert ident.model, "ID reported an empty model"
    assert ident.firmware, "ID reported an empty firmware version"
    major = ident.protocol.split(".")[0]
    assert major.isdigit() and int(major) == dut.protocol_major, (
        f"the DUT speaks test protocol {ident.protocol}; this bench speaks {dut.protocol_major}.x"
    )
    banner = rig_up.first_banner.fields
    assert (banner.get("model"), banner.get("fw"), banner.get("proto")) == (
        ident.model,
        ident.firmware,
        ident.protocol,
    ), f"boot banner {rig_up.first_banner.line!r} disagrees with ID"
    if rig.dut.hardware_model:
        assert ident.model == rig.dut.hardware_model, "the DUT is not the model the rig file names"
    if rig.dut.firmware_version:
        assert ident.firmware == rig.dut.firmware_version, "the DUT runs another firmware than the rig file pins"


@pytest.mark.catches("serial_truncated", "key_echoed", "key_echoed_base64", "key_echoed_decimal")
@pytest.mark.needs("factory_reset", "identity")
@pytest.mark.quick
def test_provisioning_round_trip(dut, rig, traffic_log):
    """docs/protocol.md "Provisioning": a factory-fresh DUT takes the profile's serial, key and starting
    code; it reads the serial back exactly and never sends the key back, in any reply and in any
    encoding (hex, separated hex, base64, decimal: bench.secret.mask finds them all)."""
    dut.factory_reset(rig.link.boot_timeout_s)
    before = dut.identify()
    assert before.serial_number is None, f"after a factory reset the DUT still reports serial {before.serial_number!r}"
    leaks_before = len(traffic_log.leaks)
    confirmed = dut.provision(provisioning_for(rig.dut))
    after = dut.identify()
    dut.status()
    assert confirmed == rig.dut.serial_number, f"PROV confirmed serial {confirmed!r}, sent {rig.dut.serial_number!r}"
    assert after.serial_number == rig.dut.serial_number, (
        f"ID reads serial {after.serial_number!r} back, sent {rig.dut.serial_number!r}"
    )
    leaked = traffic_log.leaks[leaks_before:]
    assert not leaked, f"the DUT sent its secret key back over the UART ({len(leaked)} line(s), masked): {leaked[0]}"
