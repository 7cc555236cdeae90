"""The random walk's choice of the next step: seeded, drawn from everything a customer, a server
and a power supply can do to a device, weighted toward what builds up state.

It looks only at the model (never at the DUT) and avoids only what a correct device may answer
either way or what the rig cannot undo in time:
- a token at count 0 (the starting code: "invalid" and "already used" are both right);
- a clock jump or a lockout's end landing within BOUNDARY_MARGIN_S of the credit's end, where the
  readout's second decides between active and inactive;
- without `rtc_set`, an entry that would lock token entry for longer than the walk may wait.
After every accepted token it re-enters a sample drawn from all the codes entered before, so
bookkeeping that forgets an old token shows however long ago it was entered.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from bench.openpaygo.model import MAX_TOKEN_JUMP, MAX_TOKEN_JUMP_COUNTER_SYNC, MAX_UNUSED_OLDER_TOKENS
from bench.openpaygo.tokens import MAX_EXTENDED_VALUE, TokenKind
from bench.walk.execute import WalkExecutor
from bench.walk.steps import Step

ADD, SET, DISABLE, SYNC = TokenKind.ADD_TIME, TokenKind.SET_TIME, TokenKind.DISABLE_PAYG, TokenKind.COUNTER_SYNC
BOUNDARY_MARGIN_S = 60
REENTRIES_AFTER_ACCEPT = 2
# relative weights of the moves (the ones the DUT cannot take are left out)
WEIGHTS = {
    "add_next": 24,
    "set_next": 7,
    "add_jump": 6,
    "token_over": 3,
    "add_older": 7,
    "token_too_old": 3,
    "disable": 2,
    "sync": 4,
    "sync_outside": 2,
    "wrong_code": 6,
    "reenter": 8,
    "advance": 1,
}
# A DUT without factory reset keeps every count a walk uses, and a count stops at 65535: its walk
# jumps this far at most (the window's edges are still probed by tokens past them, which are
# refused and use nothing), so a night's walk uses tens of counts, not hundreds.
FRUGAL_JUMP = 8
EXTENDED_SHARE = 0.25  # of the token steps, on a device that takes both kinds
PROBE_AFTER_ACCEPT = 0.5  # after an accepted token one older-ADD probe of the window, with this chance two


@dataclass(frozen=True)
class Abilities:
    """What the rig lets the walk do."""

    can_advance: bool  # rtc + rtc_set: clock jumps, lockouts ended by a jump
    code_length: int  # digits of a code of the DUT's profile
    restricted_digits: bool
    max_value: int  # the largest ADD/SET raw value
    lock_wait_s: float  # without rtc_set: the longest lockout the walk may wait out
    extended_too: bool = False  # the device takes extended tokens besides standard ones
    frugal: bool = False  # no factory reset: every count the walk uses is gone for good (see FRUGAL_JUMP)


class WalkGenerator:
    def __init__(self, seed: int, abilities: Abilities, steps: int, power_cycles: int) -> None:
        self.rng = random.Random(f"paygo-bench walk {seed}")
        self.abilities = abilities
        # the power cycles at random points of the walk, all of them used (after a few steps:
        # there is state to lose)
        points = range(min(5, steps - 1), max(steps, 1))
        self.power_at = sorted(self.rng.sample(points, min(power_cycles, len(points))))
        self.next_id = 0
        self.entered: list[int] = []  # ids of the steps that entered a code
        self.steps = steps
        self.drawn: set[str] = set()  # the moves drawn so far (see _pick_move)

    def _step(self, op, **kw) -> Step:
        step = Step(self.next_id, op, **kw)
        self.next_id += 1
        return step

    # -- the next move ----------------------------------------------------------------------
    def next(self, ex: WalkExecutor) -> Step:
        lock = ex.lock_left()
        if lock > 0:
            return self._while_locked(ex, lock)
        if self.power_at and self.next_id >= self.power_at[0]:
            self.power_at.pop(0)
            return self._step("power")
        for _ in range(20):  # a few draws: a move the rules above exclude is drawn again
            step = self._draw(ex)
            if step is not None and self.allowed(ex, step):
                return step
        return self._step("token", kind=ADD, value=self._value(), offset=1)

    def reentries(self) -> list[Step]:
        """After an accepted token: codes drawn from every code entered before it, and now and
        then a never-entered older ADD inside the window, which probes the used-count record
        the token just changed."""
        earlier = self.entered[:-1]
        picks = self.rng.sample(earlier, min(REENTRIES_AFTER_ACCEPT, len(earlier)))
        steps = [self._step("reenter", ref=ref) for ref in picks]
        probes = 1 + (self.rng.random() < PROBE_AFTER_ACCEPT)
        for offset in self.rng.sample(range(1, MAX_UNUSED_OLDER_TOKENS + 1), probes):
            steps.append(self._step("token", kind=ADD, value=self._value(), offset=-offset))
        return steps

    def entered_code(self, step: Step) -> None:
        if step.op in ("token", "code"):
            self.entered.append(step.id)

    def _draw(self, ex: WalkExecutor) -> Step | None:
        step = self._draw_move(ex)
        if (
            step is not None
            and step.op == "token"
            and self.abilities.extended_too
            and self.rng.random() < EXTENDED_SHARE
        ):
            value = None if step.value is None else self._extended_value()
            return Step(step.id, "token", step.kind, value, step.offset, extended=True)
        return step

    def _extended_value(self) -> int:
        """A value only an extended token can carry, now and then its largest."""
        r = self.rng
        return r.choice((r.randint(1000, 99_999), r.randint(1000, MAX_EXTENDED_VALUE), MAX_EXTENDED_VALUE))

    def _pick_move(self, moves: dict[str, int]) -> str:
        """A move by its weight; from the walk's half on, a move not drawn yet comes first (each
        once), so every walk tries every move the DUT can take. A move of a few percent is
        otherwise missing from some walks: seen, a 300-step walk (about 90 drawn moves, the rest
        re-entries) that never entered a token past the +64 window."""
        if self.next_id >= self.steps // 2:
            missing = [m for m in moves if m not in self.drawn]
            if missing:
                self.drawn.add(missing[0])
                return missing[0]
        move = self.rng.choices(list(moves), weights=list(moves.values()))[0]
        self.drawn.add(move)
        return move

    def _draw_move(self, ex: WalkExecutor) -> Step | None:
        moves = dict(WEIGHTS)
        if not self.abilities.can_advance:
            del moves["advance"]
        if not self.entered:
            del moves["reenter"]
        move = self._pick_move(moves)
        r = self.rng
        if move == "add_next":
            return self._step("token", kind=ADD, value=self._value(), offset=r.randint(1, 2))
        if move == "set_next":
            return self._step("token", kind=SET, value=self._value(), offset=r.randint(1, 2))
        if move == "add_jump":
            return self._step(
                "token",
                kind=r.choice((ADD, ADD, SET)),
                value=self._value(),
                offset=r.randint(3, self._jump(MAX_TOKEN_JUMP)),
            )
        if move == "token_over":
            return self._step(
                "token",
                kind=r.choice((ADD, SET)),
                value=self._value(),
                offset=r.randint(MAX_TOKEN_JUMP + 1, MAX_TOKEN_JUMP + 6),
            )
        if move == "add_older":
            return self._step("token", kind=ADD, value=self._value(), offset=-r.randint(1, MAX_UNUSED_OLDER_TOKENS))
        if move == "token_too_old":
            low = MAX_UNUSED_OLDER_TOKENS + 1
            return self._step("token", kind=r.choice((ADD, SET)), value=self._value(), offset=-r.randint(low, low + 8))
        if move == "disable":
            return self._step("token", kind=DISABLE, offset=r.randint(1, 3))
        if move == "sync":
            return self._step(
                "token", kind=SYNC, offset=r.randint(-MAX_TOKEN_JUMP + 1, self._jump(MAX_TOKEN_JUMP_COUNTER_SYNC))
            )
        if move == "sync_outside":
            offset = r.choice(
                (
                    r.randint(MAX_TOKEN_JUMP_COUNTER_SYNC + 1, MAX_TOKEN_JUMP_COUNTER_SYNC + 5),
                    -r.randint(MAX_TOKEN_JUMP, MAX_TOKEN_JUMP + 5),
                )
            )
            return self._step("token", kind=SYNC, offset=offset)
        if move == "wrong_code":
            return self._step("code", code=self._wrong_code())
        if move == "reenter":
            return self._step("reenter", ref=r.choice(self.entered))
        return self._step("advance", seconds=r.choice((r.randint(61, 3600), r.randint(3600, 3 * 86400))))

    def _jump(self, most: int) -> int:
        return min(most, FRUGAL_JUMP) if self.abilities.frugal else most

    def _value(self) -> int:
        """Mostly a few days; now and then the largest values, where widths break."""
        r = self.rng
        top = self.abilities.max_value
        value = r.choice((r.randint(0, 30), r.randint(0, 30), r.randint(0, 30), r.randint(0, top), top))
        return 995 if 995 < value < 1000 else value  # 996-999 are reserved or special, never a value

    def _wrong_code(self) -> str:
        """A code of the right length a customer could mistype; with the restricted digit set,
        now and then one with a digit outside 1-4."""
        n = self.abilities.code_length
        if self.abilities.restricted_digits:
            digits = [self.rng.choice("1234") for _ in range(n)]
            if self.rng.random() < 0.3:
                digits[self.rng.randrange(n)] = self.rng.choice("056789")
            return "".join(digits)
        return "".join(self.rng.choice("0123456789") for _ in range(n))

    # -- what to avoid ----------------------------------------------------------------------
    def allowed(self, ex: WalkExecutor, step: Step) -> bool:
        now = ex.session.now()
        if step.op == "token" and ex.count_for(step) is None:
            return False
        if step.op == "advance":
            return self._clear_of_credit_end(ex, now + step.seconds)
        if step.op in ("token", "code", "reenter"):
            code = ex.code_for(step, probe=True)
            if code is None:
                return False
            p = ex.model.copy().enter(code, now)
            if p.lock_seconds > 0 and not self.abilities.can_advance:
                return p.lock_seconds + 5 <= self.abilities.lock_wait_s
        return True

    def _clear_of_credit_end(self, ex: WalkExecutor, when: int) -> bool:
        m = ex.model
        return m.payg_disabled or abs(m.active_until - when) > BOUNDARY_MARGIN_S

    def _while_locked(self, ex: WalkExecutor, lock: int) -> Step:
        """Locked: now and then an entry while locked (it must be refused unread), else the lock
        ended: the clock set past it where it can be, else waited out (a `w` step)."""
        if lock > 10 and self.rng.random() < 0.3 and self.entered:
            return self._step("reenter", ref=self.rng.choice(self.entered))
        if self.abilities.can_advance:
            seconds = ex.lock_clear_seconds()
            while not self._clear_of_credit_end(ex, ex.session.now() + seconds):
                seconds += BOUNDARY_MARGIN_S
            return self._step("advance", seconds=seconds)
        return self._step("wait")
