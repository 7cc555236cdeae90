"""Brute-force protection (docs/tokens.md "Brute-force lockout"): consecutive invalid tokens lock
token entry, on the schedule the DUT profile declares (rig file dut.lockout_*; default the
reference firmware's: errors 1-2 free, error n locks 2^(n-2) minutes, capped at 512 minutes,
streak capped at 11). Locks and streaks are the model's predictions.

Every claim about the lock is observed through a token's answer, so it holds on a protocol that
reports no streak or lock time (the HDK's): while entry is locked any token is refused without
being decoded (a valid one is not accepted, an already-used one does not say "already used").
Lockouts end by setting the DUT's clock past them (`rtc_set`) or, without it, by waiting on the
real clock within the rig's `dut.lockout_wait_budget_s`.
"""

from __future__ import annotations

import time

import pytest

# A lock that must outlast a power cycle is made this many times as long as a power cycle takes
# (a test build's short lockout minute would otherwise run out while the DUT is off).
CYCLES_OF_LOCK = 3


def enter_invalid(session, tokens, seeds) -> list[int]:
    """Enter one invalid token per seed; assert each is answered invalid; the lock each imposed (s)."""
    locks = []
    for seed in seeds:
        code = tokens.invalid(seed=seed)
        assert session.expect(code).result == "invalid"
        locks.append(session.lock_left())
    return locks


def clear_streak(session, tokens) -> None:
    """Start from no invalid streak (an earlier test may have left one): a valid token resets it."""
    if session.model.invalid_streak:
        assert session.expect(tokens.add_days(0)).result == "accepted"


def lock_up(session, tokens, at_least_s: float = 0, first_seed: int = 100) -> int:
    """Invalid tokens until entry is locked for at least `at_least_s` (climbing the schedule, each
    lock waited out, where the first is shorter); the lock left, s."""
    seed = first_seed
    while session.lock_left() <= at_least_s:
        if session.lock_left():
            assert session.end_lock(), (
                f"a lock of {session.lock_left()} s cannot be waited out within dut.lockout_wait_budget_s"
            )
        seed += 1
        assert seed < first_seed + 40, "the profile's lockout schedule never locks this long: nothing to check"
        enter_invalid(session, tokens, [seed])
    return session.lock_left()


@pytest.mark.catches("no_lockout")
def test_lockout_schedule(token_session, tokens, lockout, rig, measure):
    """Brute-force lockout, the profile's schedule (reference: errors 1 and 2 free; error n >= 3
    locks entry for 2^(n-2) minutes, 2, 4 ... 512; error 11 and later 512, the streak stops at
    11). After each error the DUT's streak and remaining lock match the model (where reported),
    and a valid token entered while locked is refused; the lock is then run out: the clock set
    past it (`rtc_set`, the whole schedule), else waited on the real clock as far up the schedule
    as `dut.lockout_wait_budget_s` allows (at least the first lock is entered and checked).
    Finally the valid token is accepted and the streak resets.
    Measurements: lockout_levels_checked, lockout_waited (real-clock seconds)."""
    s = token_session
    clear_streak(s, tokens)
    valid = tokens.add_days(1)
    errors = (lockout.max_streak or 11) + 1  # one past the streak cap
    levels: list[int] = []
    budget = rig.dut.lockout_wait_budget_s
    started = time.monotonic()
    for n in range(1, errors + 1):
        coming = lockout.seconds(min(s.model.invalid_streak + 1, lockout.max_streak or errors))
        spent = time.monotonic() - started
        if levels and coming and not s.can_advance and spent + coming > budget:
            s.dut.link.log.note(
                f"lockout: the next lock ({coming} s) would pass dut.lockout_wait_budget_s: "
                f"{len(levels)} level(s) checked"
            )
            break
        (lock,) = enter_invalid(s, tokens, [n])
        s.check_streak(f"after invalid token {n}")
        if lock:
            assert s.expect(valid).result == "locked", f"after invalid token {n} a valid token was not refused"
            levels.append(lock)
            if not s.end_lock(max(0.0, budget - (time.monotonic() - started))):
                break  # the first lock is longer than the budget: it was entered and checked
    measure("lockout_levels_checked", len(levels))
    measure("lockout_waited", round(time.monotonic() - started, 1), "s")
    assert levels, f"the profile's lockout schedule never locks within {errors} errors: nothing was checked"
    if not s.lock_left():
        assert s.expect(valid).result == "accepted"
        s.check_streak("after the valid token")


@pytest.mark.catches("reused_token_accepted", "no_lockout")
def test_already_used_neither_counts_nor_resets(token_session, tokens):
    """(reference firmware) An already-used token is not an invalid one: it neither adds to the
    streak nor resets it. invalid, 3x already used (each answered "already used": entry open),
    invalid (still open), invalid: now entry locks (the already-used token is refused as locked),
    not earlier and not later."""
    s = token_session
    clear_streak(s, tokens)
    used = tokens.add_days(1)
    assert s.expect(used).result == "accepted"
    enter_invalid(s, tokens, [1])
    for _ in range(3):
        assert s.expect(used).result == "already_used"
    s.check_streak()
    assert enter_invalid(s, tokens, [2]) == [0]
    assert s.expect(used).result == "already_used", "entry locked after two invalid tokens"
    (lock,) = enter_invalid(s, tokens, [3])
    assert lock > 0 and s.model.invalid_streak == 3
    assert s.expect(used).result == "locked", "entry did not lock at the third invalid token"
    s.check_streak()


@pytest.mark.catches("reused_token_accepted", "no_lockout")
def test_valid_token_resets_streak(token_session, tokens):
    """(reference firmware) A valid token resets the invalid streak: invalid, invalid, valid,
    invalid, invalid leaves entry open (an already-used token is answered "already used"); one
    more invalid locks it (the same token is refused as locked)."""
    s = token_session
    clear_streak(s, tokens)
    used = tokens.add_days(1)
    assert s.expect(used).result == "accepted"
    enter_invalid(s, tokens, [1, 2])
    assert s.expect(tokens.add_days(1)).result == "accepted"
    s.check_streak()
    assert enter_invalid(s, tokens, [3, 4]) == [0, 0]
    assert s.expect(used).result == "already_used", "entry locked: the valid token did not reset the streak"
    (lock,) = enter_invalid(s, tokens, [5])
    assert lock > 0
    assert s.expect(used).result == "locked", "entry did not lock at the third invalid token after the reset"
    s.check_streak()


@pytest.mark.catches(
    "count_not_persisted",
    "provisioning_not_persisted",
    "backfeed_from_uart",
    "no_lockout",
    "lockout_not_persisted",
    "rtc_lost_on_power_loss",
    "streak_saved_late",
    "lock_end_saved_late",
)
def test_lockout_survives_power_cycle(token_session, tokens, power_cycle):
    """The lockout must survive an off/on cycle (the requirements say so; the HDK does not store
    it): invalid tokens until entry is locked for three times as long as the slowest power cycle
    of the run so far (bring-up's included); after a power cycle the DUT is still locked for the rest of the time, with the same
    count, and refuses a valid token. Where the DUT's clock can be set it is first set a day ahead
    (`clock_ahead`), so a clock that restarts at power loss shows as a lock a day too long."""
    s = token_session
    s.clock_ahead()
    clear_streak(s, tokens)
    lock_up(s, tokens, CYCLES_OF_LOCK * power_cycle.slowest_cycle_s)
    s.check_streak("locked, before the power cycle")
    power_cycle()
    assert s.lock_left() > 0, (
        f"the power cycle took longer than {CYCLES_OF_LOCK}x the slowest before it: the lock ran out"
    )
    s.check_streak("after the power cycle")
    assert s.expect(tokens.add_days(1)).result == "locked", "after the power cycle a valid token was accepted"


@pytest.mark.catches("no_lockout")
def test_locked_entry_is_not_decoded(token_session, tokens, measure):
    """While entry is locked a token is answered `locked` without being decoded: an invalid one
    does not grow the streak and a valid one is not applied (the credit and count stay the
    model's). Once the lockout is over (the clock set past it, or waited out within
    `dut.lockout_wait_budget_s`) the same valid token is accepted: it was not consumed; and the
    streak resets. Measurement: valid_token_retried_after_lock (1: the last part was checked)."""
    s = token_session
    clear_streak(s, tokens)
    valid = tokens.add_days(1)
    lock_up(s, tokens)
    assert s.expect(valid).result == "locked"
    assert s.expect(tokens.invalid(seed=4)).result == "locked"
    s.check_streak("after a valid and an invalid token entered while locked")
    retried = s.end_lock()
    measure("valid_token_retried_after_lock", int(retried))
    if retried:
        assert s.expect(valid).result == "accepted", "the token refused while locked was consumed"
        s.check_streak()
        assert s.model.invalid_streak == 0
