"""What the DUT keeps through a power cycle (docs/tokens.md "What a device keeps"; docs/power.md)."""

from __future__ import annotations

import pytest


@pytest.mark.catches("provisioning_not_persisted", "backfeed_from_uart")
@pytest.mark.needs("identity")
def test_provisioning_survives_power_cycle(provisioned_dut, power_cycle):
    """docs/tokens.md "What a device keeps": factory data (serial, key, starting code) lives in NVM."""
    before = provisioned_dut.identify()
    assert before.serial_number is not None, "the DUT does not report a serial right after provisioning"
    power_cycle()
    after = provisioned_dut.identify()
    assert after.serial_number == before.serial_number, (
        f"after a power cycle the DUT reports serial {after.serial_number!r}, before it {before.serial_number!r}"
    )


@pytest.mark.catches(
    "reused_token_accepted",
    "count_not_persisted",
    "provisioning_not_persisted",
    "backfeed_from_uart",
    "used_counts_not_persisted",
)
@pytest.mark.quick
def test_token_state_survives_power_cycle(token_session, tokens, power_cycle):
    """docs/tokens.md "What a device keeps": the token count, the used counts and the credit survive a power cycle,
    so an accepted token stays used."""
    first = tokens.add_days(1)
    token_session.expect(first)
    token_session.expect(tokens.add_days(2))
    before = token_session.check_status("before the power cycle")
    power_cycle()
    after = token_session.check_status("after the power cycle")
    assert after.active_until == before.active_until, "the credit changed across the power cycle"
    out = token_session.expect(first)
    assert out.result == "already_used", f"a token accepted before the power cycle was {out.result} after it"


@pytest.mark.catches(
    "reused_token_accepted",
    "count_not_persisted",
    "provisioning_not_persisted",
    "backfeed_from_uart",
    "used_counts_not_persisted",
)
def test_used_counts_survive_power_cycle(token_session, tokens, power_cycle):
    """docs/tokens.md "What a device keeps" (the count and the used counts, stored after every valid token),
    "What the bench adds" (reused tokens after a power cycle): three ADD tokens are generated and the newest and the
    oldest entered (unordered entry); after a power cycle both are already used, while the
    middle one, never entered, is still accepted: the used-count record came back bit for bit,
    neither lost nor set wholesale."""
    s = token_session
    oldest, middle, newest = tokens.add_days(1), tokens.add_days(2), tokens.add_days(3)
    assert s.expect(newest).result == "accepted"
    assert s.expect(oldest).result == "accepted"
    s.check_status("before the power cycle")
    power_cycle()
    s.check_status("after the power cycle")
    for token in (oldest, newest):
        out = s.expect(token)
        assert out.result == "already_used", f"ADD at count {token.count}: {out.result} after the power cycle"
    assert s.expect(middle).result == "accepted"
    s.check_status()
