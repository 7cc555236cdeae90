"""The bench's model of a device's token state: what a correct device must do with a code.

Tests use it to PREDICT an outcome before entering a token, never the device's answer. It is a
plain set-based statement of the reference semantics (docs/tokens.md), written independently
of the simulator's bit-mask decoder (`bench.sim.token_decoder`) so the two can be compared.

Rules (the docs/tokens.md section in brackets):
- value = (token base - starting-code base) mod 1000; 996/997 are reserved: invalid; 998 is
  DISABLE_PAYG and 999 COUNTER_SYNC at ANY count, checked before parity; otherwise odd count =
  SET_TIME, even = ADD_TIME ["Values and types"].
- a code is looked up at counts 1..last+64 (last+100 for 999) ["Windows"], and no higher than
  `max_count` where a device cannot store more (a u16 count: 65535, "Used counts"). Count 0 is the
  starting code, never a token: a code matching only there is invalid ["The starting code";
  openpaygo's "Starting code accepted" not inherited]. A code that matches a count but is
  refused there is already_used.
- accepted when: SYNC: last-64 < count <= last+100 and count not used ["Windows"; a used sync is
  refused, unlike openpaygo's "Sync re-accepted"]; others: last < count <= last+64; or an older
  ADD: even, count != 0, last-16 < count < last and not used ["Windows", older unused ADD].
- used counts: the device remembers the 16 counts below last, plus last itself ["Used
  counts"]; every odd count <= last is used (parity = type: older SET/DISABLE/SYNC are never
  accepted, "Windows"); SET/DISABLE/SYNC mark every older count used, so an ADD older than them
  is refused (U2D, "What the bench adds"). A SYNC below last moves the count down and forgets
  counts above it, or (`sync_lowers_count=False`, the reference C) keeps the higher count with
  every count below it used ["Where a device may choose"].
- extended tokens ["Extended tokens"]: 996-999 mean what they mean in standard tokens, or
  (`extended_special=False`, openpaygo 0.6.3) are time values like any other; an
  `extended_only` device refuses standard-length codes as invalid.
- time ["Credit", "Re-lock"]: ADD extends active_until (from now if expired), SET sets
  now + days, DISABLE makes PAYG unlimited, a SET re-enables PAYG, an ADD does not (G11B).
  Seconds = value * 86400 // time_divider (whole RTC seconds, as the reference C does).
- brute force ["Brute-force lockout"]: a lockout schedule (reference: 2 free errors, then
  2^(n-2) min, 512 max); while locked an entry is "locked", not decoded and not counted;
  already_used neither counts nor resets the streak; an accepted token resets it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from openpaygo.token_shared import OpenPAYGOTokenShared
from openpaygo.token_shared_extended import OpenPAYGOTokenSharedExtended

from bench.openpaygo.chains import raw_chain
from bench.openpaygo.tokens import (
    COUNTER_SYNC_VALUE,
    PAYG_DISABLE_VALUE,
    RESERVED_VALUES,
    TokenKind,
    key_hex_of,
)
from bench.secret import Secret

MAX_TOKEN_JUMP = 64
MAX_TOKEN_JUMP_COUNTER_SYNC = 100
MAX_UNUSED_OLDER_TOKENS = 16
DAY = 86400

Outcome = Literal["accepted", "invalid", "already_used", "locked"]


@dataclass(frozen=True)
class LockoutSchedule:
    """Seconds token entry is locked after the n-th consecutive invalid token (docs/tokens.md
    "Brute-force lockout")."""

    free_errors: int = 2
    first_minutes: int = 2
    max_minutes: int | None = 512
    max_streak: int | None = 11  # the reference C stops counting at 11
    unit_s: float = 60.0  # a "minute" of the schedule: 60 s, unless a test build shortens it

    def seconds(self, streak: int) -> int:
        if streak <= self.free_errors:
            return 0
        minutes = self.first_minutes * 2 ** (streak - self.free_errors - 1)
        if self.max_minutes is not None:
            minutes = min(minutes, self.max_minutes)
        return math.ceil(self.unit_s * minutes)


# Reference C / HDK: errors 1-2 free, error n>=3 locks 2^(n-2) min, capped at 512 min
# (docs/tokens.md "Brute-force lockout").
REFERENCE_LOCKOUT = LockoutSchedule()
# Docs/PDF reading: 1 min doubling from the first error up to 512 min.
DOCS_LOCKOUT = LockoutSchedule(free_errors=0, first_minutes=1, max_minutes=512, max_streak=None)
NO_LOCKOUT = LockoutSchedule(free_errors=10**9, max_streak=None)


@dataclass(frozen=True)
class Prediction:
    outcome: Outcome
    kind: TokenKind | None
    value: int | None  # raw value for ADD/SET, None otherwise
    count: int | None  # the count the code matched (accepted or already_used)
    active_until_after: int
    payg_disabled_after: bool
    lock_seconds: int  # how long entry is locked after this entry (0 = not locked)

    @property
    def accepted(self) -> bool:
        return self.outcome == "accepted"


@dataclass(frozen=True)
class ModelState:
    last_count: int
    used: frozenset[int]
    active_until: int
    payg_disabled: bool
    invalid_streak: int
    locked_until: int


class DeviceModel:
    """A correct device's token state; `enter()` predicts an outcome and updates the state."""

    def __init__(
        self,
        secret_key: str | Secret | bytes,
        starting_code: int,
        count: int = 1,
        *,
        used: Iterable[int] = (),
        time_divider: int = 1,
        restricted_digits: bool = False,
        extended: bool = False,
        active_until: int = 0,
        payg_disabled: bool = False,
        invalid_streak: int = 0,
        locked_until: int = 0,
        lockout: LockoutSchedule = REFERENCE_LOCKOUT,
        sync_lowers_count: bool = True,
        extended_special: bool = True,
        extended_only: bool = False,
        max_count: int | None = None,
    ) -> None:
        key = secret_key if isinstance(secret_key, bytes) else bytes.fromhex(key_hex_of(secret_key))
        if len(key) != 16:
            raise ValueError("secret key must be 16 bytes")
        self._key_bytes = _KeyBytes(key)
        if not 0 <= starting_code <= 999_999_999:
            raise ValueError(f"starting_code must be 0..999999999, got {starting_code}")
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if not 1 <= time_divider <= 255:
            raise ValueError(f"time_divider must be 1..255, got {time_divider}")
        self.starting_code = starting_code
        self.time_divider = time_divider
        self.restricted_digits = restricted_digits
        self.extended = extended
        self.lockout = lockout
        # The choices the requirements leave (docs/tokens.md "Where a device may choose").
        self.sync_lowers_count = sync_lowers_count
        self.extended_special = extended_special
        self.extended_only = extended_only
        self.max_count = max_count  # the largest count the device can store (None: no limit)
        self.last_count = count
        self.used: set[int] = {c for c in used if count - MAX_UNUSED_OLDER_TOKENS <= c <= count} | {count}
        self.active_until = active_until
        self.payg_disabled = payg_disabled
        self.invalid_streak = invalid_streak
        self.locked_until = locked_until
        self._chains: dict[tuple[bool, int], list[int]] = {}  # (extended, base) -> codes by count

    def __repr__(self) -> str:
        return f"DeviceModel(key=***, starting_code={self.starting_code}, {self.snapshot()})"

    # -- state --------------------------------------------------------------------------------
    def snapshot(self) -> ModelState:
        return ModelState(
            self.last_count,
            frozenset(self.used),
            self.active_until,
            self.payg_disabled,
            self.invalid_streak,
            self.locked_until,
        )

    def copy(self) -> DeviceModel:
        other = DeviceModel.__new__(DeviceModel)
        other.__dict__.update(self.__dict__)
        other.used = set(self.used)
        other._chains = self._chains  # the hash chains are pure: share them
        return other

    def seconds_left(self, now: int) -> float:
        if self.payg_disabled:
            return math.inf
        return max(0, self.active_until - now)

    def days_left(self, now: int) -> float:
        return self.seconds_left(now) / DAY

    def is_active(self, now: int) -> bool:
        return self.payg_disabled or self.active_until > now

    def is_used(self, count: int) -> bool:
        """docs/tokens.md "Used counts", as a set: remembered counts, last itself, odd counts <= last."""
        return count in self.used or count == self.last_count or (count % 2 == 1 and count <= self.last_count)

    # -- entry --------------------------------------------------------------------------------
    def enter(self, code: str, now: int) -> Prediction:
        if self.locked_until > now:  # entry refused while locked, nothing decoded or counted
            return self._predict("locked", None, None, None, now)
        found = self._lookup(code)
        if found is None:
            return self._invalid(now)
        value, counts, special = found
        for count in counts:  # lowest count first, as the reference decoders scan
            kind = self.kind_at(value, count) if special else _timed_kind(count)
            if self._acceptable(kind, count):
                self._accept(kind, value, count, now)
                self.invalid_streak = 0
                shown = None if kind in (TokenKind.DISABLE_PAYG, TokenKind.COUNTER_SYNC) else value
                return self._predict("accepted", kind, shown, count, now)
        if counts:
            kind = self.kind_at(value, counts[0]) if special else _timed_kind(counts[0])
            shown = None if kind in (TokenKind.DISABLE_PAYG, TokenKind.COUNTER_SYNC) else value
            return self._predict("already_used", kind, shown, counts[0], now)
        return self._invalid(now)

    @staticmethod
    def kind_at(value: int, count: int) -> TokenKind:
        """998/999 before parity (docs/tokens.md "Values and types"): an even-count 998 is still
        DISABLE_PAYG."""
        if value == PAYG_DISABLE_VALUE:
            return TokenKind.DISABLE_PAYG
        if value == COUNTER_SYNC_VALUE:
            return TokenKind.COUNTER_SYNC
        return TokenKind.SET_TIME if count % 2 else TokenKind.ADD_TIME

    def _acceptable(self, kind: TokenKind, count: int) -> bool:
        last = self.last_count
        if kind is TokenKind.COUNTER_SYNC:
            return count > last - MAX_TOKEN_JUMP and not self.is_used(count)
        if count > last:
            return True  # the lookup already bounded it to last+64
        return (
            kind is TokenKind.ADD_TIME
            and count != 0
            and count > last - MAX_UNUSED_OLDER_TOKENS
            and not self.is_used(count)
        )

    def _accept(self, kind: TokenKind, value: int, count: int, now: int) -> None:
        if kind is TokenKind.ADD_TIME:
            if count > self.last_count:
                self.last_count = count
                self.used = {c for c in self.used if c >= count - MAX_UNUSED_OLDER_TOKENS}
            self.used.add(count)
        elif kind is TokenKind.COUNTER_SYNC and count < self.last_count and not self.sync_lowers_count:
            # the reference C keeps its higher count and marks the 16 below it used
            self.used = set(range(max(0, self.last_count - MAX_UNUSED_OLDER_TOKENS), self.last_count + 1))
        else:  # SET/DISABLE/SYNC: this count and every older one is used ("Used counts")
            self.last_count = count
            self.used = set(range(max(0, count - MAX_UNUSED_OLDER_TOKENS), count + 1))
        seconds = value * DAY // self.time_divider
        if kind is TokenKind.ADD_TIME:
            self.active_until = max(self.active_until, now) + seconds
        elif kind is TokenKind.SET_TIME:
            self.active_until = now + seconds
            self.payg_disabled = False  # any SET re-locks (docs/tokens.md "Re-lock")
        elif kind is TokenKind.DISABLE_PAYG:
            self.payg_disabled = True

    def _invalid(self, now: int) -> Prediction:
        self.invalid_streak += 1
        if self.lockout.max_streak is not None:
            self.invalid_streak = min(self.invalid_streak, self.lockout.max_streak)
        lock = self.lockout.seconds(self.invalid_streak)
        if lock:
            self.locked_until = now + lock
        return self._predict("invalid", None, None, None, now)

    def _predict(self, outcome: Outcome, kind, value, count, now: int) -> Prediction:
        lock = max(0, self.locked_until - now)
        return Prediction(outcome, kind, value, count, self.active_until, self.payg_disabled, lock)

    # -- hashing ------------------------------------------------------------------------------
    def _lookup(self, code: str) -> tuple[int, list[int], bool] | None:
        """(value, counts 1..upper where the code sits, whether 996-999 are special), or None if
        it can't be a token."""
        parsed = self._parse(code)
        if parsed is None:
            return None
        token, extended = parsed
        offset = 1_000_000 if extended else 1000
        value = (token % offset - self.starting_code % offset) % offset
        special = self.extended_special or not extended
        if special and value in RESERVED_VALUES:
            return None
        jump = MAX_TOKEN_JUMP_COUNTER_SYNC if special and value == COUNTER_SYNC_VALUE else MAX_TOKEN_JUMP
        top = self.last_count + jump
        if self.max_count is not None:
            top = min(top, self.max_count)  # a count the device cannot store is never found
        chain = self._chain(extended, token % offset, top)
        return value, [c for c in range(1, top + 1) if chain[c] == token], special

    def _parse(self, code: str) -> tuple[int, bool] | None:
        if not isinstance(code, str) or not code.isascii() or not code.isdigit():
            return None
        lengths = {15: False, 20: True} if self.restricted_digits else {9: False, 12: True}
        extended = lengths.get(len(code))
        if extended is None or (extended and not self.extended) or (self.extended_only and not extended):
            return None
        if self.restricted_digits:
            if set(code) - set("1234"):
                return None
            shared = OpenPAYGOTokenSharedExtended if extended else OpenPAYGOTokenShared
            return shared.convert_from_4_digit_token(int(code)), extended
        return int(code), extended

    def _chain(self, extended: bool, base: int, upto: int) -> list[int]:
        """codes[c] = the code at count c for this base: put_base(H^c(put_base(SC, base)), base)
        (docs/tokens.md "How a token is made"; the hash runs on the raw output, the base is put back for
        comparison). The raw chain is the process's (bench/openpaygo/chains.py), which the token
        generator crafted the token from."""
        shared = OpenPAYGOTokenSharedExtended if extended else OpenPAYGOTokenShared
        codes = self._chains.setdefault((extended, base), [])
        if len(codes) <= upto:
            raw = raw_chain(self._key_bytes.value, self.starting_code, extended, base, upto)
            codes.extend(shared.put_base_in_token(r, base) for r in raw[len(codes) : upto + 1])
        return codes


def _timed_kind(count: int) -> TokenKind:
    """Parity alone (an extended 996-999 read as a time value): odd SET_TIME, even ADD_TIME."""
    return TokenKind.SET_TIME if count % 2 else TokenKind.ADD_TIME


class _KeyBytes:
    """Holds the raw key so it shows as *** in any repr or vars() dump."""

    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "***"


def model_for(generator, key: str | Secret, **kwargs) -> DeviceModel:
    """A fresh device model provisioned like `generator`'s device at its current count."""
    return DeviceModel(
        key,
        generator.starting_code,
        generator.count,
        time_divider=generator.time_divider,
        restricted_digits=generator.restricted_digits,
        extended=generator.extended,
        **kwargs,
    )


__all__ = [
    "DeviceModel",
    "LockoutSchedule",
    "ModelState",
    "Prediction",
    "REFERENCE_LOCKOUT",
    "DOCS_LOCKOUT",
    "NO_LOCKOUT",
    "model_for",
]
