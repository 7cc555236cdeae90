"""What the DUT keeps through a power cycle (openpaygo.md §2: NVM state; instruments.md §5)."""

from __future__ import annotations


def test_provisioning_survives_power_cycle(provisioned_dut, power_cycle):
    """openpaygo.md §2: factory data (serial, key, starting code) lives in NVM.
    Catches: provisioning_not_persisted, backfeed_from_uart (no reboot)."""
    before = provisioned_dut.identify()
    assert before.serial_number is not None, "the DUT does not report a serial right after provisioning"
    power_cycle()
    after = provisioned_dut.identify()
    assert after.serial_number == before.serial_number, (
        f"after a power cycle the DUT reports serial {after.serial_number!r}, before it {before.serial_number!r}"
    )


def test_token_state_survives_power_cycle(token_session, tokens, power_cycle):
    """openpaygo.md §2–3e: the token count, the used counts and the credit survive a power cycle,
    so an accepted token stays used. Catches: count_not_persisted, provisioning_not_persisted,
    reused_token_accepted (after the cycle), backfeed_from_uart (no reboot)."""
    first = tokens.add_days(1)
    token_session.expect(first)
    token_session.expect(tokens.add_days(2))
    before = token_session.check_status()
    power_cycle()
    after = token_session.check_status()
    assert after.active_until == before.active_until, "the credit changed across the power cycle"
    out = token_session.expect(first)
    assert out.result == "already_used", f"a token accepted before the power cycle was {out.result} after it"
