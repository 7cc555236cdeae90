"""The model-vs-DUT check: tokens entered on the DUT and on the bench's model side by side.

The DUT's answers are compared with what the model predicts (bench/openpaygo/model.py); the
DUT's answer is never taken as the truth. Every entry goes through a `Recorder` (the device
ledger): written ahead of being sent, completed with the reply, so what the bench sent is never
lost with an interrupted run.

Model time is the station's `ModelClock`: whole seconds of host UTC time plus the seconds the
bench has set the DUT's clock ahead. The bench never reads the DUT's clock to decide what the
credit should be.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Protocol

from bench.dut.adapter import DeviceAdapter, DeviceStatus, TokenOutcome
from bench.openpaygo.model import DeviceModel, ModelState, Prediction
from bench.openpaygo.tokens import Token, TokenKind
from bench.timeout import sleep_for

# Credit is compared in seconds: the DUT's clock reads whole seconds and some time passes between
# a token's entry and the STATUS that reports it. The same tolerance applies to lockout seconds
# and, after a clock jump (`TokenSession.advance`), covers the second the jump may lose.
SECONDS_LEFT_TOLERANCE = 3
# Past a lockout's end by this much before entering again: clear of the readout and jump error.
LOCK_MARGIN_S = 3
TICK_WAIT_S = 1.5  # advance(on_tick=True): how long to watch for the DUT's second to turn over
TICK_POLL_S = 0.02
CLOCK_AHEAD_S = 86_400  # clock_ahead(): a day, far beyond any test's time tolerance


class ModelClock:
    """Host UTC seconds (anchored once, then advanced on time.monotonic) plus `offset_s`, the
    seconds the bench has set the DUT's clock ahead in all (kept in the ledger across runs)."""

    def __init__(self, offset_s: int = 0) -> None:
        self._utc0 = time.time()
        self._mono0 = time.monotonic()
        self.offset_s = offset_s

    def now(self) -> int:
        return int(self._utc0 + (time.monotonic() - self._mono0)) + self.offset_s


class Recorder(Protocol):
    """Where a session writes what it does (the device ledger; `NullRecorder` keeps nothing)."""

    def begin(
        self, code: str, token: Token | None, predicted: Prediction, before: ModelState, after: ModelState
    ) -> int: ...

    def end(self, entry: int, outcome: TokenOutcome, state: ModelState, matched: bool, why: str | None) -> None: ...

    def adopt(self, state: ModelState, note: str) -> None: ...

    def clock(self, offset_s: int, state: ModelState) -> None: ...


class NullRecorder:
    def begin(self, code, token, predicted, before, after) -> int:
        return 0

    def end(self, entry, outcome, state, matched, why) -> None:
        pass

    def adopt(self, state, note) -> None:
        pass

    def clock(self, offset_s, state) -> None:
        pass


@dataclass
class Checked:
    outcome: TokenOutcome
    predicted: Prediction


@dataclass
class Entry:
    """A token entry written ahead (`TokenSession.begin`), awaiting the DUT's reply."""

    code: str
    token: Token | None
    predicted: Prediction
    before: DeviceModel  # the model had the entry not reached the DUT
    after: DeviceModel  # the model had the DUT done what it predicted
    ledger_id: int
    at: int = 0  # model time when it was sent (the model's "now" for it)


def code_of(token: Token | str) -> str:
    return token.code if isinstance(token, Token) else token


class TokenSession:
    def __init__(
        self,
        dut: DeviceAdapter,
        model: DeviceModel,
        clock: ModelClock | None = None,
        recorder: Recorder | None = None,
        lock_wait_s: float = 0.0,
    ) -> None:
        self.dut = dut
        self._model = model
        self.clock = clock or ModelClock()
        self.recorder: Recorder = recorder or NullRecorder()
        self.lock_wait_s = lock_wait_s  # the longest real-clock wait for a lockout (rig dut.lockout_wait_budget_s)
        # A token that starts the credit from "now" (a SET; an ADD to expired credit) may read the
        # device's clock anywhere between its entry and its reply; the model reads it at the entry.
        # A reply that took seconds (a decode near the top of a 65535 count) leaves the credit
        # end that much undecided: this widens the credit tolerance until the next such token.
        self.credit_slack_s = 0

    @property
    def model(self) -> DeviceModel:
        return self._model

    @model.setter
    def model(self, model: DeviceModel) -> None:
        """A test chose the model's state (the one a power cut left, say): recorded as adopted."""
        self._model = model
        self.recorder.adopt(model.snapshot(), "the test chose this state (of those the requirements allow)")

    def now(self) -> int:
        return self.clock.now()

    # -- time ----------------------------------------------------------------------------------
    @property
    def can_advance(self) -> bool:
        return self.dut.offers("rtc") and self.dut.offers("rtc_set")

    def advance(self, seconds: int, *, on_tick: bool = False) -> None:
        """Let `seconds` of device time pass at once: set the DUT's RTC forward (capabilities `rtc`
        and `rtc_set`) and move the model's clock by the same amount. The jump is taken from a
        whole-second readout, so the DUT may lose up to a second of it (within the tolerance).
        `on_tick`: set it just after the readout's second turns over (up to a second's wait), so it
        loses only the link's latency: for many jumps in a row, whose losses would add up."""
        if seconds < 0:
            raise ValueError("advance() only moves time forward (an RTC must count up)")
        t = self._next_tick() if on_tick else self.dut.rtc_read()
        self.dut.rtc_set(int(t) + int(seconds))
        self.clock.offset_s += int(seconds)
        self.recorder.clock(self.clock.offset_s, self.model.snapshot())

    def _next_tick(self) -> float:
        """The DUT's clock read just after its second turned over (the last reading if it does
        not within TICK_WAIT_S: a stopped clock is for the status comparison to find)."""
        first = self.dut.rtc_read()
        if first != int(first):  # a sub-second readout: sleep to just before the turn
            sleep_for(max(0.0, 1.0 - (first - int(first)) - 0.05))
        deadline = time.monotonic() + TICK_WAIT_S
        t = first
        while time.monotonic() < deadline:
            t = self.dut.rtc_read()
            if int(t) != int(first):
                return t
            sleep_for(TICK_POLL_S)
        return t

    def passed_while_off(self, seconds: int) -> None:
        """`seconds` of device time passed that the host's clock did not see (the virtual rig's
        world skipped them while the DUT was unpowered): the model's clock moves with them."""
        if seconds < 0:
            raise ValueError("time only passes forward")
        if seconds == 0:
            return  # none skipped (a PSU that held the DUT off on the real clock): nothing to follow
        self.clock.offset_s += int(seconds)
        self.recorder.clock(self.clock.offset_s, self.model.snapshot())

    def clock_ahead(self) -> bool:
        """Set the DUT's clock CLOCK_AHEAD_S ahead, the model's with it (where the clock can be set).
        A clock that restarts from a fixed value at power loss then shows it as a jump back of at
        least that much in a test that power-cycles, however long ago the device last powered up:
        without it, such a test passes or fails by how long the rig ran before it (run alone, or
        right after another power cycle, the restart is lost in the readout's second). False: the
        clock cannot be set, and the test judges from wherever it is."""
        if not self.can_advance:
            return False
        self.advance(CLOCK_AHEAD_S)
        return True

    def lock_left(self) -> int:
        """Seconds the model says token entry stays locked (0: open)."""
        return max(0, self.model.locked_until - self.now())

    def end_lock(self, max_wait_s: float | None = None) -> bool:
        """Let a lockout the model predicts run out: the clock set past it (`rtc_set`), else a wait
        on the real clock of at most `max_wait_s` (default the rig's lockout wait budget). False:
        neither can."""
        left = self.lock_left()
        if left <= 0:
            return True
        if self.can_advance:
            self.advance(left + LOCK_MARGIN_S + 2)  # +2: the jump's lost second, and the readout's
            return True
        wait = left + LOCK_MARGIN_S
        if wait > (self.lock_wait_s if max_wait_s is None else max_wait_s):
            return False
        self.dut.link.log.note(f"tokens: waiting {wait} s on the real clock for the lockout to end")
        sleep_for(wait)  # the lockout itself: a deadline, not synchronisation
        return True

    # -- entries -------------------------------------------------------------------------------
    def begin(self, token: Token | str) -> Entry:
        """Predict the entry and write it ahead; the model moves to the predicted state."""
        code = code_of(token)
        before = self._model.copy()
        at = self.now()
        predicted = self._model.enter(code, at)
        ledger_id = self.recorder.begin(
            code, token if isinstance(token, Token) else None, predicted, before.snapshot(), self._model.snapshot()
        )
        return Entry(code, token if isinstance(token, Token) else None, predicted, before, self._model, ledger_id, at)

    def finish(self, entry: Entry, outcome: TokenOutcome) -> Checked:
        """The DUT's reply to an entry begun: recorded, with whether it is the model's."""
        p, before = entry.predicted, entry.before
        from_now = p.kind is TokenKind.SET_TIME or (p.kind is TokenKind.ADD_TIME and before.active_until <= entry.at)
        if p.outcome == "accepted" and from_now:
            self.credit_slack_s = max(0, self.now() - entry.at - 1)  # (a second's turn is in the tolerance)
        problems = self.outcome_differences(entry.code, entry.predicted, outcome)
        self.recorder.end(entry.ledger_id, outcome, self._model.snapshot(), not problems, "; ".join(problems) or None)
        return Checked(outcome, entry.predicted)

    def enter(self, token: Token | str) -> Checked:
        entry = self.begin(token)
        return self.finish(entry, self.dut.enter_token(entry.code))

    def entered_by_dut(self, code: str, at: int, how: str) -> Prediction:
        """A token the DUT entered by itself (from a Metrics reply, say) at model time `at`: the model
        follows it and the ledger keeps it; what it did is judged by the status that follows."""
        before = self._model.copy()
        predicted = self._model.enter(code, at)
        entry = self.recorder.begin(code, None, predicted, before.snapshot(), self._model.snapshot())
        self.recorder.end(entry, TokenOutcome(f"not reported: {how}"), self._model.snapshot(), True, None)
        return predicted

    def expect(self, token: Token | str) -> TokenOutcome:
        """Enter a token and assert the DUT's outcome is the one the model predicts."""
        got = self.enter(token)
        return self.check_outcome(token, got.predicted, got.outcome)

    def outcome_differences(self, code: str, p: Prediction, o: TokenOutcome) -> list[str]:
        """How the DUT's answer to a token differs from the model's prediction (empty: it is the
        model's). Fields the DUT's protocol does not report are not compared; a protocol that
        cannot say "locked" (`reports_locked`) answers a locked entry as invalid."""
        result = o.result
        if p.outcome == "locked" and result == "invalid" and not self.dut.reports_locked:
            result = "locked"
        want: dict[str, object] = {"result": p.outcome}
        have: dict[str, object] = {"result": result}
        if p.outcome == "accepted":
            for name, predicted, reported in (
                ("type", p.kind.name if p.kind else None, o.kind),
                ("value", p.value, o.value),
                ("count", p.count, o.count),
            ):
                if reported is not None:
                    want[name], have[name] = predicted, reported
        out = [f"token {code}: the DUT answered {have}, the model predicts {want}"] if have != want else []
        if (
            p.outcome == "locked"
            and o.locked_s is not None
            and abs(o.locked_s - p.lock_seconds) > SECONDS_LEFT_TOLERANCE
        ):
            out.append(
                f"token {code}: the DUT is locked for {o.locked_s} s more, the model {p.lock_seconds} s "
                f"(tolerance {SECONDS_LEFT_TOLERANCE} s)"
            )
        if p.outcome == "accepted" and o.seconds_left is not None and not self._model.payg_disabled:
            want_left = self._model.seconds_left(self.now())
            tolerance = SECONDS_LEFT_TOLERANCE + self.credit_slack_s
            if abs(o.seconds_left - want_left) > tolerance:
                out.append(
                    f"token {code}: the DUT's reply says {o.seconds_left} s of credit left, the model "
                    f"{want_left:.0f} s (tolerance {tolerance} s)"
                )
        return out

    def check_outcome(self, token: Token | str, p: Prediction, o: TokenOutcome) -> TokenOutcome:
        """Assert the DUT's answer to a token is the model's prediction for it; the answer, in the
        bench's terms (a locked entry a protocol can only answer as invalid is `locked`)."""
        problems = self.outcome_differences(code_of(token), p, o)
        assert not problems, "; ".join(problems)
        if p.outcome == "locked" and o.result == "invalid":
            return dataclasses.replace(o, result="locked")
        return o

    def expect_refused(self, token: Token | str) -> TokenOutcome:
        """Enter a code a correct device may refuse either as invalid or as already used (the
        starting code, which sits at count 0, docs/tokens.md) and assert it is refused. Both
        answers are right, and they differ in one way the model must follow: an already-used
        answer does not count toward the lockout."""
        entry = self.begin(token)
        got = self.finish(entry, self.dut.enter_token(entry.code))
        assert got.predicted.outcome in ("invalid", "already_used"), (
            f"the model accepts {entry.code!r}: not a code to refuse"
        )
        assert got.outcome.result in ("invalid", "already_used"), (
            f"token {entry.code}: the DUT answered {got.outcome.result}, it must be refused (invalid or already_used)"
        )
        if got.outcome.result == "already_used" and got.predicted.outcome == "invalid":
            self.model = entry.before  # the refusal did not count: the state is as before it
        return got.outcome

    # -- status --------------------------------------------------------------------------------
    def check_status(self, context: str = "") -> DeviceStatus:
        """Assert the DUT's PAYG state, credit, count and lockout are the model's."""
        status = self.dut.status()
        differences = self.status_problems(status)
        assert not differences, (context + ": " if context else "") + "; ".join(differences)
        return status

    def check_streak(self, context: str = "") -> DeviceStatus:
        """check_status, plus the DUT's invalid-token streak against the model's (if reported)."""
        status = self.dut.status()
        differences = self.status_problems(status, streak=True)
        assert not differences, (context + ": " if context else "") + "; ".join(differences)
        return status

    def status_problems(self, status: DeviceStatus, streak: bool = False) -> list[str]:
        """status_differences against the model now, with the credit tolerance this session's
        last entries leave (`credit_slack_s`)."""
        return status_differences(status, self._model, self.now(), streak, SECONDS_LEFT_TOLERANCE + self.credit_slack_s)


def status_differences(
    status: DeviceStatus,
    m: DeviceModel,
    now: int,
    streak: bool = False,
    credit_tolerance: float = SECONDS_LEFT_TOLERANCE,
) -> list[str]:
    """How the DUT's reported status differs from the model's state at model time `now` (empty:
    it matches): count, lockout, PAYG state, credit (within SECONDS_LEFT_TOLERANCE) and, with
    `streak`, the invalid-token streak. Fields the DUT does not report are not compared."""
    out = []
    if status.token_count is not None and status.token_count != m.last_count:
        out.append(f"DUT token count {status.token_count}, model {m.last_count}")
    if status.locked_s is not None:
        want_locked = max(0, m.locked_until - now)
        if abs(status.locked_s - want_locked) > SECONDS_LEFT_TOLERANCE:
            out.append(
                f"DUT token entry locked for {status.locked_s} s, the model {want_locked} s "
                f"(tolerance {SECONDS_LEFT_TOLERANCE} s)"
            )
    want_left = m.seconds_left(now)
    want_payg = "disabled" if m.payg_disabled else ("active" if want_left > 0 else "inactive")
    if status.payg != want_payg:
        out.append(
            f"DUT PAYG state {status.payg}, model: {want_payg}"
            + (f" with {want_left:.0f} s of credit left" if want_payg == "active" else "")
        )
    elif not m.payg_disabled and abs(status.seconds_left - want_left) > credit_tolerance:
        out.append(
            f"DUT has {status.seconds_left} s of credit left, the model {want_left:.0f} s "
            f"(tolerance {credit_tolerance:g} s)"
        )
    if streak and status.invalid_streak is not None and status.invalid_streak != m.invalid_streak:
        out.append(f"DUT counts {status.invalid_streak} consecutive invalid tokens, the model {m.invalid_streak}")
    return out
