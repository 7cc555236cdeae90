"""The official OpenPAYGO Token test procedures (docs/tokens.md "The official procedures": the quick
test "scenario 1", the full test procedure G1–G12, U1–U3), generated for the DUT's profile and
checked step by step against the bench's model."""

from __future__ import annotations

import pytest

from bench.fixtures.tokens import SECONDS_LEFT_TOLERANCE
from bench.openpaygo.model import DAY
from bench.openpaygo.tokens import full_test_procedure
from bench.timeout import sleep_for

G8_DECODE_LIMIT_S = 5.0  # G8: "validation should not take more than 5 seconds"
OPTIONAL_STEPS = {"G11B"}  # docs/tokens.md "Re-lock": "Optional"; its own test below
RTC_STEPS = {"G12B"}  # the 48-hour wait: its own test below
# G12 without `rtc_set`: how long the DUT stays expired before the ADD, s (well past the 3 s
# credit tolerance, so owed seconds show).
G12_WAIT_S = 10


def assert_unchanged(before, after, what: str) -> None:
    assert (after.payg, after.active_until, after.token_count) == (
        before.payg,
        before.active_until,
        before.token_count,
    ), f"{what} changed the DUT's state: {before} -> {after}"


@pytest.mark.catches("reused_token_accepted", "accepts_starting_code", "set_as_add", "set_does_not_relock")
@pytest.mark.quick
def test_quick_test_scenario_1(token_session, tokens):
    """Quick test "scenario 1" (docs/tokens.md "Quick test"), for the DUT's profile: on the published test
    device these are exactly the published tokens. Step 2's "invalid" token is the starting code,
    which sits at count 0: refused as invalid or already used, and nothing changes. Then +1 day,
    the same token again (already used, unchanged), +29 days, SET 7 days, PAYG disabled, SET 0
    (PAYG on, 0 days); the credit is checked after every step."""
    s = token_session
    before = s.check_status()
    s.expect_refused(tokens.craft(0, 0))  # the starting code (in the DUT's digit set)
    assert_unchanged(before, s.check_status(), "step 2 (the starting code)")
    add1 = tokens.add_days(1)
    for step, token, kind in (
        ("3", add1, "accepted"),
        ("4", add1, "already_used"),
        ("5", tokens.add_days(29), "accepted"),
        ("6", tokens.set_days(7), "accepted"),
        ("7", tokens.disable(), "accepted"),
        ("8", tokens.set_days(0), "accepted"),
    ):
        before = s.check_status()
        out = s.expect(token)
        assert out.result == kind, f"step {step}: {out.result}"
        after = s.check_status()
        if kind == "already_used":
            assert_unchanged(before, after, f"step {step} (a token entered twice)")
    assert s.model.days_left(s.now()) == 0 and not s.model.payg_disabled


@pytest.mark.catches(
    "reused_token_accepted",
    "accepts_starting_code",
    "set_as_add",
    "parity_before_special",
    "slow_decode",
    "leading_zero_dropped",
    "set_does_not_relock",
)
def test_full_procedure(token_session, tokens, measure):
    """Full test procedure G1–G12, U1–U3 (docs/tokens.md "Full test procedure G1–G12", OpenPAYGO-python
    test/full_test_procedure.py), generated in the server's order: every token's outcome, and
    the credit (days remaining) after every step, against the model, which itself reproduces
    the procedure's Expected column (tests/selftest/test_token_model.py). G1's token
    `123456789` is the starting code on the published device: refused either way, as in the
    quick test. G8: the decode time of each of the 21 SET tokens 30 counts apart is a
    measurement, limit 5 s. G11B (Optional) and G12's 48-hour wait have their own tests; U2D,
    the bench's addition, too (test_token_windows.py)."""
    s = token_session
    steps = [p for p in full_test_procedure(tokens, with_u2d=False) if p.step not in OPTIONAL_STEPS | RTC_STEPS]
    assert [p.step for p in steps if p.step.startswith("G8")] == [f"G8{chr(65 + i)}" for i in range(21)]
    for step in steps:
        if step.expect == "invalid":  # G1's "123 456 789" (the starting code on the published device)
            before = s.check_status()
            s.expect_refused(step.code if len(step.code) == tokens.length else tokens.craft(0, 0))
            assert_unchanged(before, s.check_status(), step.step)
            continue
        out = s.expect(step.code)
        assert out.result == step.expect, (
            f"{step.step}: the DUT answered {out.result}, the procedure expects {step.expect}"
        )
        if step.step.startswith("G8"):
            measure(f"{step.step}_decode_time", out.elapsed_s, "s", high=G8_DECODE_LIMIT_S)
        s.check_status()


@pytest.mark.catches("add_relocks")
def test_g11b_add_after_disable_does_not_relock(token_session, tokens):
    """G11A/B (docs/tokens.md "Re-lock"), marked Optional by the procedure: after DISABLE_PAYG
    an ADD (here of 0 days, as G11B) must not re-lock the device; only a SET does. A device that
    re-locks fails this test (the report shows which optional clause it misses)."""
    s = token_session
    s.expect(tokens.disable())
    s.check_status()
    out = s.expect(tokens.add_days(0))
    assert out.result == "accepted"
    status = s.check_status()
    assert s.model.payg_disabled and status.payg == "disabled", f"after G11B the DUT reports payg={status.payg}"


@pytest.mark.catches("set_as_add", "add_counts_expired_days")
def test_g12_days_late_are_not_counted(token_session, tokens, measure):
    """G12A/B (docs/tokens.md "Full test procedure G1–G12"): SET 0, then time passes with the device
    expired, then ADD 1 day: 1 day remains; the days the device spent expired are not owed (an ADD
    counts from now once the credit has run out). The procedure waits 48 hours: with `rtc_set` the
    DUT's clock is set 48 h forward; without it the bench waits G12_WAIT_S on the real clock,
    several times the credit tolerance, so a device that owes the expired time shows it.
    Measurement: g12_expired_for (s)."""
    s = token_session
    s.expect(tokens.set_days(0))
    s.check_status("after G12A (SET 0)")
    if s.can_advance:
        s.advance(48 * 3600)
    else:
        sleep_for(G12_WAIT_S)  # the expired time itself: a deadline, not synchronisation
    measure("g12_expired_for", 48 * 3600 if s.can_advance else G12_WAIT_S, "s")
    status = s.check_status("expired, before G12B")
    assert status.payg == "inactive"
    s.expect(tokens.add_days(1))
    status = s.check_status("after G12B (ADD 1 day)")
    assert abs(s.model.seconds_left(s.now()) - DAY) <= SECONDS_LEFT_TOLERANCE
    assert abs(status.seconds_left - DAY) <= SECONDS_LEFT_TOLERANCE, f"after G12B the DUT has {status.seconds_left} s"
