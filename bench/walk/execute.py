"""One walk step on the DUT and the model side by side, and what differed.

Every step is followed by the DUT's status, compared whole (count, PAYG state, credit, lockout,
invalid streak where reported) with the model's; a token entry's reply is compared first. The
model predicts, the DUT's answer is never taken as the truth (bench/station/token_session.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.openpaygo.tokens import SPECIAL_VALUES, TokenGenerator, TokenKind
from bench.station.token_session import LOCK_MARGIN_S, TokenSession
from bench.timeout import sleep_for
from bench.walk.steps import Step


@dataclass(frozen=True)
class StepResult:
    step: Step
    code: str | None  # what was entered (None: no entry)
    predicted: str | None  # the model's outcome for it
    got: str | None  # the DUT's
    problems: tuple[str, ...]
    skipped: str | None = None  # why the step did nothing (a reference to a step not in this walk, say)

    @property
    def failed(self) -> bool:
        return bool(self.problems)

    def signature(self) -> str:
        """What kind of difference this is, so a shrunk walk is held to the same one: the step's
        kind and which of the DUT's answers differed (its reply's result, or a status field)."""
        kinds = []
        for p in self.problems:
            m = re.search(r"the DUT answered \{'result': '(\w+)'.*?predicts \{'result': '(\w+)'", p)
            if m:
                kinds.append(f"reply {m.group(1)} for {m.group(2)}")
                continue
            for key, name in _STATUS_FIELDS:
                if key in p:
                    kinds.append(name)
                    break
            else:
                kinds.append("other")
        return f"{self.step.op}: {', '.join(sorted(set(kinds)))}"


_STATUS_FIELDS = (
    ("DUT token count", "count"),
    ("PAYG state", "payg state"),
    ("credit left", "credit"),
    ("consecutive invalid", "invalid streak"),
    ("locked for", "lockout"),
    ("answered", "reply"),
)


@dataclass
class WalkExecutor:
    """Runs steps on one token session; remembers each step's code for later re-entries."""

    session: TokenSession
    tokens: TokenGenerator
    power_cycle: Callable[[], object]
    lock_wait_s: float = 0.0  # the longest real-clock wait for a lockout (`w` steps)
    extended_tokens: TokenGenerator | None = None  # a device that takes both kinds: the extended ones
    codes: dict[int, str] = field(default_factory=dict)

    @property
    def model(self):
        return self.session.model

    def count_for(self, step: Step) -> int | None:
        """The count a token step lands on now: last + offset, moved one further from last when
        the parity is not its kind's (ADD even, SET odd); None below count 1 (count 0 is the
        starting code, which a correct device may refuse either way)."""
        count = self.model.last_count + step.offset
        if step.kind in (TokenKind.ADD_TIME, TokenKind.SET_TIME):
            want_odd = step.kind is TokenKind.SET_TIME
            if bool(count % 2) != want_odd:
                count += 1 if step.offset > 0 else -1
        return count if count >= 1 else None

    def code_for(self, step: Step, probe: bool = False) -> str | None:
        """The code the step enters. `probe`: only to predict it (the generator's look ahead),
        so it is crafted without being issued: the ledger keeps the tokens entered, not each
        candidate the walk weighed."""
        if step.op == "token":
            count = self.count_for(step)
            if count is None:
                return None
            assert step.kind is not None
            tokens = self.extended_tokens if step.extended else self.tokens
            if tokens is None:
                return None
            if probe:
                return tokens.craft(SPECIAL_VALUES.get(step.kind, step.value or 0), count)
            return tokens.at_count(step.kind, step.value, count).code
        if step.op == "code":
            return step.code
        if step.op == "reenter":
            return self.codes.get(step.ref)
        return None

    def run(self, step: Step) -> StepResult:
        s = self.session
        result: tuple[str | None, str | None, str | None] = (None, None, None)
        if step.op in ("token", "code", "reenter"):
            code = self.code_for(step)
            if code is None:
                why = (
                    f"step {step.ref} is not in this walk"
                    if step.op != "token"
                    else (
                        "the DUT takes no extended tokens"
                        if step.extended and not self.extended_tokens
                        else "count below 1"
                    )
                )
                return StepResult(step, None, None, None, (), skipped=why)
            self.codes[step.id] = code
            checked = s.enter(code)
            problems = s.outcome_differences(code, checked.predicted, checked.outcome)
            result = (code, checked.predicted.outcome, checked.outcome.result)
        elif step.op == "power":
            self.power_cycle()
            problems = []
        elif step.op == "wait":
            left = self.lock_left()
            if left > self.lock_wait_s:
                return StepResult(
                    step, None, None, None, (), skipped=f"the lockout has {left} s left, over the walk's wait"
                )
            sleep_for(left)  # the lockout itself: a deadline, not synchronisation
            problems = []
        else:  # advance: the clock set forward on the second's turn, so jumps do not add up losses
            s.advance(step.seconds, on_tick=True)
            problems = []
        if not problems:
            problems = s.status_problems(s.dut.status(), streak=True)
        return StepResult(step, *result, tuple(problems))

    # -- what the generator needs to know -----------------------------------------------------
    def lock_left(self) -> int:
        """Seconds until the model's lockout is over with LOCK_MARGIN_S to spare (0: over): an
        entry just at its end would race the DUT's clock readout."""
        m = self.model
        return max(0, m.locked_until + LOCK_MARGIN_S - self.session.now()) if m.locked_until else 0

    def lock_clear_seconds(self) -> int:
        """A clock jump that takes the model past its lockout with margin (0: not locked); +2:
        the jump's readout and the status's."""
        left = self.lock_left()
        return left + 2 if left > 0 else 0
