"""What the official procedures miss (docs/tokens.md "What the bench adds"): the validity windows at
their edges, U2D, leading zeros, the time divider, the restricted digit set, extended tokens and
re-locking. Every outcome is the model's prediction; tokens are crafted at exact counts with
`TokenGenerator.at_count`."""

from __future__ import annotations

import pytest

from bench.fixtures.tokens import status_differences
from bench.openpaygo.model import DAY, MAX_TOKEN_JUMP, MAX_TOKEN_JUMP_COUNTER_SYNC, MAX_UNUSED_OLDER_TOKENS
from bench.openpaygo.tokens import TokenKind, outside_digit_probe

ADD, SET, DISABLE, SYNC = TokenKind.ADD_TIME, TokenKind.SET_TIME, TokenKind.DISABLE_PAYG, TokenKind.COUNTER_SYNC


def timed_kind(count: int) -> TokenKind:
    """Parity = type (docs/tokens.md "Values and types"): the ADD or SET token that can sit at this count."""
    return SET if count % 2 else ADD


def first_leading_zero_token(tokens, last: int):
    """The first ADD/SET token (values 1-3) within last+1..last+64 whose code starts with 0."""
    for count in range(last + 1, last + MAX_TOKEN_JUMP + 1):
        for value in (1, 2, 3):
            token = tokens.at_count(timed_kind(count), value, count)
            if token.code.startswith("0"):
                return token
    return None


@pytest.mark.catches("reused_token_accepted", "u2d_accepted", "set_as_add")
def test_u2d_older_add_refused_after_set(token_session, tokens):
    """U2A–C (docs/tokens.md "Unordered entry U1–U3") plus the bench's U2D ("What the bench adds"):
    generate ADD 5, SET 10, ADD 3; enter the SET (10 days), the older ADD (refused: older than a
    SET), the newer ADD (13 days), then the older ADD again: still refused. The reference C decoder
    accepts it there (its used-count mask update drops the bit), so a device built on it passes the
    official procedure and fails here."""
    s = token_session
    u2a, u2b, u2c = tokens.add_days(5), tokens.set_days(10), tokens.add_days(3)
    for token, result in ((u2b, "accepted"), (u2a, "already_used"), (u2c, "accepted"), (u2a, "already_used")):
        assert s.expect(token).result == result
        s.check_status()
    assert abs(s.model.seconds_left(s.now()) - 13 * DAY) <= 3


@pytest.mark.catches("set_as_add", "unbounded_jump")
def test_jump_window_edges(token_session, tokens):
    """docs/tokens.md "Windows": a token may be at most MAX_TOKEN_JUMP = 64 counts above the last one
    (maintainer, OpenPAYGO-HW #11; not the PDF's 30): last+65 is invalid, last+64 is accepted,
    and again from the new count; then the reserved values 996 and 997 just above it."""
    s = token_session
    for _ in range(2):
        last = s.model.last_count
        over, edge = last + MAX_TOKEN_JUMP + 1, last + MAX_TOKEN_JUMP
        assert s.expect(tokens.at_count(timed_kind(over), 1, over)).result == "invalid"
        out = s.expect(tokens.at_count(timed_kind(edge), 1, edge, advance=True))
        assert out.result == "accepted"
        s.check_status()
    # The reserved values 996 and 997 (docs/tokens.md "Values and types") at the next count: the
    # model's answer (invalid, unless the profile reads extended ones as time), each followed by a
    # valid ADD so no lockout builds up.
    for raw in (996, 997):
        s.expect(tokens.craft(raw, s.model.last_count + 2))
        assert s.expect(tokens.add_days(1)).result == "accepted"
    s.check_status()
    assert s.model.last_count == tokens.count


@pytest.mark.catches(
    "parity_before_special", "unbounded_jump", "leading_zero_dropped", "sync_keeps_stale_mask", "reused_token_accepted"
)
def test_counter_sync_window_edges(token_session, tokens):
    """docs/tokens.md "Windows", COUNTER_SYNC (999): last-64 < count <= last+100. last+101 is invalid, last+100
    is accepted; then below the new count N a sync at the oldest even count inside the window is
    accepted, one at the newest even count outside it (<= N-64) is refused (odd counts <= N are
    used anyway, so only even ones test the edge; the exact edge is N-64 or N-63 depending on N's
    parity, as in the model's own tests). The accepted one lowers the count or leaves the higher
    one, as the profile says (dut.sync_lowers_count; both allowed: "Where a device may choose")."""
    s = token_session
    last = s.model.last_count
    assert s.expect(tokens.at_count(SYNC, None, last + MAX_TOKEN_JUMP_COUNTER_SYNC + 1)).result == "invalid"
    top = last + MAX_TOKEN_JUMP_COUNTER_SYNC
    assert s.expect(tokens.at_count(SYNC, None, top, advance=True)).result == "accepted"
    s.check_status()
    inside = top - MAX_TOKEN_JUMP + 1 + (top - MAX_TOKEN_JUMP + 1) % 2  # oldest even count > top-64
    outside = inside - 2  # newest even count <= top-64
    assert outside <= top - MAX_TOKEN_JUMP < inside
    assert s.expect(tokens.at_count(SYNC, None, outside)).result == "already_used"
    s.check_status()
    assert s.expect(tokens.at_count(SYNC, None, inside)).result == "accepted"
    assert s.model.last_count == (inside if s.model.sync_lowers_count else top), "the model ignored the profile"
    status = s.dut.status()
    problems = status_differences(status, s.model, s.now())
    other = top if s.model.sync_lowers_count else inside
    if problems and status.token_count == other:
        problems.append(
            f"the DUT's count is {other}: it {'keeps its higher count' if other == top else 'lowers its count'} "
            "after a counter-sync below it, a choice the requirements allow; the profile says otherwise "
            f"(set dut.sync_lowers_count = {'false' if other == top else 'true'}, docs/rig.md)"
        )
    assert not problems, "after the sync inside the window: " + "; ".join(problems)
    # A sync marks every count below its own used ("Used counts"), however the record looked
    # before it: an ADD a few counts up leaves unused counts behind it, a sync back into that gap,
    # then an ADD at every even count of the 16 below the count: all already used.
    base = s.model.last_count
    high = base + 4 + base % 2  # even, so the ADD can sit there
    assert s.expect(tokens.at_count(ADD, 1, high, advance=True)).result == "accepted"
    assert s.expect(tokens.at_count(SYNC, None, high - 2)).result == "accepted"
    s.check_status("after a sync into the gap an ADD left")
    last = s.model.last_count
    for count in range(last - 1, max(0, last - MAX_UNUSED_OLDER_TOKENS), -1):
        if count % 2 == 0:
            out = s.expect(tokens.at_count(ADD, 1, count))
            assert out.result == "already_used", f"an ADD at count {count}, below a sync's count {last}: {out.result}"
    # every odd count at or below the last one counts as used ("Used counts"), entered or not: a
    # sync at a never-entered odd count just below the last is refused
    odd = last - 1 if last % 2 == 0 else last - 2
    out = s.expect(tokens.at_count(SYNC, None, odd))
    assert out.result == "already_used", f"a sync at the odd count {odd}, below the count {last}: {out.result}"
    s.check_status()


@pytest.mark.catches("reused_token_accepted", "set_as_add", "leading_zero_dropped")
def test_older_add_window_edges(token_session, tokens):
    """docs/tokens.md "Windows", older unused ADD: an even count with last-16 < count < last, never used, is
    accepted (unordered entry); last-16 is refused, so is an ADD entered twice and an older SET
    (older SET/DISABLE/SYNC are never accepted). A SET 0 first gives a known credit."""
    s = token_session
    assert s.expect(tokens.set_days(0)).result == "accepted"  # a known credit (0), whatever came before
    last = s.model.last_count
    top = last + 40 if (last + 40) % 2 == 0 else last + 39  # an even count well inside +64
    assert s.expect(tokens.at_count(ADD, 1, top, advance=True)).result == "accepted"
    oldest = top - MAX_UNUSED_OLDER_TOKENS + 2
    for token, result in (
        (tokens.at_count(ADD, 2, top - MAX_UNUSED_OLDER_TOKENS), "already_used"),  # the edge, outside
        (tokens.at_count(ADD, 3, oldest), "accepted"),  # the edge, inside
        (tokens.at_count(ADD, 3, oldest), "already_used"),
        (tokens.at_count(ADD, 4, top - 2), "accepted"),
        (tokens.at_count(SET, 5, top - 1), "already_used"),
    ):
        assert s.expect(token).result == result, f"ADD/SET at count {token.count} (last {top})"
        s.check_status()
    assert abs(s.model.seconds_left(s.now()) - 8 * DAY) <= 3


@pytest.mark.catches("set_as_add", "leading_zero_dropped")
def test_leading_zero_token(token_session, tokens):
    """docs/tokens.md "What the bench adds" (G8Q `048662027`): a token whose first digit is 0 is a
    9-digit token like any other; the device must not read it as a number and refuse it for being
    short. The first such token of this profile within the jump window is used."""
    if tokens.restricted_digits:
        pytest.skip("the profile uses the restricted digit set (1-4): no token starts with 0")
    s = token_session
    last = s.model.last_count
    found = first_leading_zero_token(tokens, last)
    assert found is not None, "no token starting with 0 in the window (chance about 1e-9): change the values"
    assert len(found.code) == tokens.length
    assert s.expect(found).result == "accepted"
    s.check_status()
    assert s.expect(found).result == "already_used"


@pytest.mark.catches("set_as_add", "time_divider_ignored")
def test_time_divider(reprovisioned):
    """docs/tokens.md "Time divider": provisioned with divider 4, a token's value counts quarter
    days: ADD 2.5 days (value 10; the "Test vectors" divider vector `940641799` on the published
    device), ADD 0.25 day, SET 1.75 days."""
    s, gen = reprovisioned(time_divider=4)
    add = gen.add_days(2.5)
    assert add.value == 10
    for token in (add, gen.add_days(0.25), gen.set_days(1.75)):
        assert s.expect(token).result == "accepted"
        s.check_status()
    assert abs(s.model.seconds_left(s.now()) - 1.75 * DAY) <= 3


@pytest.mark.catches("reused_token_accepted", "set_as_add")
def test_restricted_digit_tokens(reprovisioned, dut):
    """docs/tokens.md "Restricted digits": provisioned in restricted mode, tokens are 15 digits of 1-4 (20 on a
    device that takes only extended tokens; two
    bits a digit); they are accepted and refused like standard ones, and a 15-digit code with a
    digit outside 1-4 is invalid (one chosen so that a device reading it as two bits anyway sees
    another token, not the used one). Where the DUT takes extended tokens, a 20-digit one is
    accepted too."""
    s, gen = reprovisioned(restricted_digits=True)
    add, set_ = gen.add_days(2), gen.set_days(1)
    for t in (add, set_):
        assert len(t.code) == gen.length and set(t.code) <= set("1234"), t.code  # 15 (20 extended-only)
    for token, result in ((add, "accepted"), (add, "already_used"), (set_, "accepted")):
        assert s.expect(token).result == result
        s.check_status()
    # a digit outside 1-4 that no 2-bit reading turns back into the used token (outside_digit_probe)
    outside = outside_digit_probe(add.code)
    assert s.expect(outside).result == "invalid"
    s.check_status()
    if dut.offers("extended_tokens"):  # an extended token in the restricted digit set: 20 digits
        s, gen = reprovisioned(restricted_digits=True, extended_tokens=True)
        add = gen.add_days(1000)
        assert len(add.code) == 20 and set(add.code) <= set("1234"), add.code
        assert s.expect(add).result == "accepted"
        s.check_status("after a 20-digit restricted extended token")


@pytest.mark.catches("reused_token_accepted", "set_as_add")
@pytest.mark.needs("extended_tokens")
def test_extended_tokens(reprovisioned):
    """docs/tokens.md "Extended tokens" (not standard; DUT capability `extended_tokens`): 12-digit tokens carry values
    up to 999999: ADD 1000 days (more than a standard token can), entered twice (already used),
    then SET 2 days; then an extended 998, which means what the profile declares."""
    s, gen = reprovisioned(extended_tokens=True)
    add = gen.add_days(1000)
    assert len(add.code) == 12
    for token, result in ((add, "accepted"), (add, "already_used"), (gen.set_days(2), "accepted")):
        assert s.expect(token).result == result
        s.check_status()
    # an extended 998 at the next odd count: DISABLE_PAYG or SET_TIME 998, as the profile says
    # (dut.extended_998_999, the manufacturer's choice)
    odd = s.model.last_count + 1 + s.model.last_count % 2
    out = s.expect(gen.at_count(DISABLE, None, odd, advance=True))
    assert out.result == "accepted"
    s.check_status("after an extended 998 (dut.extended_998_999 says what it is)")


@pytest.mark.catches("set_as_add", "leading_zero_dropped", "set_does_not_relock")
def test_disable_then_set_relocks(token_session, tokens):
    """docs/tokens.md "Re-lock", G9/G10: DISABLE_PAYG (998) unlocks the device for good, until a SET token
    (any value 0..995) re-enables PAYG with that credit; an ADD after it adds normally."""
    s = token_session
    s.expect(tokens.add_days(5))
    s.expect(tokens.disable())
    assert s.check_status().payg == "disabled"
    s.expect(tokens.set_days(3))
    status = s.check_status()
    assert not s.model.payg_disabled and status.payg == "active", f"after the SET the DUT reports payg={status.payg}"
    s.expect(tokens.add_days(1))
    s.check_status()
    assert abs(s.model.seconds_left(s.now()) - 4 * DAY) <= 3
