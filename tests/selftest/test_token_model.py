"""The bench's device model (bench.openpaygo.model) against the reference semantics
(docs/tokens.md): the full procedure, windows, used counts, time and the lockout."""

from __future__ import annotations

import math

import pytest

from bench.openpaygo.model import DOCS_LOCKOUT, NO_LOCKOUT, DeviceModel, LockoutSchedule
from bench.openpaygo.tokens import TokenGenerator, TokenKind, full_test_procedure

KEY = "bc41ec9530f6dac86b1a29ab82edc5fb"
SC = 516959010
ADD, SET, DIS, SYNC = TokenKind.ADD_TIME, TokenKind.SET_TIME, TokenKind.DISABLE_PAYG, TokenKind.COUNTER_SYNC
T0 = 1_700_000_000
DAY = 86400


def gen(count: int = 1, **kw) -> TokenGenerator:
    return TokenGenerator(KEY, SC, count, **kw)


def model(count: int = 1, **kw) -> DeviceModel:
    kw.setdefault("lockout", NO_LOCKOUT)
    return DeviceModel(KEY, SC, count, **kw)


def outcome(m: DeviceModel, code: str, now: int = T0) -> tuple:
    p = m.enter(code, now)
    return p.outcome, p.kind, p.value, p.count


# -- the full procedure (docs/tokens.md "Full test procedure G1–G12") ---------------------------
@pytest.mark.parametrize("divider", [1, 4])
def test_full_procedure_days(divider):
    m = model(time_divider=divider)
    now = T0
    for step in full_test_procedure(gen(time_divider=divider)):
        now += step.wait_seconds
        p = m.enter(step.code, now)
        assert p.outcome == step.expect, step.step
        assert m.days_left(now) == step.days, step.step
        if step.token is not None and p.outcome == "accepted":
            assert (p.kind, p.count) == (step.token.kind, step.token.count), step.step
    assert m.last_count == 666


def test_g12_late_days_not_counted():
    g, m = gen(), model()
    m.enter(g.set_days(0).code, T0)
    m.enter(g.add_days(1).code, T0 + 48 * 3600)
    assert m.active_until == T0 + 48 * 3600 + DAY and m.days_left(T0 + 48 * 3600) == 1


def test_g11b_add_while_disabled_does_not_relock_but_set_does():
    g, m = gen(), model()
    m.enter(g.disable().code, T0)
    m.enter(g.add_days(0).code, T0)
    assert m.payg_disabled and m.is_active(T0 + 10**6) and m.days_left(T0) == math.inf
    m.enter(g.set_days(2).code, T0)
    assert not m.payg_disabled and m.days_left(T0) == 2 and not m.is_active(T0 + 2 * DAY)


def test_add_extends_unexpired_time():
    g, m = gen(), model()
    m.enter(g.set_days(3).code, T0)
    m.enter(g.add_days(2).code, T0 + DAY)  # not expired: added to active_until, not to now
    assert m.active_until == T0 + 5 * DAY and m.seconds_left(T0 + DAY) == 4 * DAY


# -- windows ------------------------------------------------------------------------------------
def test_jump_plus_64_accepted():
    m = model(2)
    assert outcome(m, gen().at_count(ADD, 1, 66).code) == ("accepted", ADD, 1, 66)


def test_jump_plus_65_refused():
    m = model(2)
    assert outcome(m, gen().at_count(SET, 1, 67).code) == ("invalid", None, None, None)
    assert m.last_count == 2


def test_sync_plus_100_accepted_plus_101_refused():
    g = gen()
    m = model(1)
    assert outcome(m, g.at_count(SYNC, None, 101).code) == ("accepted", SYNC, None, 101)
    m = model(1)
    assert outcome(m, g.at_count(SYNC, None, 102).code)[0] == "invalid"
    m = model(1)  # a DISABLE only gets the normal +64 window
    assert outcome(m, g.at_count(DIS, None, 66).code)[0] == "invalid"


def test_sync_minus_63_accepted_minus_64_refused():
    """The lower sync window (last-64 < count) moves the count down. Odd counts <= last are
    used (docs/tokens.md "Used counts"), so only an even-count 999 can sit there: last is odd here."""
    g = gen()
    m = model(101)
    assert outcome(m, g.at_count(SYNC, None, 38).code) == ("accepted", SYNC, None, 38)
    assert m.last_count == 38
    assert outcome(m, g.at_count(SYNC, None, 38).code)[0] == "already_used"  # not re-accepted (unlike openpaygo)
    m = model(100)
    assert outcome(m, g.at_count(SYNC, None, 36).code) == ("already_used", SYNC, None, 36)
    assert m.last_count == 100


def test_odd_sync_below_last_is_already_used():
    m = model(100)
    assert outcome(m, gen().at_count(SYNC, None, 99).code)[0] == "already_used"


def test_sync_down_forgets_counts_above():
    g = gen()
    m = model(1)
    a40 = g.at_count(ADD, 1, 40)
    assert outcome(m, a40.code)[0] == "accepted"
    assert outcome(m, g.at_count(SYNC, None, 30).code)[0] == "accepted"
    assert outcome(m, a40.code)[0] == "accepted"  # the server re-issues counts above the sync


def test_older_add_window_edges():
    """last-16 < count < last, even: with last 40, count 26 is the oldest accepted, 24 refused."""
    g = gen()
    m = model(1)
    assert outcome(m, g.at_count(ADD, 1, 40).code)[0] == "accepted"
    assert outcome(m, g.at_count(ADD, 2, 24).code) == ("already_used", ADD, 2, 24)
    assert outcome(m, g.at_count(ADD, 3, 26).code) == ("accepted", ADD, 3, 26)
    assert outcome(m, g.at_count(ADD, 3, 26).code)[0] == "already_used"
    assert outcome(m, g.at_count(ADD, 4, 38).code) == ("accepted", ADD, 4, 38)
    assert m.last_count == 40 and m.days_left(T0) == 8


def test_older_set_refused():
    g = gen()
    m = model(1)
    s3 = g.set_days(1)
    m.enter(g.at_count(ADD, 1, 6).code, T0)
    assert outcome(m, s3.code)[0] == "already_used"


def test_u2d_older_add_below_set_refused():
    g, m = gen(), model()
    u2a, u2b, u2c = g.add_days(5), g.set_days(10), g.add_days(3)
    assert outcome(m, u2b.code)[0] == "accepted"
    assert outcome(m, u2a.code)[0] == "already_used"
    assert outcome(m, u2c.code)[0] == "accepted"
    assert outcome(m, u2a.code)[0] == "already_used"  # U2D: the older ADD stays refused
    assert m.days_left(T0) == 13


def test_leading_zero_token():
    m = model(493)
    assert outcome(m, "048662027") == ("accepted", SET, 17, 523)  # G8Q
    assert outcome(model(493), "48662027")[0] == "invalid"  # the leading zero is part of the token


def test_starting_code_is_not_a_token():
    """openpaygo accepts the starting code as a count-0 ADD 0 ("Starting code accepted" in
    docs/tokens.md). Here it is invalid."""
    for count in (0, 1, 5):
        m = model(count)
        assert outcome(m, f"{SC:09d}")[0] == "invalid"
        assert m.last_count == count and m.active_until == 0


@pytest.mark.parametrize("raw, kind", [(996, None), (997, None), (998, DIS), (999, SYNC)])
def test_special_values_before_parity(raw, kind):
    code = gen().craft(raw, 4)  # even count
    p = model(1).enter(code, T0)
    if kind is None:
        assert p.outcome == "invalid"
    else:
        assert (p.outcome, p.kind, p.value, p.count) == ("accepted", kind, None, 4)


def test_disable_marks_older_used():
    g, m = gen(), model()
    u3a = g.add_days(1)
    assert outcome(m, g.disable().code)[0] == "accepted"
    assert outcome(m, u3a.code)[0] == "already_used"


def test_restricted_and_format_checks():
    m = model(1, restricted_digits=True)
    assert outcome(m, "588224011")[0] == "invalid"  # plain digits on a restricted device
    assert outcome(m, "314114432231135")[0] == "invalid"  # a 5 is not in the 1-4 set
    assert outcome(m, "314114432231134") == ("accepted", ADD, 1, 2)
    m = model(1)
    assert outcome(m, "247264959011")[0] == "invalid"  # extended token on a standard device
    for junk in ("", "58822401a", "588 224 011", "5882240110"):
        assert outcome(model(1), junk)[0] == "invalid"


# -- lockout (docs/tokens.md "Brute-force lockout") ---------------------------------------------
def invalid_codes(n: int) -> list[str]:
    g = gen()
    return [g.invalid(seed) for seed in range(n)]


def lock_sequence(m: DeviceModel, n: int) -> list[int]:
    """Enter n invalid tokens, each once the previous lock has run out; the locks imposed."""
    now, locks = T0, []
    for code in invalid_codes(n):
        p = m.enter(code, now)
        assert p.outcome == "invalid"
        locks.append(p.lock_seconds)
        now += p.lock_seconds
    return locks


def test_reference_lockout_schedule():
    """Reference C: two free errors, then 2^(n-2) minutes, capped at 512 (error 11 onward)."""
    m = DeviceModel(KEY, SC, 1)
    minutes = [s // 60 for s in lock_sequence(m, 13)]
    assert minutes == [0, 0, 2, 4, 8, 16, 32, 64, 128, 256, 512, 512, 512]
    assert m.invalid_streak == 11  # capped like the C InvalidTokenCount


def test_lockout_schedule_is_configurable():
    assert [s // 60 for s in lock_sequence(DeviceModel(KEY, SC, 1, lockout=DOCS_LOCKOUT), 11)] == [
        1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 512,
    ]  # fmt: skip
    free_then_one = LockoutSchedule(free_errors=2, first_minutes=1, max_minutes=512, max_streak=None)
    assert [s // 60 for s in lock_sequence(DeviceModel(KEY, SC, 1, lockout=free_then_one), 13)] == [
        0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 512,
    ]  # fmt: skip


def test_locked_entry_is_not_decoded_or_counted():
    g = gen()
    m = DeviceModel(KEY, SC, 1)
    for code in invalid_codes(3):
        m.enter(code, T0)
    assert m.locked_until == T0 + 120 and m.invalid_streak == 3
    good = g.add_days(1)
    p = m.enter(good.code, T0 + 60)
    assert (p.outcome, p.kind, p.count, p.lock_seconds) == ("locked", None, None, 60)
    assert m.last_count == 1 and m.invalid_streak == 3  # neither decoded nor counted
    p = m.enter(invalid_codes(4)[3], T0 + 60)
    assert p.outcome == "locked" and m.invalid_streak == 3
    assert m.enter(good.code, T0 + 120).outcome == "accepted"
    assert m.invalid_streak == 0


def test_already_used_neither_counts_nor_resets():
    g = gen()
    m = DeviceModel(KEY, SC, 1)
    token = g.add_days(1)
    assert m.enter(token.code, T0).outcome == "accepted"
    bad = invalid_codes(3)
    m.enter(bad[0], T0)
    m.enter(bad[1], T0)
    assert m.enter(token.code, T0).outcome == "already_used"
    assert m.invalid_streak == 2
    p = m.enter(bad[2], T0)
    assert p.lock_seconds == 120 and m.invalid_streak == 3


def test_valid_token_resets_streak():
    g = gen()
    m = DeviceModel(KEY, SC, 1)
    bad = invalid_codes(3)
    m.enter(bad[0], T0)
    m.enter(bad[1], T0)
    assert m.enter(g.add_days(1).code, T0).outcome == "accepted"
    p = m.enter(bad[2], T0)
    assert p.lock_seconds == 0 and m.invalid_streak == 1


# -- helpers --------------------------------------------------------------------------------------
def test_copy_and_snapshot_are_independent():
    g = gen()
    m = model()
    m.enter(g.add_days(1).code, T0)
    before = m.snapshot()
    twin = m.copy()
    twin.enter(g.add_days(2).code, T0)
    assert m.snapshot() == before and twin.last_count == 4 and m.last_count == 2
    assert twin.snapshot().used >= {2, 4}
