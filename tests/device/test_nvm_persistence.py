"""NVM persistence after each kind of state change (docs/tokens.md "What a device keeps",
docs/power.md "Power cuts during NVM writes"): the device changes one thing, is power-cycled, and
must come back with ALL of its state as the bench's model has it: PAYG state, credit, token count,
invalid streak and lockout (STATUS against the model), the used counts (an accepted token stays
used), and, where the DUT reports it, a valid NVM record. The request counter of the Metrics bridge
continues after the cycle and never repeats."""

from __future__ import annotations

import pytest

RTC_AHEAD_S = 600  # far beyond the credit tolerance


def cycle_and_check(session, power_cycle):
    """Status against the model, a power cycle, then the whole status against the model again
    (and the NVM record's CRC where the DUT reports it)."""
    session.check_streak("before the power cycle")
    report = power_cycle()
    assert report.boot_banner, "no boot banner after the power cycle"
    session.check_streak("after the power cycle")
    dut = session.dut
    if dut.offers("nvm"):
        info = dut.nvm_info()
        assert info.crc_ok and info.slot != "-", f"after the power cycle the NVM record is not valid: {info}"


@pytest.mark.catches(
    "reused_token_accepted",
    "count_not_persisted",
    "provisioning_not_persisted",
    "backfeed_from_uart",
    "used_counts_not_persisted",
    "rtc_lost_on_power_loss",
)
def test_state_persists_after_token_accepted(token_session, tokens, power_cycle):
    """docs/tokens.md "What a device keeps": the state is stored after every valid token: an invalid
    token (streak 1), then a valid ADD (count, used counts and credit move, the streak resets) and
    an older one entered out of order; after a power cycle everything is the model's, and both
    tokens are already used while the one between them, never entered, is still accepted."""
    s = token_session
    if s.dut.offers("rtc_set"):
        s.advance(RTC_AHEAD_S)
    older, skipped, newer = tokens.add_days(1), tokens.add_days(2), tokens.add_days(3)
    assert s.expect(tokens.invalid(seed=1)).result == "invalid"
    assert s.expect(newer).result == "accepted"
    assert s.expect(older).result == "accepted"
    cycle_and_check(s, power_cycle)
    for token in (newer, older):
        assert s.expect(token).result == "already_used", f"ADD at count {token.count} accepted again after the cycle"
    assert s.expect(skipped).result == "accepted"
    s.check_streak()


@pytest.mark.catches(
    "count_not_persisted",
    "provisioning_not_persisted",
    "backfeed_from_uart",
    "no_lockout",
    "lockout_not_persisted",
    "streak_saved_late",
    "lock_end_saved_late",
)
def test_state_persists_after_lockout_started(token_session, tokens, power_cycle):
    """docs/tokens.md "Brute-force lockout": the lockout must survive off/on, and with it the credit
    bought before it: an ADD, then invalid tokens until entry locks; after a power cycle the credit,
    count, streak and remaining lock are the model's, and a valid token is refused as locked."""
    s = token_session
    assert s.expect(tokens.add_days(2)).result == "accepted"
    seed = 0
    while s.model.locked_until <= s.now():
        seed += 1
        assert seed <= 20, "the profile's lockout schedule never locks: nothing to check"
        assert s.expect(tokens.invalid(seed=seed)).result == "invalid"
    cycle_and_check(s, power_cycle)
    assert s.expect(tokens.add_days(1)).result == "locked"


@pytest.mark.catches("count_not_persisted", "provisioning_not_persisted", "backfeed_from_uart")
def test_state_persists_after_payg_disabled(token_session, tokens, power_cycle):
    """docs/tokens.md "What a device keeps" (PAYG on or disabled): after DISABLE_PAYG the device
    stays unlocked through a power cycle, with the count of the DISABLE token (so it is already
    used) and no streak."""
    s = token_session
    assert s.expect(tokens.add_days(1)).result == "accepted"
    disable = tokens.disable()
    assert s.expect(disable).result == "accepted"
    assert s.model.payg_disabled
    cycle_and_check(s, power_cycle)
    assert s.expect(disable).result == "already_used"
    s.check_streak()


@pytest.mark.catches(
    "count_not_persisted", "provisioning_not_persisted", "backfeed_from_uart", "metrics_counter_not_persisted"
)
@pytest.mark.needs("metrics_bridge")
def test_request_counter_persists(token_session, tokens, power_cycle, measure):
    """docs/protocol.md "Metrics bridge", OpenPAYGO Metrics `request_count` (incremented on request,
    not on response): each export's counter is the previous one plus one, across a power cycle
    too, so the server never sees a counter twice (it would take a replay for a new request);
    the token state is the model's before and after. Measurements: the counters."""
    s = token_session
    assert s.expect(tokens.add_days(1)).result == "accepted"
    first = s.dut.metrics_export().request_count
    second = s.dut.metrics_export().request_count
    measure("rc_first", first)
    measure("rc_before_cycle", second, expected=first + 1)
    assert second == first + 1, f"two exports in a row gave request counts {first} and {second}"
    cycle_and_check(s, power_cycle)
    after = s.dut.metrics_export().request_count
    measure("rc_after_cycle", after, expected=second + 1)
    assert after == second + 1, (
        f"after a power cycle the request count is {after}; before it the last was {second}: "
        + ("it repeats a count already sent" if after <= second else "it skipped counts")
    )
