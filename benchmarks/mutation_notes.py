"""One-line arguments for the mutants benchmarks/mutation.py leaves alive, keyed by (file, the
original source line stripped, mutation): "equivalent" (no behaviour of the device changes: why)
or "real" (a behaviour changes: which device check should catch it)."""

from __future__ import annotations

E, R = "equivalent", "real"
FAULT_ONLY = "only changes a fault-flag branch: without the fault the condition (or value) is never used"
SLOW = "SLOW_DECODE_CACHED only shapes the reply delay of the slow_decode fault; without it the delay is 0"

NOTES: dict[tuple[str, str, str], tuple[str, str]] = {
    ("token_decoder.py", "MAX_UNUSED_OLDER_TOKENS = 16", "`16` -> `15`"): (
        E,
        "window count > last-15 vs > last-16: at an even last_count, last-15 is odd (a SET, never valid below last_count); at an odd one the mask is full (only SET/DISABLE/SYNC leave it odd)",
    ),
    ("token_decoder.py", "UNBOUNDED_JUMP = 10_000", "`10000` -> `10001`"): (
        E,
        "UNBOUNDED_JUMP is read only under the unbounded_jump fault",
    ),
    ("token_decoder.py", "UNBOUNDED_JUMP = 10_000", "`10000` -> `9999`"): (
        E,
        "UNBOUNDED_JUMP is read only under the unbounded_jump fault",
    ),
    ("token_decoder.py", "UNBOUNDED_JUMP = 10_000", "`10000` -> `0`"): (
        E,
        "UNBOUNDED_JUMP is read only under the unbounded_jump fault",
    ),
    ("token_decoder.py", "if not 0 <= self.last_count <= 0xFFFF:", "`0` -> `1`"): (
        R,
        "a device provisioned at count 0 (PROV allows it) would fail every token; no device test provisions at count 0 (a token_count=0 profile in test_valid_token_accepted would kill it)",
    ),
    ("token_decoder.py", "if not 0 <= self.last_count <= 0xFFFF:", "`0` -> `-1`"): (
        E,
        "widens a guard: no code path builds a negative last_count",
    ),
    ("token_decoder.py", "if not 0 <= self.last_count <= 0xFFFF:", "`65535` -> `65536`"): (
        R,
        "widens the u16 guard: only a count past 65535 (provisioned above 65471, then a +64 jump) differs; no device test reaches the top of the count range",
    ),
    ("token_decoder.py", "if not 0 <= self.last_count <= 0xFFFF:", "`65535` -> `65534`"): (
        R,
        "narrows the u16 guard to 65534: a device at count 65535 would fail; no device test reaches the top of the count range",
    ),
    ("token_decoder.py", "if not 0 <= self.last_count <= 0xFFFF:", "`<=` -> `<`"): (
        R,
        "either `<=`: last_count 0 (provisioned at count 0) or 65535 (the u16 top) would fail; no device test provisions there",
    ),
    ("token_decoder.py", "if not 0 <= self.used_mask <= 0xFFFF:", "`0` -> `-1`"): (
        E,
        "widens a guard: the used mask is never negative (built from 0, ORed bits and & 0xFFFF)",
    ),
    ("token_decoder.py", "if not 0 <= self.used_mask <= 0xFFFF:", "`65535` -> `65536`"): (
        E,
        "widens a guard: every stored mask is & 0xFFFF or 0xFFFF itself, never 65536",
    ),
    ("token_decoder.py", "first = 0 if Fault.ACCEPTS_STARTING_CODE in faults else 1", "`in` -> `not in`"): (
        E,
        'the starting code then matches at count 0 and is answered already_used instead of invalid: both are the refusal docs/tokens.md "The starting code" allows (test_invalid_tokens_refused accepts either)',
    ),
    ("token_decoder.py", "first = 0 if Fault.ACCEPTS_STARTING_CODE in faults else 1", "`0` -> `1`"): (E, FAULT_ONLY),
    ("token_decoder.py", "first = 0 if Fault.ACCEPTS_STARTING_CODE in faults else 1", "`0` -> `-1`"): (E, FAULT_ONLY),
    ("token_decoder.py", "first = 0 if Fault.ACCEPTS_STARTING_CODE in faults else 1", "`1` -> `2`"): (
        R,
        "count 1 is never matched: the token at the provisioned count 1 is answered invalid, not already_used, and counts toward lockout; no device test re-enters the count-1 token",
    ),
    ("token_decoder.py", "first = 0 if Fault.ACCEPTS_STARTING_CODE in faults else 1", "`1` -> `0`"): (
        E,
        "same as `in` -> `not in` here: the starting code is answered already_used instead of invalid, an allowed refusal",
    ),
    (
        "token_decoder.py",
        "if count >= first and core.put_base_in_token(current, token_base) == number:",
        "`>=` -> `>`",
    ): (R, "as `1` -> `2` on line 125: the count-1 token is never matched (invalid instead of already_used)"),
    (
        "token_decoder.py",
        "if not isinstance(code, str) or not code.isascii() or not code.isdigit():",
        "`or` -> `and`",
    ): (
        E,
        "every caller passes ASCII digit strings (TOKEN refuses others at token_entry.py:44; Metrics tokens are digit-checked in bench/sim/metrics/commands.py)",
    ),
    ("token_decoder.py", "if len(code) not in lengths or (lengths[len(code)] and not extended):", "`or` -> `and`"): (
        R,
        "a wrong-length code crashes the decoder (KeyError) instead of being invalid; TOKEN refuses wrong lengths first, so only a Metrics reply carrying a wrong-length token reaches it (test_metrics_tokens_applied could include one)",
    ),
    ("token_decoder.py", "if Fault.PARITY_BEFORE_SPECIAL in faults and count % 2 == 0:", "`2` -> `3`"): (E, FAULT_ONLY),
    ("token_decoder.py", "if Fault.PARITY_BEFORE_SPECIAL in faults and count % 2 == 0:", "`2` -> `1`"): (E, FAULT_ONLY),
    ("token_decoder.py", "if Fault.PARITY_BEFORE_SPECIAL in faults and count % 2 == 0:", "`2` -> `0`"): (E, FAULT_ONLY),
    ("token_decoder.py", "if Fault.PARITY_BEFORE_SPECIAL in faults and count % 2 == 0:", "`%` -> `//`"): (
        E,
        FAULT_ONLY,
    ),
    ("token_decoder.py", "if Fault.PARITY_BEFORE_SPECIAL in faults and count % 2 == 0:", "`0` -> `1`"): (E, FAULT_ONLY),
    ("token_decoder.py", "if Fault.PARITY_BEFORE_SPECIAL in faults and count % 2 == 0:", "`0` -> `-1`"): (
        E,
        FAULT_ONLY,
    ),
    ("token_decoder.py", "if Fault.PARITY_BEFORE_SPECIAL in faults and count % 2 == 0:", "`==` -> `!=`"): (
        E,
        FAULT_ONLY,
    ),
    ("token_decoder.py", "if kind is TokenKind.SET_TIME and Fault.SET_AS_ADD in faults:", "`is` -> `is not`"): (
        E,
        FAULT_ONLY,
    ),
    ("token_decoder.py", "if count % 2 and count <= last:", "`2` -> `1`"): (
        R,
        "odd counts below last_count are no longer used by rule, only by their mask bit: a COUNTER_SYNC at a never-entered odd count just below last_count would be accepted; test_counter_sync_window_edges could enter one",
    ),
    ("token_decoder.py", "if count % 2 and count <= last:", "`<=` -> `<`"): (
        E,
        "count == last_count is caught by the next line",
    ),
    ("token_decoder.py", "if count % 2 and count <= last:", "`<=` -> `>`"): (
        R,
        "as `2` -> `1` here: odd counts below last_count rely on the mask (a sync at a never-entered odd count below last_count passes); counts above last_count never reach this function",
    ),
    (
        "token_decoder.py",
        "return 0 <= relative < MAX_UNUSED_OLDER_TOKENS and bool(state.used_mask & (1 << relative))",
        "`0` -> `-1`",
    ): (
        E,
        "relative -1 is count == last_count, already answered on the line above; counts above last_count never reach here",
    ),
    (
        "token_decoder.py",
        "return 0 <= relative < MAX_UNUSED_OLDER_TOKENS and bool(state.used_mask & (1 << relative))",
        "`<` -> `<=`",
    ): (E, "bit 16 of a u16 mask is always 0"),
    ("token_decoder.py", "if count != 0 or Fault.ACCEPTS_STARTING_CODE in faults:", "`0` -> `1`"): (
        E,
        "count 0 never reaches here (the search starts at count 1) and count 1 is odd, a SET, refused below last_count by the next line",
    ),
    ("token_decoder.py", "if count != 0 or Fault.ACCEPTS_STARTING_CODE in faults:", "`0` -> `-1`"): (
        E,
        "count 0 never reaches here: the search starts at count 1 without the accepts_starting_code fault",
    ),
    ("token_decoder.py", "if count != 0 or Fault.ACCEPTS_STARTING_CODE in faults:", "`in` -> `not in`"): (
        E,
        "count 0 never reaches here: the search starts at count 1 without the accepts_starting_code fault",
    ),
    (
        "token_decoder.py",
        "if count > last - MAX_UNUSED_OLDER_TOKENS and count % 2 == 0 and kind is TokenKind.ADD_TIME:",
        "`2` -> `1`",
    ): (
        E,
        "an odd count's kind is never ADD_TIME (`_token_kind` decides by parity), so `kind is ADD_TIME` already excludes it",
    ),
    ("token_decoder.py", "lowers = value == COUNTER_SYNC_VALUE and not sync_keeps_higher_count", "`and` -> `or`"): (
        E,
        "in the default build (sync_keeps_higher_count off) `lowers` is already true for syncs, and SET/DISABLE are only ever accepted above last_count, where it does not matter",
    ),
    ("token_decoder.py", "if lowers and count < last and Fault.SYNC_KEEPS_STALE_MASK in faults:", "`<` -> `<=`"): (
        E,
        FAULT_ONLY,
    ),
    ("token_decoder.py", "if lowers and count < last and Fault.SYNC_KEEPS_STALE_MASK in faults:", "`<` -> `>=`"): (
        E,
        FAULT_ONLY,
    ),
    ("token_decoder.py", "return TokenState(count if count > last or lowers else last, ALL_USED)", "`>` -> `>=`"): (
        E,
        "no token is ever accepted at count == last_count (last_count itself is used), so `>` and `>=` agree on every accepted count",
    ),
    ("token_decoder.py", "if count > last:", "`>` -> `>=`"): (
        E,
        "no token is ever accepted at count == last_count (last_count itself is used), so `>` and `>=` agree on every accepted count",
    ),
    (
        "token_decoder.py",
        "mask = ((mask << shift) | (1 << (shift - 1))) & ALL_USED if shift <= MAX_UNUSED_OLDER_TOKENS else 0",
        "`<=` -> `<`",
    ): (
        R,
        "after a jump of exactly 16 the old last_count's bit (15) is lost: a COUNTER_SYNC crafted at that old count would then be accepted; test_counter_sync_window_edges could enter one",
    ),
    (
        "token_decoder.py",
        "mask = ((mask << shift) | (1 << (shift - 1))) & ALL_USED if shift <= MAX_UNUSED_OLDER_TOKENS else 0",
        "`0` -> `1`",
    ): (
        E,
        "after a jump past 16 the mask is 1: bit 0 is count last_count-1, odd after an ADD (even count), so used by rule anyway",
    ),
    ("token_decoder.py", "if count < last:", "`<` -> `<=`"): (
        E,
        "no token is ever accepted at count == last_count, so `<` and `<=` agree on every accepted count",
    ),
    ("token_decoder.py", "if Fault.ADD_COUNTS_EXPIRED_DAYS in faults and active_until != 0:", "`0` -> `1`"): (
        E,
        FAULT_ONLY,
    ),
    ("token_decoder.py", "if Fault.ADD_COUNTS_EXPIRED_DAYS in faults and active_until != 0:", "`0` -> `-1`"): (
        E,
        FAULT_ONLY,
    ),
    ("token_decoder.py", "if Fault.ADD_COUNTS_EXPIRED_DAYS in faults and active_until != 0:", "`!=` -> `==`"): (
        E,
        FAULT_ONLY,
    ),
    ("token_decoder.py", "return now + (value or 0) * 86400 // time_divider, False", "`0` -> `-1`"): (
        R,
        "a SET_TIME of 0 sets the end a day before now instead of now: expired either way, and the status check after it sees only that the device is locked",
    ),
    ("token_entry.py", "SLOW_DECODE_CACHED = 16", "`16` -> `17`"): (E, SLOW),
    ("token_entry.py", "SLOW_DECODE_CACHED = 16", "`16` -> `15`"): (E, SLOW),
    ("token_entry.py", "SLOW_DECODE_CACHED = 16", "`16` -> `0`"): (E, SLOW),
    ("token_entry.py", "if len(args) != 1 or not args[0].isdigit() or not args[0].isascii():", "`0` -> `-1`"): (
        E,
        "args has exactly one element here (len(args) != 1 is refused first), so args[-1] is args[0]",
    ),
    ("token_entry.py", "if len(args) != 1 or not args[0].isdigit() or not args[0].isascii():", "`or` -> `and`"): (
        R,
        "a malformed TOKEN (no argument, or non-digits of a token's length) is no longer refused with ERR 400: it crashes or is answered invalid and counted for lockout; no device test sends a malformed TOKEN command",
    ),
    ("token_entry.py", "code = args[0]", "`0` -> `-1`"): (
        E,
        "args has exactly one element here, so args[-1] is args[0]",
    ),
    ("token_entry.py", "self._decode_steps = 0", "`0` -> `1`"): (
        E,
        "_decode_steps is read only for the slow_decode fault's reply delay",
    ),
    ("token_entry.py", "self._decode_steps = 0", "`0` -> `-1`"): (
        E,
        "_decode_steps is read only for the slow_decode fault's reply delay",
    ),
    (
        "token_entry.py",
        "delay = SLOW_DECODE_S_PER_STEP * self._decode_steps if Fault.SLOW_DECODE in self.faults else 0.0",
        "`*` -> `//`",
    ): (E, "the delay expression is evaluated only under the slow_decode fault (else 0.0)"),
    ("token_entry.py", "if st.locked_until > now:", "`>` -> `>=`"): (
        R,
        "a token entered in the very second the lock ends is still answered locked: the lockout tests run the lock out by setting the clock past its end, never to it (a one-second edge a bench can hardly require)",
    ),
    ("token_entry.py", "if self.config.extended_only and len(code) in (9, 15):", "`9` -> `10`"): (
        E,
        "the extended_only build option is off in the default build, so the length test after it is never evaluated",
    ),
    ("token_entry.py", "if self.config.extended_only and len(code) in (9, 15):", "`9` -> `8`"): (
        E,
        "the extended_only build option is off in the default build, so the length test after it is never evaluated",
    ),
    ("token_entry.py", "if self.config.extended_only and len(code) in (9, 15):", "`9` -> `0`"): (
        E,
        "the extended_only build option is off in the default build, so the length test after it is never evaluated",
    ),
    ("token_entry.py", "if self.config.extended_only and len(code) in (9, 15):", "`15` -> `16`"): (
        E,
        "the extended_only build option is off in the default build, so the length test after it is never evaluated",
    ),
    ("token_entry.py", "if self.config.extended_only and len(code) in (9, 15):", "`15` -> `14`"): (
        E,
        "the extended_only build option is off in the default build, so the length test after it is never evaluated",
    ),
    ("token_entry.py", "if self.config.extended_only and len(code) in (9, 15):", "`15` -> `0`"): (
        E,
        "the extended_only build option is off in the default build, so the length test after it is never evaluated",
    ),
    ("token_entry.py", "if self.config.extended_only and len(code) in (9, 15):", "`in` -> `not in`"): (
        E,
        "the extended_only build option is off in the default build, so the length test after it is never evaluated",
    ),
    ("token_entry.py", "divider = 1 if Fault.TIME_DIVIDER_IGNORED in self.faults else st.time_divider", "`1` -> `2`"): (
        E,
        FAULT_ONLY,
    ),
    ("token_entry.py", "divider = 1 if Fault.TIME_DIVIDER_IGNORED in self.faults else st.time_divider", "`1` -> `0`"): (
        E,
        FAULT_ONLY,
    ),
    (
        "token_entry.py",
        "if Fault.SET_DOES_NOT_RELOCK in self.faults and result.kind is TokenKind.SET_TIME:",
        "`is` -> `is not`",
    ): (E, FAULT_ONLY),
    (
        "token_entry.py",
        "if Fault.ADD_RELOCKS in self.faults and result.kind is TokenKind.ADD_TIME:",
        "`is` -> `is not`",
    ): (E, FAULT_ONLY),
    ("token_entry.py", "locked_until=0,", "`0` -> `1`"): (
        E,
        "a lock end of 1 s after the epoch is as far in the past as 0: entry is unlocked either way",
    ),
    ("token_entry.py", "locked_until=0,", "`0` -> `-1`"): (
        E,
        "a lock end of -1 is as far in the past as 0: entry is unlocked either way",
    ),
    ("token_entry.py", "if lock_s and Fault.NO_LOCKOUT not in self.faults:", "`and` -> `or`"): (
        E,
        "with no lock due (lock_s 0) the mutant stores now as the lock end, already past like the old one (a running lock never reaches here)",
    ),
    (
        "token_entry.py",
        "elif Fault.LOCK_END_SAVED_LATE in self.faults and locked_until != st.locked_until:",
        "`!=` -> `==`",
    ): (E, FAULT_ONLY),
    ("token_entry.py", "return last + MAX_TOKEN_JUMP + 1", "`+` -> `-`"): (
        E,
        "_slow_decode_steps only feeds the slow_decode fault's reply delay; without it the delay is 0",
    ),
    ("token_entry.py", "return last + MAX_TOKEN_JUMP + 1", "`1` -> `2`"): (
        E,
        "_slow_decode_steps only feeds the slow_decode fault's reply delay; without it the delay is 0",
    ),
    ("token_entry.py", "return last + MAX_TOKEN_JUMP + 1", "`1` -> `0`"): (
        E,
        "_slow_decode_steps only feeds the slow_decode fault's reply delay; without it the delay is 0",
    ),
    ("token_entry.py", "if abs(count - last) <= SLOW_DECODE_CACHED:", "`-` -> `+`"): (
        E,
        "_slow_decode_steps only feeds the slow_decode fault's reply delay; without it the delay is 0",
    ),
    ("token_entry.py", "if abs(count - last) <= SLOW_DECODE_CACHED:", "`<=` -> `<`"): (
        E,
        "_slow_decode_steps only feeds the slow_decode fault's reply delay; without it the delay is 0",
    ),
    ("token_entry.py", "if abs(count - last) <= SLOW_DECODE_CACHED:", "`<=` -> `>`"): (
        E,
        "_slow_decode_steps only feeds the slow_decode fault's reply delay; without it the delay is 0",
    ),
    (
        "token_entry.py",
        "return abs(count - last) + 1  # from the cached chain values around the last count",
        "`-` -> `+`",
    ): (E, "_slow_decode_steps only feeds the slow_decode fault's reply delay; without it the delay is 0"),
    (
        "token_entry.py",
        "return abs(count - last) + 1  # from the cached chain values around the last count",
        "`1` -> `2`",
    ): (E, "_slow_decode_steps only feeds the slow_decode fault's reply delay; without it the delay is 0"),
    (
        "token_entry.py",
        "return abs(count - last) + 1  # from the cached chain values around the last count",
        "`1` -> `0`",
    ): (E, "_slow_decode_steps only feeds the slow_decode fault's reply delay; without it the delay is 0"),
    (
        "token_entry.py",
        "return abs(count - last) + 1  # from the cached chain values around the last count",
        "`+` -> `-`",
    ): (E, "_slow_decode_steps only feeds the slow_decode fault's reply delay; without it the delay is 0"),
    ("token_entry.py", "return count + 1", "`1` -> `2`"): (
        E,
        "_slow_decode_steps only feeds the slow_decode fault's reply delay; without it the delay is 0",
    ),
    ("token_entry.py", "return count + 1", "`1` -> `0`"): (
        E,
        "_slow_decode_steps only feeds the slow_decode fault's reply delay; without it the delay is 0",
    ),
    ("token_entry.py", "return count + 1", "`+` -> `-`"): (
        E,
        "_slow_decode_steps only feeds the slow_decode fault's reply delay; without it the delay is 0",
    ),
}

# Why the good device's suite never runs the lines listed as "not reached" (mutation.py prints it
# under that list): the score leaves them out as it leaves out the equivalent mutants.
NOT_REACHED = (
    "all are fault-only code: the C reference's mask shift (`_c_reference_shift`, reached only under "
    "u2d_accepted), `time_divider = 1` (time_divider_ignored) and the expired-days ADD "
    "(add_counts_expired_days); without the fault no device can run them, so their mutants are "
    "equivalent for the good device by the same argument as the fault-flag survivors."
)
