"""The steps of a random walk, as data a person can read and a replay can take back.

A step is relative to the state the device is in when it runs, not to absolute counts: `a3@+2`
is an ADD of raw value 3 two counts above the last one, whatever that is. A shrunk sequence, with
steps taken out, then still means something, and the same text replays on any DUT of the profile,
from a factory reset or from wherever its ledger says it is.

Text form, one word per step, `<id>:<op>`, space-separated (the id is the step's number in the walk
that made it; `r` refers to another step by it):

| op | step |
|---|---|
| `a<v>@<±k>` | ADD of raw value v at count last±k (moved one further out if the parity is wrong) |
| `xa<v>@<±k>`, `xs`, `xd`, `xy` | the same as an extended (12-digit) token, on a device that takes both kinds |
| `s<v>@<±k>` | SET, likewise (SET sits at odd counts) |
| `d@<±k>` | DISABLE_PAYG at last±k |
| `y@<±k>` | COUNTER_SYNC at last±k |
| `c<digits>` | these digits entered as a code (a wrong one, as a customer would type) |
| `r<id>` | the code step <id> entered, entered again |
| `p` | a power cycle |
| `t<s>` | the DUT's clock set s seconds forward |
| `w` | a wait on the real clock until token entry unlocks (a DUT whose clock cannot be set) |
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from bench.openpaygo.tokens import TokenKind

Op = Literal["token", "code", "reenter", "power", "advance", "wait"]
_KINDS = {"a": TokenKind.ADD_TIME, "s": TokenKind.SET_TIME, "d": TokenKind.DISABLE_PAYG, "y": TokenKind.COUNTER_SYNC}
_LETTER = {kind: letter for letter, kind in _KINDS.items()}
_WORD = re.compile(r"(\d+):(x?)(?:([as])(\d+)@([+-]\d+)|([dy])@([+-]\d+)|c(\d{1,24})|r(\d+)|(p)|t(\d+)|(w))")
MAX_STEPS_IN_TEXT = 100_000


class StepSyntaxError(ValueError):
    """A replay text that is not a walk; the message names the word and what was expected."""


@dataclass(frozen=True)
class Step:
    id: int
    op: Op
    kind: TokenKind | None = None  # token
    value: int | None = None  # token: raw value of ADD/SET
    offset: int = 0  # token: count relative to the last one
    code: str = ""  # code: the digits
    ref: int = -1  # reenter: the step whose code is entered again
    seconds: int = 0  # advance
    extended: bool = False  # token: an extended token (on a device that takes both kinds)

    def text(self) -> str:
        if self.op == "token":
            assert self.kind is not None
            letter = ("x" if self.extended else "") + _LETTER[self.kind]
            value = "" if self.value is None else str(self.value)
            return f"{self.id}:{letter}{value}@{self.offset:+d}"
        if self.op == "code":
            return f"{self.id}:c{self.code}"
        if self.op == "reenter":
            return f"{self.id}:r{self.ref}"
        if self.op == "power":
            return f"{self.id}:p"
        if self.op == "wait":
            return f"{self.id}:w"
        return f"{self.id}:t{self.seconds}"

    def describe(self) -> str:
        """The step in words, for the report's table."""
        if self.op == "token":
            assert self.kind is not None
            what = ("extended " if self.extended else "") + self.kind.name
            what += "" if self.value is None else f" value {self.value}"
            return f"{what} at count last{self.offset:+d}"
        if self.op == "code":
            return f"enter the code {self.code} (wrong or malformed)"
        if self.op == "reenter":
            return f"enter step {self.ref}'s code again"
        if self.op == "power":
            return "power cycle"
        if self.op == "wait":
            return "wait until token entry unlocks"
        return f"set the DUT's clock {self.seconds} s forward"


def format_steps(steps: list[Step]) -> str:
    return " ".join(s.text() for s in steps)


def parse_steps(text: str) -> list[Step]:
    """The steps of a replay text (StepSyntaxError naming the first word that is not one)."""
    steps: list[Step] = []
    seen: set[int] = set()
    words = text.split()
    if not words:
        raise StepSyntaxError("the walk to replay is empty")
    if len(words) > MAX_STEPS_IN_TEXT:
        raise StepSyntaxError(f"the walk to replay has {len(words)} steps, more than {MAX_STEPS_IN_TEXT}")
    for n, word in enumerate(words, 1):
        m = _WORD.fullmatch(word)
        if m is None:
            raise StepSyntaxError(
                f"word {n} of the walk, {word[:40]!r}: expected <id>:<step> with a step a<v>@±k, s<v>@±k, "
                "d@±k, y@±k, c<digits>, r<id>, p, t<seconds> or w"
            )
        sid = int(m.group(1))
        if sid in seen:
            raise StepSyntaxError(f"word {n} of the walk, {word!r}: step id {sid} is used twice")
        seen.add(sid)
        ext = bool(m.group(2))
        if m.group(3):
            steps.append(Step(sid, "token", _KINDS[m.group(3)], int(m.group(4)), int(m.group(5)), extended=ext))
        elif m.group(6):
            steps.append(Step(sid, "token", _KINDS[m.group(6)], None, int(m.group(7)), extended=ext))
        elif ext:
            raise StepSyntaxError(f"word {n} of the walk, {word!r}: only a token step can be extended (x)")
        elif m.group(8):
            steps.append(Step(sid, "code", code=m.group(8)))
        elif m.group(9):
            steps.append(Step(sid, "reenter", ref=int(m.group(9))))
        elif m.group(10):
            steps.append(Step(sid, "power"))
        elif m.group(12):
            steps.append(Step(sid, "wait"))
        else:
            steps.append(Step(sid, "advance", seconds=int(m.group(11))))
    return steps
