"""Boundaries of every stored value (docs/tokens.md "What a device keeps", "Stored widths"): each
quantity a device keeps is walked across the edge of its representation by real token entries,
the DUT power-cycled there, and its status checked against the model, with the tokens already
entered still refused. A firmware that keeps a value in RAM at full width but stores it
narrower (a byte, 3 bits, a signed 32-bit number) looks right until the value passes the edge
and the device restarts.
"""

from __future__ import annotations

import pytest

from bench.fixtures.dut import skip_not_covered
from bench.fixtures.tokens import SECONDS_LEFT_TOLERANCE
from bench.openpaygo.model import DAY
from bench.openpaygo.tokens import MAX_ACTIVATION_VALUE, TokenKind

BYTE = 256
MAX_COUNT = 0xFFFF  # the reference decoder's count is a u16 (docs/tokens.md "Stored widths")
U16 = 2**16  # seconds left: 18 h 12 min 16 s
INT32 = 2**31  # the signed 32-bit edge: 2038-01-19 as an RTC time, 68 years as a duration
YEARS_PAST_S = 3 * 365 * DAY  # "years in the past": far beyond any tolerance, still well before 2038


def _even_at_or_below(count: int) -> int:
    return count - count % 2


def _device_offset(s) -> int:
    """The DUT's clock minus the model's (0 where the DUT has no clock readout: its clock is then
    taken to hold the date, as the model's does)."""
    if not s.dut.offers("rtc"):
        return 0
    return int(s.dut.rtc_read()) - s.now()


def _walk_to(s, tokens, target: int) -> None:
    """ADD 0 tokens at jumps of at most 64 counts until the last count is `target` (even)."""
    while s.model.last_count < target:
        count = min(target, _even_at_or_below(s.model.last_count + 64))
        assert s.expect(tokens.at_count(TokenKind.ADD_TIME, 0, count, advance=True)).result == "accepted"


@pytest.mark.catches(
    "reused_token_accepted",
    "count_not_persisted",
    "provisioning_not_persisted",
    "backfeed_from_uart",
    "set_as_add",
    "used_counts_not_persisted",
    "rtc_lost_on_power_loss",
    "count_stored_u8",
)
def test_count_crosses_a_byte(token_session, tokens, power_cycle):
    """The token count across 255/256: from the last count the DUT has (a fresh one, or the
    ledger's), ADD tokens walk it to the next multiple of 256 less 2; a SET at 255 (mod 256) and
    ADDs at 256 and 258 cross it; power-cycled on each side; after each cycle the status is the
    model's and every token entered at the edge is refused (already used)."""
    s = token_session
    s.clock_ahead()
    edge = (s.model.last_count + 2) // BYTE * BYTE + BYTE  # the next multiple of 256 with room below it
    _walk_to(s, tokens, edge - 2)
    below = tokens.at_count(TokenKind.SET_TIME, 1, edge - 1, advance=True)
    assert s.expect(below).result == "accepted"
    power_cycle()
    s.check_status(f"count {edge - 1}, after a power cycle")
    above = [tokens.at_count(TokenKind.ADD_TIME, 1, c, advance=True) for c in (edge, edge + 2)]
    for token in above:
        assert s.expect(token).result == "accepted"
    power_cycle()
    s.check_status(f"count {edge + 2}, after a power cycle")
    for token in (below, *above):
        out = s.expect(token)
        assert out.result == "already_used", f"the token at count {token.count} was {out.result} after the power cycle"
    s.check_status()


def _enter_past_the_top(s, token) -> None:
    """A count above what the device stores: a device with a u16 count answers as if the search
    stopped at 65535 (invalid, or already used where the code also sits at a lower count: a
    hash chain this long runs into a cycle), one with a wider count accepts it; both are right,
    and the model follows the one the DUT took. One that takes it and wraps shows at the next
    status."""
    entry = s.begin(token)  # the model with no top: accepted
    got = s.finish(entry, s.dut.enter_token(entry.code))
    if got.outcome.result == "accepted":
        s.check_outcome(token, got.predicted, got.outcome)
        return
    bounded = entry.before
    bounded.max_count = MAX_COUNT
    predicted = bounded.enter(entry.code, s.now())
    s.model = bounded
    s.check_outcome(token, predicted, got.outcome)


@pytest.mark.catches(
    "count_not_persisted",
    "provisioning_not_persisted",
    "backfeed_from_uart",
    "set_as_add",
    "slow_decode",
    "rtc_lost_on_power_loss",
    "count_stored_u8",
    "count_wraps_u16",
)
def test_count_at_its_maximum(reprovisioned, power_cycle):
    """The token count at the top of its u16 (65535): provisioned at 65534 (a factory reset), a
    SET at 65535 is accepted and the DUT power-cycled: the status is the model's; then an ADD at
    65536: refused as invalid by a u16 count, or accepted by a wider
    one; either way the status stays the model's and the SET stays used, also after a power
    cycle. (The reference C decoder searches past 65535 and stores the count found modulo 65536:
    the count falls back to 0.) Each token there is 65535 hash steps: two tokens, one re-entry."""
    s, tokens = reprovisioned(token_count=MAX_COUNT - 1)
    s.clock_ahead()
    top = tokens.at_count(TokenKind.SET_TIME, 1, MAX_COUNT, advance=True)
    assert s.expect(top).result == "accepted"
    power_cycle()
    s.check_status(f"count {MAX_COUNT}, after a power cycle")
    _enter_past_the_top(s, tokens.at_count(TokenKind.ADD_TIME, 1, MAX_COUNT + 1))
    s.check_status("after a token past the top of the count")
    power_cycle()
    s.check_status("after a token past the top of the count and a power cycle")
    out = s.expect(top)
    assert out.result == "already_used", f"the SET at count {MAX_COUNT} was {out.result} after the power cycle"


@pytest.mark.catches(
    "reused_token_accepted",
    "count_not_persisted",
    "provisioning_not_persisted",
    "backfeed_from_uart",
    "used_counts_not_persisted",
    "rtc_lost_on_power_loss",
    "used_mask_stored_u8",
)
def test_used_counts_at_the_window_edges(token_session, tokens, power_cycle):
    """The used-count record at the edges of its 16-count window: with a newest ADD at N, the
    older ADDs at N-14 (the oldest even count inside the window, the record's top bits) and N-2
    (its bottom) are entered; after a power cycle both are already used, N-16 (outside the
    window) is refused, and N-4, never entered, is still accepted: the record came back bit for
    bit at both ends."""
    s = token_session
    s.clock_ahead()
    last = s.model.last_count
    newest = last + 34 - last % 2  # N-16 > last: every count below N in the window is fresh
    t = {d: tokens.at_count(TokenKind.ADD_TIME, 1, newest - d, advance=d == 0) for d in (0, 2, 4, 14, 16)}
    for d in (0, 14, 2):
        assert s.expect(t[d]).result == "accepted", f"ADD at N-{d}"
    power_cycle()
    s.check_status("after a power cycle")
    for d in (14, 2, 16):
        out = s.expect(t[d])
        assert out.result == "already_used", f"ADD at N-{d} (count {t[d].count}): {out.result} after the power cycle"
    assert s.expect(t[4]).result == "accepted", "ADD at N-4, never entered, is no longer accepted"
    s.check_status()


def _adds_to(s, tokens, seconds: int, stop_before: bool) -> None:
    """ADD tokens of the largest value until the model's credit has `seconds` left (or, with
    stop_before, the last one that stays below it)."""
    step = MAX_ACTIVATION_VALUE * DAY // tokens.time_divider
    while True:
        left = s.model.seconds_left(s.now())
        if left >= seconds or (stop_before and left + step >= seconds):
            return
        assert (
            s.expect(tokens.at_count(TokenKind.ADD_TIME, MAX_ACTIVATION_VALUE, _next_add(tokens), advance=True)).result
            == "accepted"
        )


def _next_add(tokens) -> int:
    return tokens.count + 1 if tokens.count % 2 else tokens.count + 2


@pytest.mark.catches(
    "reused_token_accepted",
    "count_not_persisted",
    "provisioning_not_persisted",
    "backfeed_from_uart",
    "set_as_add",
    "rtc_lost_on_power_loss",
    "credit_end_int32",
)
@pytest.mark.time_limit(exchanges=60)
def test_credit_end_past_2038(request, token_session, tokens, power_cycle):
    """The end of credit years ahead, across 2^31 on the DUT's clock (2038-01-19 03:14:08 UTC):
        SET 0, then ADDs of 995 days until the end is just below it, a power cycle, one more ADD
        past it, a power cycle: each time the status is the model's, and the last ADD stays used.
        The crossing is placed on the DUT's own clock where it reads it (`rtc`); else its clock is
        taken to hold the date. (Each power-cycling test here first sets the DUT's clock a day ahead
    where it can, `clock_ahead`: a clock that restarts at power loss then shows, however long the
    rig ran before.)"""
    s = token_session
    s.clock_ahead()
    assert s.expect(tokens.set_days(0)).result == "accepted"
    to_edge = INT32 - (s.now() + _device_offset(s))
    if to_edge <= DAY:
        skip_not_covered(request, "the DUT's clock is already past 2^31 (2038): the edge cannot be crossed")
    _adds_to(s, tokens, to_edge, stop_before=True)
    power_cycle()
    s.check_status("the credit ending before 2^31, after a power cycle")
    _adds_to(s, tokens, to_edge, stop_before=False)
    last = tokens.count
    power_cycle()
    s.check_status("the credit ending after 2^31, after a power cycle")
    out = s.expect(tokens.at_count(TokenKind.ADD_TIME, MAX_ACTIVATION_VALUE, last))
    assert out.result == "already_used", f"the ADD at count {last} was {out.result} after the power cycle"


def _let_pass(request, s, power_cycle, seconds: int) -> float:
    """Let `seconds` of device time pass at once: the clock set forward (`rtc_set`), else the DUT
    held off while its PSU lets the time pass (the virtual rig); the seconds the DUT's clock ran
    on its own (its drift counts over them), 0 when it was set."""
    if s.can_advance:
        s.advance(seconds)
        return 0.0
    if not power_cycle.can_skip_off_time:
        skip_not_covered(request, f"letting {seconds} s pass needs 'rtc_set' or a PSU that skips off time")
    power_cycle.off()
    s.passed_while_off(power_cycle.hold_off(seconds))  # skipped at once: can_skip_off_time
    power_cycle.on()
    return float(seconds)


def _check_credit(s, rig, ran_s: float, context: str) -> None:
    """The status's credit against the model's, allowing the profile's drift limit over the
    `ran_s` seconds the DUT's clock ran on its own (a skip, a long off) on top of the tolerance."""
    tolerance = SECONDS_LEFT_TOLERANCE + rig.dut.rtc_drift_limit_ppm * 1e-6 * ran_s
    status = s.dut.status()
    want = s.model.seconds_left(s.now())
    assert status.payg == "active" and abs(status.seconds_left - want) <= tolerance, (
        f"{context}: the DUT has {status.seconds_left} s of credit left ({status.payg}), the model "
        f"{want:.0f} s (tolerance {tolerance:.1f} s)"
    )
    assert status.token_count in (None, s.model.last_count), f"{context}: DUT token count {status.token_count}"


@pytest.mark.catches(
    "count_not_persisted",
    "provisioning_not_persisted",
    "backfeed_from_uart",
    "set_as_add",
    "rtc_lost_on_power_loss",
    "credit_runs_on_uptime",
    "rtc_stopped_unpowered",
    "rtc_drift_beyond_limit",
    "rtc_supercap_backup",
    "expiry_timer_u16",
)
@pytest.mark.time_limit(wait="unpowered_long_s")
def test_seconds_left_across_2_16(request, token_session, tokens, power_cycle, rig):
    """Seconds left across 2^16 (18 h 12 min): SET 1 day, time let pass (the clock set forward, or
    the DUT held off while the virtual rig's PSU lets it pass) until 60 s above 2^16 are left, a
    power cycle, the status the model's; 120 s more: 60 s below; the DUT then held unpowered for
    `dut.unpowered_long_s` (at once where the PSU can): the status the model's, the credit run
    down by the off time. The credit is compared within 3 s and the profile's drift limit over the
    time the DUT's clock ran on its own. Not covered with neither `rtc_set` nor such a PSU (hours
    on the real clock)."""
    s = token_session
    s.clock_ahead()
    assert s.expect(tokens.set_days(1)).result == "accepted"
    ran = _let_pass(request, s, power_cycle, DAY - U16 - 60)
    power_cycle()
    _check_credit(s, rig, ran, "60 s above 2^16 s left, after a power cycle")
    ran += _let_pass(request, s, power_cycle, 120)
    _check_credit(s, rig, ran, "60 s below 2^16 s left")
    off_s = rig.dut.unpowered_long_s
    power_cycle.off()
    s.passed_while_off(power_cycle.hold_off(off_s))
    power_cycle.on()
    _check_credit(s, rig, ran + off_s, f"below 2^16 s left, after {off_s:g} s unpowered")


@pytest.mark.catches(
    "reused_token_accepted",
    "count_not_persisted",
    "provisioning_not_persisted",
    "backfeed_from_uart",
    "set_as_add",
    "leading_zero_dropped",
    "rtc_lost_on_power_loss",
    "credit_end_int32",
    "credit_compare_int32",
)
@pytest.mark.time_limit(exchanges=120)
def test_seconds_left_past_2_31(request, token_session, tokens, power_cycle):
    """Seconds left across 2^31 (68 years of credit, 25 ADDs of 995 days): SET 0, ADDs until just
    below, a power cycle, one more past it, a power cycle: each time the status is the model's
    (a device that judges credit by a signed 32-bit difference reads expired) and the last ADD
    stays used. The end must stay below 2^32 on the DUT's clock (a u32 RTC time)."""
    s = token_session
    s.clock_ahead()
    readable = s.dut.max_seconds_left
    if readable is not None and readable < INT32:
        skip_not_covered(
            request, f"the {s.dut.name} adapter's 'status' reads at most {readable} s left: 2^31 s cannot be seen"
        )
    assert s.expect(tokens.set_days(0)).result == "accepted"
    step = MAX_ACTIVATION_VALUE * DAY // tokens.time_divider
    if s.now() + _device_offset(s) + INT32 + step >= 2 * INT32:
        skip_not_covered(request, "the DUT's clock is too far ahead: 2^31 s of credit would end past 2^32")
    _adds_to(s, tokens, INT32, stop_before=True)
    power_cycle()
    s.check_status("just under 2^31 s left, after a power cycle")
    _adds_to(s, tokens, INT32, stop_before=False)
    s.check_status("2^31 s left or more")
    last = tokens.count
    power_cycle()
    s.check_status("2^31 s left or more, after a power cycle")
    out = s.expect(tokens.at_count(TokenKind.ADD_TIME, MAX_ACTIVATION_VALUE, last))
    assert out.result == "already_used", f"the ADD at count {last} was {out.result} after the power cycle"


@pytest.mark.catches(
    "reused_token_accepted",
    "count_not_persisted",
    "provisioning_not_persisted",
    "backfeed_from_uart",
    "set_as_add",
    "rtc_lost_on_power_loss",
    "credit_runs_on_uptime",
    "add_counts_expired_days",
)
@pytest.mark.needs("rtc_set")
def test_credit_end_years_in_the_past(token_session, tokens, power_cycle):
    """The end of credit years in the past: SET 1 day, the DUT's clock set 3 years on (`rtc_set`):
    expired, also after a power cycle; an ADD of 1 day then counts from now, not from the old end
    (the years expired are not owed, G12), also after a power cycle."""
    s = token_session
    assert s.expect(tokens.set_days(1)).result == "accepted"
    s.advance(YEARS_PAST_S)
    s.check_status("the credit ended 3 years ago")
    power_cycle()
    s.check_status("the credit ended 3 years ago, after a power cycle")
    add = tokens.add_days(1)
    assert s.expect(add).result == "accepted"
    power_cycle()
    s.check_status("1 day added 3 years after the end, after a power cycle")
    assert s.expect(add).result == "already_used"


@pytest.mark.catches(
    "count_not_persisted",
    "provisioning_not_persisted",
    "backfeed_from_uart",
    "no_lockout",
    "lockout_not_persisted",
    "rtc_lost_on_power_loss",
    "streak_stored_3_bits",
    "streak_saved_late",
    "lock_end_saved_late",
)
def test_invalid_streak_at_its_cap(request, token_session, tokens, lockout, power_cycle):
    """The invalid streak at its cap (the profile's `dut.lockout_max_streak`, reference 11): invalid
    tokens, each lock run out, until the streak is at the cap and one past it; power-cycled there:
    the streak and the lock are the model's; the lock run out, one more invalid token: the
    longest lock again (the streak stayed at its cap), and a valid token is refused while it
    lasts. Needs the clock set past each lock (`rtc_set`): the whole schedule takes hours."""
    s = token_session
    if lockout.max_streak is None:
        skip_not_covered(request, "the profile's lockout schedule has no streak cap (dut.lockout_max_streak)")
    if not s.can_advance:
        skip_not_covered(request, "running out every lock up to the cap needs 'rtc_set'")
    if s.model.invalid_streak:
        assert s.expect(tokens.add_days(0)).result == "accepted"
    valid = tokens.add_days(1)
    for seed in range(lockout.max_streak + 1):
        assert s.end_lock()
        assert s.expect(tokens.invalid(seed=seed)).result == "invalid"
    assert s.model.invalid_streak == lockout.max_streak
    s.check_streak("the streak at its cap")
    power_cycle()
    s.check_streak("the streak at its cap, after a power cycle")
    assert s.end_lock()
    assert s.expect(tokens.invalid(seed=99)).result == "invalid"
    s.check_streak("one more invalid token after the power cycle")
    assert s.expect(valid).result == "locked"
    assert s.end_lock()
    assert s.expect(valid).result == "accepted"
    s.check_streak()
