"""OpenPAYGO Token generation for the bench: the "server side" of every token test.

`TokenGenerator` keeps the server's token count the way a real server does (docs/tokens.md
"How a token is made": ADD goes to the next even count, SET/DISABLE/SYNC to the next odd one) and
hashes with `openpaygo.generate_token`, wrapping its quirks (docs/tokens.md "openpaygo 0.6.3: what
the bench does not inherit"): the value must be None for DISABLE/SYNC
(issue #25), a value is accepted only if days x time_divider is a whole number 0..995, and the
starting code 0 is refused because openpaygo would silently derive one from the key instead.

The secret key is held as a `bench.secret.Secret`: it never appears in a repr or an exception.
"""

from __future__ import annotations

import enum
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import openpaygo
from openpaygo import TokenType
from openpaygo.token_encode import OpenPAYGOTokenEncoder
from openpaygo.token_shared import OpenPAYGOTokenShared
from openpaygo.token_shared_extended import OpenPAYGOTokenSharedExtended

from bench.openpaygo.chains import raw_chain
from bench.secret import Secret

MAX_ACTIVATION_VALUE = 995  # 0..995 are activation values (docs/tokens.md "Values and types")
RESERVED_VALUES = (996, 997)  # reserved, never issued
PAYG_DISABLE_VALUE = 998
COUNTER_SYNC_VALUE = 999
MAX_EXTENDED_VALUE = 999_999  # 6-digit value field (docs/tokens.md "Extended tokens")
MAX_TIME_DIVIDER = 255  # divider 1..255 (docs/tokens.md "A device's parameters")

_HEX32 = re.compile(r"[0-9a-fA-F]{32}")


class TokenKind(enum.Enum):
    """What a token does; independent of openpaygo's TokenType numbering (which changed, #20)."""

    ADD_TIME = "add_time"
    SET_TIME = "set_time"
    DISABLE_PAYG = "disable_payg"
    COUNTER_SYNC = "counter_sync"


_TO_LIB = {
    TokenKind.ADD_TIME: TokenType.ADD_TIME,
    TokenKind.SET_TIME: TokenType.SET_TIME,
    TokenKind.DISABLE_PAYG: TokenType.DISABLE_PAYG,
    TokenKind.COUNTER_SYNC: TokenType.COUNTER_SYNC,
}
SPECIAL_VALUES = {TokenKind.DISABLE_PAYG: PAYG_DISABLE_VALUE, TokenKind.COUNTER_SYNC: COUNTER_SYNC_VALUE}


@dataclass(frozen=True)
class Token:
    """One generated token. `value` is the raw activation value (None for DISABLE/SYNC);
    `count` is the count the token carries (not written in it, docs/tokens.md "How a token is
    made"); `days` is value / time_divider."""

    code: str
    kind: TokenKind
    value: int | None
    count: int
    days: float | None

    def __str__(self) -> str:
        return self.code


def next_count(kind: TokenKind, count: int) -> int:
    """The count a server gives the next token of this kind (openpaygo `_get_new_count`,
    docs/tokens.md "How a token is made"):
    parity = type, so ADD moves to the next even count and the others to the next odd one."""
    if kind is TokenKind.ADD_TIME:
        return count + 1 if count % 2 else count + 2
    return count + 2 if count % 2 else count + 1


def token_length(restricted_digits: bool, extended: bool) -> int:
    """Digits in a token: 9 / 12 (extended), 15 / 20 in the restricted 1-4 digit set (docs/tokens.md
    "Restricted digits")."""
    return {(False, False): 9, (False, True): 12, (True, False): 15, (True, True): 20}[
        (bool(restricted_digits), bool(extended))
    ]


KEYPAD_DIGITS = "1234"  # the restricted digit set (docs/tokens.md "Restricted digits")


def keypad_aliases(digit: str) -> set[str]:
    """The keypad digits a decoder that does not check the digit set may read `digit` as: two
    bits of digit - 1 (openpaygo's `convert_from_4_digit_token`, 5 reads as 1) or of the digit
    itself."""
    d = int(digit)
    return {KEYPAD_DIGITS[(d - 1) % 4], KEYPAD_DIGITS[d % 4]}


def outside_digit_probe(code: str) -> str:
    """A restricted-digit code with its first digit replaced by one outside 1-4 that no reading in
    `keypad_aliases` turns back into the original digit: a device that reads it so sees another
    token (invalid), never the original (already used), so a correct device's answer is invalid
    either way. Not 0: a code read as a number would lose it."""
    if len(code) < 1 or set(code) - set(KEYPAD_DIGITS):
        raise ValueError("not a restricted-digit code")
    digit = next(d for d in "56789" if code[0] not in keypad_aliases(d))
    return digit + code[1:]


def key_hex_of(secret_key: str | Secret) -> str:
    """Validate a 16-byte key given as 32 hex characters (or a Secret holding them).

    Checked up front because openpaygo raises struct.error for other lengths (docs/tokens.md,
    "Key length"); the message never contains the key."""
    raw = secret_key.reveal() if isinstance(secret_key, Secret) else secret_key
    if not isinstance(raw, str) or not _HEX32.fullmatch(raw):
        raise ValueError("secret key must be 32 hexadecimal characters (16 bytes)")
    return raw.lower()


class TokenGenerator:
    """A token server for one device: tracks the count and hands out tokens.

    `count` is the server's last issued count (the CSV "Count" column for a new device).
    """

    def __init__(
        self,
        secret_key_hex: str | Secret,
        starting_code: int,
        count: int = 1,
        time_divider: int = 1,
        restricted_digits: bool = False,
        extended: bool = False,
        on_issue: Callable[[Token], None] | None = None,
    ) -> None:
        """`on_issue` hears of every token handed out or crafted (a ledger keeps them)."""
        self._key = Secret(key_hex_of(secret_key_hex), "token key")
        self._on_issue = on_issue
        if isinstance(starting_code, bool) or not isinstance(starting_code, int):
            raise TypeError("starting_code must be an int")
        if not 1 <= starting_code <= 999_999_999:
            # 0 is excluded: openpaygo treats a falsy starting code as "derive one from the key".
            raise ValueError(f"starting_code must be 1..999999999, got {starting_code}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be a whole number >= 0, got {count!r}")
        if (
            isinstance(time_divider, bool)
            or not isinstance(time_divider, int)
            or not (1 <= time_divider <= MAX_TIME_DIVIDER)
        ):
            raise ValueError(f"time_divider must be a whole number 1..{MAX_TIME_DIVIDER}, got {time_divider!r}")
        self.starting_code = starting_code
        self.time_divider = time_divider
        self.restricted_digits = bool(restricted_digits)
        self.extended = bool(extended)
        self._count = count

    def __repr__(self) -> str:
        return (
            f"TokenGenerator(key=***, starting_code={self.starting_code}, count={self._count}, "
            f"time_divider={self.time_divider}, restricted_digits={self.restricted_digits}, "
            f"extended={self.extended})"
        )

    @property
    def count(self) -> int:
        """The last count the server issued."""
        return self._count

    @property
    def length(self) -> int:
        return token_length(self.restricted_digits, self.extended)

    @property
    def max_value(self) -> int:
        return MAX_EXTENDED_VALUE if self.extended else MAX_ACTIVATION_VALUE

    # -- values ---------------------------------------------------------------------------
    def value_for(self, days: float | int | Fraction) -> int:
        """Raw value for a number of days: days x time_divider, a whole number 0..995
        (docs/tokens.md "Time divider"); extended tokens allow 0..999999 except the reserved
        996..999."""
        if isinstance(days, bool) or not isinstance(days, (int, float, Fraction)):
            raise TypeError(f"days must be a number, got {type(days).__name__}")
        if isinstance(days, float) and not math.isfinite(days):
            raise ValueError(f"days must be finite, got {days}")
        raw: float | Fraction = days * self.time_divider
        value = round(raw)
        if abs(float(raw) - value) > 1e-9:
            raise ValueError(
                f"{days} days x time_divider {self.time_divider} = {float(raw):g} is not a whole "
                f"number: with this divider a token carries multiples of 1/{self.time_divider} day"
            )
        self._check_value(value, f"{days} days x time_divider {self.time_divider}")
        return value

    def _check_value(self, value: int, what: str) -> None:
        if not 0 <= value <= self.max_value:
            raise ValueError(f"{what} = {value} is outside the activation values 0..{self.max_value}")
        if self.extended and value in (*RESERVED_VALUES, PAYG_DISABLE_VALUE, COUNTER_SYNC_VALUE):
            # The library would encode an extended SET 998 that decodes as DISABLE (issue #24).
            raise ValueError(f"{what} = {value}: 996..999 are reserved/special values")

    def _days(self, kind: TokenKind, value: int | None) -> float | None:
        return None if value is None else value / self.time_divider

    # -- server tokens ----------------------------------------------------------------------
    def add_days(self, days: float | int | Fraction) -> Token:
        return self._issue(TokenKind.ADD_TIME, self.value_for(days))

    def set_days(self, days: float | int | Fraction) -> Token:
        return self._issue(TokenKind.SET_TIME, self.value_for(days))

    def disable(self) -> Token:
        return self._issue(TokenKind.DISABLE_PAYG, None)

    def counter_sync(self) -> Token:
        return self._issue(TokenKind.COUNTER_SYNC, None)

    def _issue(self, kind: TokenKind, value: int | None) -> Token:
        new_count, code = openpaygo.generate_token(
            secret_key=self._key.reveal(),
            count=self._count,
            value=value,  # raw, with value_divider=1, so the library does no float rounding
            token_type=_TO_LIB[kind],
            starting_code=self.starting_code,
            value_divider=1,
            restricted_digit_set=self.restricted_digits,
            extended_token=self.extended,
        )
        code = str(code).zfill(self.length)
        assert new_count == next_count(kind, self._count), "openpaygo count rule changed"
        self._count = new_count
        return self._issued(Token(code, kind, value, new_count, self._days(kind, value)))

    def _issued(self, token: Token) -> Token:
        if self._on_issue is not None:
            self._on_issue(token)
        return token

    # -- crafted tokens ---------------------------------------------------------------------
    def at_count(self, kind: TokenKind, value: int | None, count: int, *, advance: bool = False) -> Token:
        """A token of `kind` carrying exactly `count` (jump windows, older tokens, ...).

        ADD must sit at an even count and SET at an odd one (parity = type, docs/tokens.md
        "Values and types"); DISABLE and SYNC may sit at any count >= 1, because devices check
        998/999 before parity. The server count is left alone unless `advance` (then it moves up
        to `count`, never down)."""
        if kind in SPECIAL_VALUES:
            if value is not None:
                raise ValueError(f"{kind.name} carries no value (got {value!r})")
            if count < 1:
                raise ValueError(f"{kind.name} needs count >= 1 (count 0 is the starting code)")
            raw = SPECIAL_VALUES[kind]
        else:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{kind.name} needs a raw int value, got {value!r}")
            self._check_value(value, f"{kind.name} value")
            want_odd = kind is TokenKind.SET_TIME
            if count < 0 or bool(count % 2) != want_odd:
                raise ValueError(f"{kind.name} must sit at an {'odd' if want_odd else 'even'} count >= 0, got {count}")
            raw = value
        code = self.craft(raw, count)
        if advance:
            self._count = max(self._count, count)
        return self._issued(Token(code, kind, value, count, self._days(kind, value)))

    def craft(self, raw_value: int, count: int) -> str:
        """The code for any raw value (0..999, reserved ones included) at any count >= 0.

        Count 0 is the starting code with the value's base put in (docs/tokens.md "The starting
        code")."""
        top = MAX_EXTENDED_VALUE if self.extended else 999
        if isinstance(raw_value, bool) or not isinstance(raw_value, int) or not 0 <= raw_value <= top:
            raise ValueError(f"raw value must be 0..{top}, got {raw_value!r}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be a whole number >= 0, got {count!r}")
        if count == 0:
            shared = OpenPAYGOTokenSharedExtended if self.extended else OpenPAYGOTokenShared
            offset = 1_000_000 if self.extended else 1000
            base = (self.starting_code % offset + raw_value) % offset
            token = shared.put_base_in_token(self.starting_code, base)
            if self.restricted_digits:
                token = shared.convert_to_4_digit_token(token)
            return str(token).zfill(self.length)
        # What OpenPAYGOTokenEncoder.generate_{standard,extended}_token compute (the base put in
        # the starting code, hashed `count` times, the base put back), from a chain kept per base:
        # a walk crafts hundreds of tokens at counts in the hundreds, each from scratch otherwise.
        shared = OpenPAYGOTokenSharedExtended if self.extended else OpenPAYGOTokenShared
        encode_base = (
            OpenPAYGOTokenEncoder._encode_base_extended if self.extended else OpenPAYGOTokenEncoder._encode_base
        )
        base = encode_base(shared.get_token_base(self.starting_code), raw_value)
        chain = self._chain(shared, base, count)
        token = shared.put_base_in_token(chain[count], base)
        if self.restricted_digits:
            token = shared.convert_to_4_digit_token(token)
        return str(token).zfill(self.length)

    def _chain(self, shared, base: int, count: int) -> list[int]:
        """Raw hash outputs 0..count for this base, from the chains the process keeps
        (bench/openpaygo/chains.py: the device model walks the same ones)."""
        return raw_chain(bytes.fromhex(self._key.reveal()), self.starting_code, self.extended, base, count)

    def invalid(self, seed: int = 0) -> str:
        """A well-formed code that decodes at no count 0..count+200 (deterministic per seed)."""
        rng = random.Random(f"invalid-token/{seed}")
        key = bytes.fromhex(self._key.reveal())
        shared = OpenPAYGOTokenSharedExtended if self.extended else OpenPAYGOTokenShared
        digits = 12 if self.extended else 9
        offset = 1_000_000 if self.extended else 1000
        for _ in range(1000):
            token = rng.randrange(10**digits)  # < 2**30 (2**40): fits the restricted form too
            base = token % offset
            current = shared.put_base_in_token(self.starting_code, base)
            hit = False
            for _count in range(self._count + 201):
                if shared.put_base_in_token(current, base) == token:
                    hit = True
                    break
                current = shared.generate_next_token(current, key)
            if not hit:
                if self.restricted_digits:
                    return str(shared.convert_to_4_digit_token(token)).zfill(self.length)
                return str(token).zfill(self.length)
        raise RuntimeError("could not find an invalid token")  # pragma: no cover


# -- the official full test procedure (docs/tokens.md "Full test procedure G1–G12") ---------
Expect = str  # "accepted" | "invalid" | "already_used"


@dataclass(frozen=True)
class ProcedureStep:
    """One entry of the full test procedure, in entry order.

    `wait_seconds` is RTC time to let pass before entering; `days` the days a correct device
    shows right after the entry (math.inf = PAYG disabled)."""

    step: str
    code: str
    expect: Expect
    days: float
    wait_seconds: int = 0
    token: Token | None = None


def full_test_procedure(
    gen: TokenGenerator, *, spreadsheet: bool = False, with_u2d: bool = True
) -> list[ProcedureStep]:
    """G1..G12, U1..U3 (+ the bench's U2D, docs/tokens.md "What the bench adds") generated in the
    server's order, as `OpenPAYGO-python:test/full_test_procedure.py` does: G8 tokens jump 29
    counts before the next odd one, and U3's DISABLE is a 998 at the next EVEN count (generated
    in ADD mode, as in the vectors of docs/tokens.md "Test vectors").
    `spreadsheet=True` follows `test_spreadsheet_generator.py` instead, whose U3 DISABLE is an
    ordinary odd-count one (its tokens are the ones `wan-oge/openpaygo-zephyr`'s token tests use).

    The device must be at `gen.count` and time-based with `gen.time_divider`."""
    steps: list[ProcedureStep] = []
    inf = math.inf

    def enter(step: str, token: Token | str, expect: Expect, days: float, wait: int = 0) -> None:
        if isinstance(token, Token):
            steps.append(ProcedureStep(step, token.code, expect, days, wait, token))
        else:
            steps.append(ProcedureStep(step, token, expect, days, wait))

    enter("G1", "123456789", "invalid", 0)
    g2 = gen.set_days(1)
    enter("G2", g2, "accepted", 1)
    g3 = gen.add_days(1)
    enter("G3", g3, "accepted", 2)
    enter("G4A", g3, "already_used", 2)
    enter("G4B", g2, "already_used", 2)
    enter("G5", gen.set_days(30), "accepted", 30)
    enter("G6", gen.set_days(0), "accepted", 0)
    for i in range(1, 4):  # raw 995, whatever the divider
        count = next_count(TokenKind.ADD_TIME, gen.count)
        g7 = gen.at_count(TokenKind.ADD_TIME, 995, count, advance=True)
        enter(f"G7{chr(64 + i)}", g7, "accepted", 995 * i / gen.time_divider)
    for i in range(1, 22):
        count = next_count(TokenKind.SET_TIME, gen.count + 29)
        g8 = gen.at_count(TokenKind.SET_TIME, gen.value_for(i), count, advance=True)
        enter(f"G8{chr(64 + i)}", g8, "accepted", i)
    enter("G9", gen.disable(), "accepted", inf)
    enter("G10", gen.set_days(0), "accepted", 0)
    enter("G11A", gen.disable(), "accepted", inf)
    enter("G11B", gen.add_days(0), "accepted", inf)
    enter("G12A", gen.set_days(0), "accepted", 0)
    enter("G12B", gen.add_days(1), "accepted", 1, wait=48 * 3600)
    enter("U1A", gen.set_days(60), "accepted", 60)
    u1 = [gen.add_days(10), gen.add_days(5), gen.add_days(1)]
    enter("U1B", u1[2], "accepted", 61)
    enter("U1C", u1[0], "accepted", 71)
    enter("U1D", u1[1], "accepted", 76)
    u2a, u2b, u2c = gen.add_days(5), gen.set_days(10), gen.add_days(3)
    enter("U2A", u2b, "accepted", 10)
    enter("U2B", u2a, "already_used", 10)
    enter("U2C", u2c, "accepted", 13)
    if with_u2d:
        enter("U2D", u2a, "already_used", 13)
    u3a = gen.add_days(1)
    if spreadsheet:
        u3b = gen.disable()
    else:
        even = next_count(TokenKind.ADD_TIME, gen.count)
        u3b = gen.at_count(TokenKind.DISABLE_PAYG, None, even, advance=True)
    enter("U3A", u3b, "accepted", inf)
    enter("U3B", u3a, "already_used", inf)
    return steps
