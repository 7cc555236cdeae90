"""Re-basing: bringing a DUT whose token state is doubtful (a test failed, a run stopped in the
middle of an entry) to a state the bench knows, with tokens whose outcome fixes every part of it
(docs/ledger.md "How a test gets a known token state")."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from bench.dut.adapter import TokenOutcome
from bench.openpaygo.model import MAX_UNUSED_OLDER_TOKENS, ModelState
from bench.openpaygo.tokens import Token, TokenKind
from bench.station.ledger_recorder import LedgerRecorder, NoKnownState
from bench.station.ledger_state import LedgerState
from bench.station.profile import generator_for, model_for
from bench.station.token_session import TokenSession, status_differences

if TYPE_CHECKING:
    from bench.station.dut_tokens import DutTokens

REPROVISION_HINT = "paygo-bench run --reprovision (provision it again: the ledger starts a new epoch)"


def rebaseline(t: DutTokens, test: str | None, why: str) -> None:
    """Bring a DUT whose state is doubtful to one the bench knows, with two tokens: a COUNTER_SYNC
    at the next even count above the highest count it may have (its reported count, else the
    highest the bench sent), which it takes whether it is somewhat ahead or far behind the model
    (the sync window reaches 64 counts down and 100 up), then SET 0 at the next count. A SET fixes
    every part of the token state (count, used counts, credit, PAYG on, invalid streak) whatever
    it was; the status must then be exactly that. Raises NoKnownState when the DUT refuses."""
    label = f"re-base before {test}" if test and test != "bring-up" else "re-base at bring-up"
    state = t.current()
    status = t.dut.status()
    untrusted = model_for(t.profile, state.state)
    session = t.new_session(untrusted, LedgerRecorder(t.ledger, t.serial, label))
    base = status.token_count if status.token_count is not None else max(state.state.last_count, state.max_count_sent)
    sync_at = base + 1 if (base + 1) % 2 == 0 else base + 2
    gen = generator_for(t.profile, sync_at)
    t.note(f"{label}: {why}; entering a counter-sync token at count {sync_at} and SET 0 at {sync_at + 1}")
    for token in (
        gen.at_count(TokenKind.COUNTER_SYNC, None, sync_at),
        gen.at_count(TokenKind.SET_TIME, 0, sync_at + 1),
    ):
        outcome = _enter_known(t, session, token, state, label)
        if outcome.result != "accepted":
            raise NoKnownState(
                f"re-basing ({why}): the DUT answered {outcome.result} to the bench's {token.kind.name} "
                f"token at count {token.count}: its token count is not one the ledger can reach; "
                f"way out: {REPROVISION_HINT}, or a counter-sync token at the device's own count"
            )
    known = set_state_at(sync_at + 1, t.clock.now())
    diffs = status_differences(t.dut.status(), model_for(t.profile, known), t.clock.now(), streak=True)
    if diffs:
        raise NoKnownState(
            f"re-basing ({why}): after a SET token the DUT's status is not the state the SET fixes: " + "; ".join(diffs)
        )
    t.ledger.set_state(t.serial, known, trusted=True, why=None, action="rebased", note=why, test=label)


def set_state_at(count: int, now: int) -> ModelState:
    """The token state a SET 0 accepted at `count` at model time `now` leaves, whatever came before:
    that count and the older ones in the window used, no credit, PAYG on, no invalid streak."""
    return ModelState(count, frozenset(range(max(0, count - MAX_UNUSED_OLDER_TOKENS), count + 1)), now, False, 0, 0)


def _enter_known(t: DutTokens, session: TokenSession, token: Token, before: LedgerState, label: str) -> TokenOutcome:
    """Enter a re-basing token written ahead in the ledger. Refused because entry is locked (said
    so, or, where the protocol cannot say it, answered invalid while the doubtful model expects a
    lock), the lock is waited out once within the rig's budget and the token entered again."""
    for attempt in (1, 2):
        after = set_state_at(token.count, t.clock.now()) if token.kind is TokenKind.SET_TIME else before.state
        entry = t.ledger.begin_token(t.serial, token.code, token, "accepted", before.state, after, label)
        outcome = t.dut.enter_token(token.code)
        reply = {k: v for k, v in dataclasses.asdict(outcome).items() if v is not None}
        t.ledger.end_token(t.serial, entry, reply, after, False, "re-basing")
        if attempt == 1:
            if outcome.result == "locked" and outcome.locked_s is not None:
                session.model.locked_until = session.now() + outcome.locked_s
            locked = outcome.result == "locked" or (
                outcome.result == "invalid" and not t.dut.reports_locked and session.lock_left() > 0
            )
            if locked and session.lock_left() > 0 and session.end_lock():
                continue
        return outcome
    return outcome
