"""The firmware's token entry (`TOKEN`, and tokens from a Metrics reply): decode, apply, count
invalid entries toward the brute-force lockout, and the defects that live there."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from bench.openpaygo.tokens import TokenKind
from bench.sim.faults import Fault
from bench.sim.firmware_config import FirmwareConfig
from bench.sim.nvstate import NvState
from bench.sim.request_line import CommandError, Reply
from bench.sim.token_decoder import MAX_TOKEN_JUMP, TokenState, apply_time, decode
from bench.sim.uptime_credit import UptimeCredit

# slow_decode: a software SipHash on a slow MCU, this many seconds per hash step. The firmware
# keeps the chain values around its last count (+-16) and steps from there; a token outside
# them, or one it has to search the whole window for (invalid), is walked from count 0: > 5 s
# from count ~580 on (the top of the full procedure's G8 series, 30 counts apart).
SLOW_DECODE_S_PER_STEP = 0.0086
SLOW_DECODE_CACHED = 16


class TokenEntry:
    """A part of Firmware (bench/sim/firmware.py): the TOKEN command and the token path."""

    if TYPE_CHECKING:  # provided by Firmware, which this part makes up with the others

        def _require_provisioned(self) -> None: ...
        def _offers(self, capability: str) -> bool: ...
        def _now(self) -> int: ...
        def _persist(self) -> None: ...
        def _save_later(self) -> None: ...

    config: FirmwareConfig
    faults: frozenset[Fault]
    state: NvState
    credit: UptimeCredit | None
    _decode_steps: int  # hash steps the last token's decode walked (slow_decode)

    def _token(self, args: list[str]) -> Reply:
        self._require_provisioned()
        if len(args) != 1 or not args[0].isdigit() or not args[0].isascii():
            raise CommandError(400, "TOKEN takes one argument of digits")
        code = args[0]
        lengths = self._token_lengths()
        if len(code) not in lengths:
            raise CommandError(400, f"a token has {' or '.join(map(str, sorted(lengths)))} digits")
        self._decode_steps = 0
        body = self.enter_token(code)
        slow = self._decode_steps and Fault.SLOW_DECODE in self.faults  # asked only where it would wait
        delay = SLOW_DECODE_S_PER_STEP * self._decode_steps if slow else 0.0
        return Reply(body, delay_s=delay)

    def _token_lengths(self) -> set[int]:
        lengths = {15, 20} if self.state.restricted else {9, 12}
        return lengths if self._offers("extended_tokens") else {min(lengths)}

    def enter_token(self, code: str) -> str:
        """Decode and apply one token; the reply body (without ERR handling)."""
        st = self.state
        now = self._now()
        if st.locked_until > now:
            return f"OK result=locked seconds={st.locked_until - now}"
        if st.restricted and set(code) - set("1234"):
            return self._invalid_entry(now)  # outside the restricted digit set: an invalid token
        if self.config.extended_only and len(code) in (9, 15):
            return self._invalid_entry(now)  # a build that takes only extended tokens
        if code.startswith("0") and Fault.LEADING_ZERO_DROPPED in self.faults:
            # the keypad buffer is read as a number and checked to have 9 (12) digits
            return self._invalid_entry(now)
        result, tstate = decode(
            code,
            bytes.fromhex(st.key_hex),
            st.starting_code,
            TokenState(st.last_count, st.used_mask),
            restricted_digits=st.restricted,
            extended=len(code) in (12, 20),
            faults=self.faults,
            sync_keeps_higher_count=self.config.sync_keeps_higher_count,
            extended_as_time=self.config.extended_as_time,
        )
        self._decode_steps = _slow_decode_steps(result.count, st.last_count)
        if result.outcome == "accepted":
            assert result.kind is not None  # an accepted token has a kind
            ignored = st.time_divider != 1 and Fault.TIME_DIVIDER_IGNORED in self.faults
            divider = 1 if ignored else st.time_divider
            active_until, disabled = apply_time(
                result.kind, result.value, now, st.active_until, st.payg_disabled, divider, faults=self.faults
            )
            # each fault asked only where it would change the flag (bench/sim/hook_trace.py)
            if (
                result.kind is TokenKind.SET_TIME
                and disabled != st.payg_disabled
                and Fault.SET_DOES_NOT_RELOCK in self.faults
            ):
                disabled = st.payg_disabled  # the expiry is set, the PAYG-disabled flag left alone
            if result.kind is TokenKind.ADD_TIME and disabled and Fault.ADD_RELOCKS in self.faults:
                disabled = False  # legacy: any ADD re-enables PAYG (docs/tokens.md "Re-lock", G11B)
            self.state = replace(
                st,
                last_count=tstate.last_count,
                used_mask=tstate.used_mask,
                active_until=int(active_until),
                payg_disabled=disabled,
                invalid_streak=0,
                locked_until=0,
            )
            if self.credit is not None:
                self.credit.set_end(self.state.active_until)
            self._persist()
            value = "-" if result.value is None else result.value
            return f"OK result=accepted type={result.kind.name} value={value} count={result.count}"
        if result.outcome == "invalid":
            return self._invalid_entry(now)
        return "OK result=already_used"

    def _invalid_entry(self, now: int) -> str:
        """Count an invalid token toward the brute-force lockout (FirmwareConfig.lockout_s)."""
        st = self.state
        streak = min(st.invalid_streak + 1, self.config.invalid_streak_cap)
        locked_until = st.locked_until
        lock_s = self.config.lockout_s(streak)
        if lock_s and Fault.NO_LOCKOUT not in self.faults:
            locked_until = now + lock_s
        self.state = replace(st, invalid_streak=streak, locked_until=locked_until)
        if Fault.STREAK_SAVED_LATE in self.faults:
            self._save_later()  # answered now, saved by the main loop later
        elif Fault.LOCK_END_SAVED_LATE in self.faults and locked_until != st.locked_until:
            self._save_later()  # the lock is started in the reply's epilogue, saved with it later
        else:
            self._persist()
        return "OK result=invalid"


def _slow_decode_steps(count: int | None, last: int) -> int:
    """Hash steps the slow_decode firmware walks for a token matched at `count` (None: no match,
    the whole window searched from count 0, docs/tokens.md "Windows")."""
    if count is None:
        return last + MAX_TOKEN_JUMP + 1
    if abs(count - last) <= SLOW_DECODE_CACHED:
        return abs(count - last) + 1  # from the cached chain values around the last count
    return count + 1
