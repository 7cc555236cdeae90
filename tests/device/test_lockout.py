"""Brute-force protection (shared/reference/openpaygo.md §2): consecutive invalid tokens lock token
entry, on the schedule the DUT profile declares (rig file dut.lockout_*; default the reference
firmware's: errors 1-2 free,
error n locks 2^(n-2) minutes, capped at 512 minutes, streak capped at 11). Locks and streaks
are the model's predictions; waits are skipped by setting the DUT's RTC forward."""

from __future__ import annotations

import pytest

MARGIN_S = 5  # past a lockout's end by this much: clear of the readout and jump tolerance


def enter_invalid(session, tokens, seeds) -> list[int]:
    """Enter one invalid token per seed; assert each is invalid; the lock each imposed (s)."""
    locks = []
    for seed in seeds:
        code = tokens.invalid(seed=seed)
        assert session.expect(code).result == "invalid"
        locks.append(max(0, session.model.locked_until - session.now()))
    return locks


@pytest.mark.needs("factory_reset", "rtc", "rtc_set")
def test_lockout_schedule(token_session, tokens, lockout):
    """§2 Brute-force lockout, reference C schedule: errors 1 and 2 are free; error n >= 3 locks
    token entry for 2^(n-2) minutes (2, 4 ... 512), error 11 and later for 512 minutes (the
    streak stops counting at 11). After each error the DUT's streak and remaining lock match
    the model; a valid token entered while locked is refused as locked (with the seconds left);
    the RTC is then set past the lockout. Finally the valid token is accepted and the streak
    resets. Catches: no_lockout."""
    s = token_session
    valid = tokens.add_days(1)
    errors = (lockout.max_streak or 11) + 1  # one past the streak cap
    minutes = []
    for n in range(1, errors + 1):
        (lock,) = enter_invalid(s, tokens, [n])
        minutes.append(round(lock / 60))
        s.check_streak()
        if lock:
            assert s.expect(valid).result == "locked"
            s.advance(lock + MARGIN_S)
            s.check_streak()
    assert any(minutes), f"the bench's lockout schedule never locks ({minutes}): nothing was checked"
    assert s.expect(valid).result == "accepted"
    s.check_streak()


def test_already_used_neither_counts_nor_resets(token_session, tokens):
    """§2 (reference C): an already-used token is not an invalid one (it neither adds to the
    streak nor resets it): invalid, three already-used entries, invalid, invalid -> the third
    invalid locks entry (streak 3), not earlier and not later.
    Catches: no_lockout, reused_token_accepted."""
    s = token_session
    used = tokens.add_days(1)
    assert s.expect(used).result == "accepted"
    enter_invalid(s, tokens, [1])
    for _ in range(3):
        assert s.expect(used).result == "already_used"
    s.check_streak()
    assert enter_invalid(s, tokens, [2]) == [0]
    s.check_streak()
    (lock,) = enter_invalid(s, tokens, [3])
    assert lock > 0 and s.model.invalid_streak == 3
    s.check_streak()


def test_valid_token_resets_streak(token_session, tokens):
    """§2 (reference C): a valid token resets the invalid streak: invalid, invalid, valid,
    invalid, invalid leaves entry open (streak 2); one more invalid locks it.
    Catches: no_lockout."""
    s = token_session
    enter_invalid(s, tokens, [1, 2])
    assert s.expect(tokens.add_days(1)).result == "accepted"
    s.check_streak()
    assert enter_invalid(s, tokens, [3, 4]) == [0, 0]
    s.check_streak()
    (lock,) = enter_invalid(s, tokens, [5])
    assert lock > 0
    s.check_streak()


def test_lockout_survives_power_cycle(token_session, tokens, power_cycle):
    """§2: the lockout must survive an off/on cycle (the docs require it; the HDK does not store
    it): three invalid tokens lock entry; after a power cycle the DUT is still locked for the
    rest of the time, with the same count, and refuses a valid token as locked.
    Catches: lockout_not_persisted, no_lockout, count_not_persisted, provisioning_not_persisted,
    backfeed_from_uart (no reboot), rtc_lost_on_power_loss (the schedule test before it set the
    RTC hours ahead: a clock restarting from its epoch moves the lockout's end hours away)."""
    s = token_session
    (*_, lock) = enter_invalid(s, tokens, [1, 2, 3])
    assert lock > 0
    s.check_streak()
    power_cycle()
    s.check_streak()
    assert s.expect(tokens.add_days(1)).result == "locked"


@pytest.mark.needs("factory_reset", "rtc", "rtc_set")
def test_locked_entry_is_not_decoded(token_session, tokens):
    """§2: while entry is locked a token is answered `locked` without being decoded: an invalid
    one does not grow the streak and a VALID one is not consumed: once the lockout is over the
    same valid token is accepted, and the streak resets. Catches: no_lockout."""
    s = token_session
    valid = tokens.add_days(1)
    (*_, lock) = enter_invalid(s, tokens, [1, 2, 3])
    assert lock > 0
    assert s.expect(valid).result == "locked"
    assert s.expect(tokens.invalid(seed=4)).result == "locked"
    s.check_streak()
    s.advance(lock + MARGIN_S)
    assert s.expect(valid).result == "accepted"
    s.check_streak()
    assert s.model.invalid_streak == 0
