"""Token entry (docs/tokens.md): outcomes predicted by the bench's model."""

from __future__ import annotations

import pytest


@pytest.mark.quick
def test_valid_token_accepted(token_session, tokens):
    """Quick test step 3 (docs/tokens.md "Quick test"): a valid ADD token adds its days; the count
    moves to the token's. Then an ADD of 0 days: accepted, the credit unchanged."""
    token_session.check_status()
    out = token_session.expect(tokens.add_days(1))
    assert out.result == "accepted"
    token_session.check_status()
    # an ADD of 0 days is accepted and moves only the count
    assert token_session.expect(tokens.add_days(0)).result == "accepted"
    token_session.check_status("after an ADD of 0 days")


@pytest.mark.catches("accepts_starting_code")
@pytest.mark.quick
def test_invalid_tokens_refused(token_session, tokens, rig):
    """Quick test step 2 and G1: an invalid token is refused and changes nothing. The quick test's
    "invalid" token is the starting code itself, which matches at count 0: it must be refused
    (invalid or already used), never accepted (docs/tokens.md "The starting code"; openpaygo's
    "Starting code accepted")."""
    before = token_session.check_status()
    for code in (tokens.invalid(seed=1), f"{rig.dut.starting_code:09d}"):
        got = token_session.enter(code)
        assert got.outcome.result in ("invalid", "already_used"), f"token {code} was {got.outcome}"
        assert got.predicted.outcome in ("invalid", "already_used")
    after = token_session.check_status()
    assert (after.token_count, after.active_until, after.payg) == (before.token_count, before.active_until, before.payg)


@pytest.mark.catches("reused_token_accepted")
@pytest.mark.quick
def test_reused_token_refused(token_session, tokens):
    """Quick test step 4, G4A: re-entering an accepted token is refused as already used and
    changes nothing."""
    first = tokens.add_days(1)
    token_session.expect(first)
    status = token_session.check_status()
    out = token_session.expect(first)
    assert out.result == "already_used"
    again = token_session.check_status()
    assert again.active_until == status.active_until, "a reused token changed the credit"
