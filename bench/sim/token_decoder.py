"""The simulated firmware's OpenPAYGO Token decoder, written the way the reference C does it.

State is what a device keeps in NVM (docs/tokens.md "Used counts" and "What a device keeps"):
`last_count` (C `MaxCount`, u16) and `used_mask` (C `UsedCounts`, u16) where bit i stands for
count last_count-1-i. Odd counts <= last_count and last_count itself always count as used;
SET/DISABLE/SYNC set all 16 bits. Decoding walks the hash chain from count 0 to the upper
bound like `GetActivationValueFromToken`, so the work per token is what a device does.

Deliberate differences from the C reference (bugs the bench must not inherit):
- the mask is shifted correctly when last_count moves up (the C `MarkCountAsUsed` drops the
  old bit `RelativeCount` and ORs unnormalised bits: U2D passes, docs/tokens.md "What the bench
  adds");
- count 0 (the starting code) is never a candidate: such a code is invalid (docs/tokens.md "The
  starting code"; openpaygo's "Starting code accepted");
- a COUNTER_SYNC is refused if its count is used (C/Python re-accept it: openpaygo's
  "Sync re-accepted"), and a sync
  below last_count moves the count down (as the Python simulator does) with all bits set;
- 996/997 are invalid, 998/999 are classified before parity (docs/tokens.md "Values and types");
- the search stops at 65535, the largest count the u16 can hold (the C searches on in an int
  and stores the count found modulo 65536: `count_wraps_u16`).

Build options for the choices the requirements leave (docs/tokens.md "Where a device may
choose"; not faults): `sync_keeps_higher_count` keeps last_count after a sync below it, as the
reference C does; `extended_as_time` reads an extended token's 996-999 as time values by
parity, as openpaygo 0.6.3 does.

Time and lockout are the firmware's job; `apply_time` is the pure rule it calls.

Fault flags (FAULTS) switch on realistic defects; each lives where the real bug would:
`reused_token_accepted`, `accepts_starting_code`, `u2d_accepted` in the count checks
(`_is_count_valid` / `_mark_count_as_used`), `set_as_add` and `parity_before_special` in the
type decision (`_token_kind`), `unbounded_jump` and `count_wraps_u16` in the search bound,
`time_divider_ignored` in `apply_time`, `sync_keeps_stale_mask` in `_mark_count_as_used`. Names
not in FAULTS belong to other layers and are ignored here.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from openpaygo.token_shared import OpenPAYGOTokenShared
from openpaygo.token_shared_extended import OpenPAYGOTokenSharedExtended

from bench.openpaygo.tokens import TokenKind
from bench.sim.faults import NO_FAULTS, Fault
from bench.sim.token_hash import next_token

MAX_TOKEN_JUMP = 64
MAX_TOKEN_JUMP_COUNTER_SYNC = 100
MAX_UNUSED_OLDER_TOKENS = 16
UNBOUNDED_JUMP = 10_000
PAYG_DISABLE_VALUE = 998
COUNTER_SYNC_VALUE = 999
ALL_USED = 0xFFFF
MAX_COUNT = 0xFFFF  # last_count is a u16 (C `MaxCount`)

FAULTS: dict[Fault, str] = {
    Fault.REUSED_TOKEN_ACCEPTED: "decoder skips the used-count check: an already-entered token is accepted again",
    Fault.ACCEPTS_STARTING_CODE: "decoder tries count 0: the starting code is accepted as ADD_TIME 0 (openpaygo 0.6.3)",
    Fault.U2D_ACCEPTED: "decoder shifts the used mask like the C reference: an ADD older than a SET passes (U2D)",
    Fault.SET_AS_ADD: "decoder reports SET_TIME tokens as ADD_TIME, so the firmware adds instead of setting",
    Fault.PARITY_BEFORE_SPECIAL: "decoder checks parity before 998/999: a 998 at an even count is ADD_TIME 998",
    Fault.UNBOUNDED_JUMP: "decoder has no +64 upper bound: any count up to last+10000 is accepted",
    Fault.TIME_DIVIDER_IGNORED: "apply_time ignores the time divider (uses 1): 4 quarter-days become 4 days",
    Fault.SYNC_KEEPS_STALE_MASK: "a sync that lowers the count keeps the old count's used mask",
    Fault.COUNT_WRAPS_U16: "decoder searches past 65535 and stores the count found modulo 65536",
}

Outcome = Literal["accepted", "invalid", "already_used"]


@dataclass(frozen=True)
class TokenState:
    last_count: int
    used_mask: int

    def __post_init__(self) -> None:
        if not 0 <= self.last_count <= 0xFFFF:
            raise ValueError(f"last_count {self.last_count} is not a u16")
        if not 0 <= self.used_mask <= 0xFFFF:
            raise ValueError(f"used_mask {self.used_mask} is not a u16")


@dataclass(frozen=True)
class DecodeResult:
    outcome: Outcome
    kind: TokenKind | None
    value: int | None  # raw value for ADD/SET (days x divider), None for DISABLE/SYNC/invalid
    count: int | None  # the matched count (accepted or already_used)


_INVALID = DecodeResult("invalid", None, None, None)


# -- the decoder -------------------------------------------------------------------------------
def decode(
    code: str,
    key: bytes,
    starting_code: int,
    state: TokenState,
    *,
    restricted_digits: bool = False,
    extended: bool = False,
    faults: frozenset[Fault] = NO_FAULTS,
    sync_keeps_higher_count: bool = False,
    extended_as_time: bool = False,
) -> tuple[DecodeResult, TokenState]:
    """Decode one entered code; returns the result and the state to store (unchanged unless
    accepted)."""
    token = _read_token(code, restricted_digits, extended)
    if token is None:
        return _INVALID, state
    number, is_extended = token
    core = OpenPAYGOTokenSharedExtended if is_extended else OpenPAYGOTokenShared
    offset = 1_000_000 if is_extended else 1000

    starting_base = starting_code % offset
    token_base = number % offset
    value = token_base - starting_base
    if value < 0:
        value += offset
    special = not (is_extended and extended_as_time)
    if special and value in (996, 997):  # reserved (docs/tokens.md "Values and types")
        return _INVALID, state

    last = state.last_count
    jump = MAX_TOKEN_JUMP_COUNTER_SYNC if special and value == COUNTER_SYNC_VALUE else MAX_TOKEN_JUMP
    # Each fault is asked about only where its answer would change the outcome (bench/sim/hook_trace.py):
    # the starting code at count 0 only when count 0 matches, the unbounded jump only past the
    # window's top with no count accepted below it, the u16 cap only where the window passes it.
    top = _capped(last + jump, faults)
    chain = _raw_chain(core, key, starting_code, token_base)
    step = next_token(is_extended)
    older_match: tuple[int, TokenKind] | None = None
    count = 0
    while count <= top:
        if count == len(chain):  # walked no further before: one more hash, kept
            chain.append(step(chain[-1], key))
        if core.put_base_in_token(chain[count], token_base) == number and (
            count >= 1 or Fault.ACCEPTS_STARTING_CODE in faults
        ):
            kind = _token_kind(value if special else None, count, faults)
            if _is_count_valid(count, kind, state, faults):
                new_state = _mark_count_as_used(
                    count, value if special else None, state, faults, sync_keeps_higher_count
                )
                return _result("accepted", kind, value, count, faults), new_state
            if older_match is None:
                older_match = (count, kind)
        if count == top and jump < UNBOUNDED_JUMP and Fault.UNBOUNDED_JUMP in faults:
            jump = UNBOUNDED_JUMP  # no +64 bound: the search goes on
            top = _capped(last + jump, faults)
        count += 1
    if older_match is not None:
        count, kind = older_match
        return _result("already_used", kind, value, count, faults), state
    return _INVALID, state


# The firmware walks the hash chain from the starting code at every entry, up to the match; so
# does this decoder, but the raw values it walked (a pure function of the key, starting code, form
# and base) are kept for the next entry: near the top of the count each walk is 65,000 SipHash
# hashes. Kept: the most recently used chains; the older ones are dropped at each entry while all
# hold more than CHAIN_VALUES_KEPT values (a few MB).
CHAIN_VALUES_KEPT = 400_000
_chains: OrderedDict[tuple[type, bytes, int, int], list[int]] = OrderedDict()


def _capped(top: int, faults: frozenset[Fault]) -> int:
    """The search's last count: never past the u16 store's 65535 (count_wraps_u16: searched on,
    stored modulo 65536)."""
    if top > MAX_COUNT and Fault.COUNT_WRAPS_U16 not in faults:
        return MAX_COUNT  # a count the u16 cannot hold is never a candidate
    return top


def _raw_chain(core, key: bytes, starting_code: int, base: int) -> list[int]:
    """The chain walked so far for this base (at least its count 0), which decode() extends."""
    slot = (core, key, starting_code, base)
    chain = _chains.pop(slot, None) or [core.put_base_in_token(starting_code, base)]
    _chains[slot] = chain  # most recently used last
    while len(_chains) > 1 and sum(len(c) for c in _chains.values()) > CHAIN_VALUES_KEPT:
        _chains.popitem(last=False)
    return chain


def _read_token(code: str, restricted_digits: bool, extended: bool) -> tuple[int, bool] | None:
    """Keypad digits -> (token number, is extended). Length decides the format (docs/tokens.md
    "Extended tokens")."""
    if not isinstance(code, str) or not code.isascii() or not code.isdigit():
        return None
    if restricted_digits:
        lengths = {15: False, 20: True}
    else:
        lengths = {9: False, 12: True}
    if len(code) not in lengths or (lengths[len(code)] and not extended):
        return None
    is_extended = lengths[len(code)]
    if not restricted_digits:
        return int(code), is_extended
    # ConvertFromFourDigitToken: each digit 1-4 is two bits, most significant first.
    number = 0
    for digit in code:
        if digit not in "1234":
            return None
        number = (number << 2) | (ord(digit) - ord("1"))
    return number, is_extended


def _token_kind(value: int | None, count: int, faults: frozenset[Fault]) -> TokenKind:
    """The token type, as the device logic decides it (998/999 before parity: docs/tokens.md
    "Values and types"; value None: a time value whatever it is)."""
    if count % 2 == 0 and value in (PAYG_DISABLE_VALUE, COUNTER_SYNC_VALUE) and Fault.PARITY_BEFORE_SPECIAL in faults:
        return TokenKind.ADD_TIME  # an even count is ADD_TIME before the special values are looked at
    if value == PAYG_DISABLE_VALUE:
        return TokenKind.DISABLE_PAYG
    if value == COUNTER_SYNC_VALUE:
        return TokenKind.COUNTER_SYNC
    return TokenKind.SET_TIME if count % 2 else TokenKind.ADD_TIME


def _result(outcome: Outcome, kind: TokenKind, value: int, count: int, faults: frozenset[Fault]) -> DecodeResult:
    if kind is TokenKind.SET_TIME and Fault.SET_AS_ADD in faults:
        kind = TokenKind.ADD_TIME
    shown = value if kind in (TokenKind.ADD_TIME, TokenKind.SET_TIME) else None
    return DecodeResult(outcome, kind, shown, count)


def _is_in_used_counts(count: int, state: TokenState) -> bool:
    """C `IsInUsedCounts`: odd counts <= max and max itself are used; else the mask bit."""
    last = state.last_count
    if count % 2 and count <= last:
        return True
    if count == last:
        return True
    relative = last - count - 1
    return 0 <= relative < MAX_UNUSED_OLDER_TOKENS and bool(state.used_mask & (1 << relative))


def _is_count_valid(count: int, kind: TokenKind, state: TokenState, faults: frozenset[Fault]) -> bool:
    """C `IsCountValid`, plus the used check for syncs (openpaygo's "Sync re-accepted" not inherited)."""
    last = state.last_count

    def used() -> bool:  # reused_token_accepted skips this check: asked only where it says used
        return _is_in_used_counts(count, state) and Fault.REUSED_TOKEN_ACCEPTED not in faults

    if kind is TokenKind.COUNTER_SYNC:
        if count <= last - MAX_TOKEN_JUMP:
            return False
        return count > last or not used()
    if count > last:
        return True
    if count != 0 or Fault.ACCEPTS_STARTING_CODE in faults:
        if count > last - MAX_UNUSED_OLDER_TOKENS and count % 2 == 0 and kind is TokenKind.ADD_TIME:
            return not used()
    return False


def _mark_count_as_used(
    count: int, value: int | None, state: TokenState, faults: frozenset[Fault], sync_keeps_higher_count: bool = False
) -> TokenState:
    """C `MarkCountAsUsed`, with the mask normalised when last_count moves (value None: a time
    value, whatever it is)."""
    last, mask = state.last_count, state.used_mask
    if count > MAX_COUNT:  # count_wraps_u16: the u16 store keeps the low 16 bits
        special = count % 2 or value in (COUNTER_SYNC_VALUE, PAYG_DISABLE_VALUE)
        return TokenState(count & MAX_COUNT, ALL_USED if special else 0)
    if count % 2 or value in (COUNTER_SYNC_VALUE, PAYG_DISABLE_VALUE):
        # SET/DISABLE/SYNC: every older count is used. Only a sync may move the count down.
        lowers = value == COUNTER_SYNC_VALUE and not sync_keeps_higher_count
        if lowers and count < last and Fault.SYNC_KEEPS_STALE_MASK in faults:
            return TokenState(count, mask)
        return TokenState(count if count > last or lowers else last, ALL_USED)
    if count > last:
        shift = count - last
        # The old last_count becomes bit shift-1; older bits move up by shift.
        shifted = ((mask << shift) | (1 << (shift - 1))) & ALL_USED if shift <= MAX_UNUSED_OLDER_TOKENS else 0
        reference = _c_reference_shift(shift, mask)
        if reference != shifted and Fault.U2D_ACCEPTED in faults:  # asked only where the two masks differ
            return TokenState(count, reference)
        return TokenState(count, shifted)
    if count < last:
        mask |= 1 << (last - count - 1)
    return TokenState(last, mask & ALL_USED)


def _c_reference_shift(relative: int, mask: int) -> int:
    """The reference C (OpenPAYGO-HW `opaygo_decoder.c`) mask update, bug for bug (docs/tokens.md "Used counts")."""

    def set_bit(variable: int, position: int, bit_value: int) -> int:
        return ((variable & ~(1 << position)) | (bit_value << position)) & ALL_USED  # u16 store

    new = 0
    if relative > MAX_UNUSED_OLDER_TOKENS:
        relative = MAX_UNUSED_OLDER_TOKENS
    else:
        new = set_bit(new, relative - 1, 1)
    for i in range(relative + 1, MAX_UNUSED_OLDER_TOKENS - relative):
        new = set_bit(new, i, mask & (1 << (i - relative)))  # CHECK_BIT is not normalised to 0/1
    return new


# -- time ------------------------------------------------------------------------------------
def apply_time(
    kind: TokenKind,
    value: int | None,
    now: int,
    active_until: int,
    payg_disabled: bool,
    time_divider: int,
    *,
    faults: frozenset[Fault] = NO_FAULTS,
) -> tuple[int, bool]:
    """The device logic's time update for an accepted token (docs/tokens.md "Credit" and "Re-lock"):
    ADD extends (from now if expired), SET sets now + days and re-enables PAYG, DISABLE makes
    PAYG unlimited, SYNC changes nothing. Whole RTC seconds, as the C `AddTime`/`SetTime`.

    `add_counts_expired_days`: ADD extends the stored end even when it has passed; only a device
    that never had credit (end 0) counts from now, so the days spent expired are owed."""
    if time_divider != 1 and kind in (TokenKind.ADD_TIME, TokenKind.SET_TIME) and Fault.TIME_DIVIDER_IGNORED in faults:
        time_divider = 1
    if kind is TokenKind.ADD_TIME:
        seconds = (value or 0) * 86400 // time_divider
        if 0 != active_until < now and Fault.ADD_COUNTS_EXPIRED_DAYS in faults:  # differs only once expired
            return active_until + seconds, payg_disabled
        return max(active_until, now) + seconds, payg_disabled
    if kind is TokenKind.SET_TIME:
        return now + (value or 0) * 86400 // time_divider, False
    if kind is TokenKind.DISABLE_PAYG:
        return active_until, True
    return active_until, payg_disabled
