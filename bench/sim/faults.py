"""The fault catalogue: realistic firmware and board defects the virtual rig can switch on, each
with the layer it lives in and what it does. The behaviour itself sits in the code it changes,
which tests for a fault by member (`Fault.NO_LOCKOUT in config.faults`): a misspelt fault is an
AttributeError where it is written, not a condition that is never true (docs/simulator.md "Faults").

Which device tests must catch a defect is said once, by the `catches` marker on each test
(bench/detection/catalogue.py reads them): exactly those must fail when it is on, and every other
test must still pass; tests/selftest/test_fault_detection.py proves it for every entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from bench.sim import hook_trace


class Fault(StrEnum):
    """One defect of the catalogue. Its value is its name in rig files, CLI options and records
    (`Fault("no_lockout") is Fault.NO_LOCKOUT`, and it compares equal to that string)."""

    layer: str  # firmware | decoder | board
    description: str

    def __new__(cls, name: str, layer: str, description: str) -> Fault:
        member = str.__new__(cls, name)
        member._value_ = name
        member.layer = layer
        member.description = description
        return member

    REUSED_TOKEN_ACCEPTED = (
        "reused_token_accepted",
        "decoder",
        "the used-count check is skipped: a token already entered is accepted again",
    )
    ACCEPTS_STARTING_CODE = (
        "accepts_starting_code",
        "decoder",
        "the starting code itself decodes as an ADD 0 token at count 0 (openpaygo 0.6.3 bug)",
    )
    COUNT_NOT_PERSISTED = (
        "count_not_persisted",
        "firmware",
        "the token count and used-count mask are kept in RAM only: after a power cycle the device has "
        "forgotten which tokens it accepted",
    )
    PROVISIONING_NOT_PERSISTED = (
        "provisioning_not_persisted",
        "firmware",
        "factory data (serial, key, starting code) is never committed to NVM: the device comes back "
        "unprovisioned after a power cycle",
    )
    SERIAL_TRUNCATED = (
        "serial_truncated",
        "firmware",
        "the serial number is stored in an 8-byte buffer: longer serials are cut (its Metrics "
        "requests then name a device the server does not know)",
    )
    KEY_ECHOED = (
        "key_echoed",
        "firmware",
        "a debug leftover echoes the secret key in the provisioning reply",
    )
    KEY_ECHOED_BASE64 = (
        "key_echoed_base64",
        "firmware",
        "a debug leftover prints the secret key in base64 in the provisioning reply (dbg=...): a leak a "
        "scrub that looks for the hex key alone misses",
    )
    KEY_ECHOED_DECIMAL = (
        "key_echoed_decimal",
        "firmware",
        "once provisioned, ID reports a 'key id' (kid=) that is the secret key's 16 bytes read as a "
        "little-endian integer: the key itself, in decimal",
    )
    WRONG_PROTOCOL_MAJOR = (
        "wrong_protocol_major",
        "firmware",
        "the firmware implements an incompatible major version of the test protocol (0.9)",
    )
    BACKFEED_FROM_UART = (
        "backfeed_from_uart",
        "board",
        "the board is powered through the UART adapter's lines: switching the PSU off does not power "
        "the device down (a wiring fault that voids every power test)",
    )
    U2D_ACCEPTED = (
        "u2d_accepted",
        "decoder",
        "the used-count mask is updated like the reference C decoder (MarkCountAsUsed drops a bit and "
        "ORs unnormalised ones): an ADD older than an entered SET is accepted after a newer ADD (U2D, "
        'docs/tokens.md "What the bench adds"); the official procedure still passes',
    )
    SYNC_KEEPS_STALE_MASK = (
        "sync_keeps_stale_mask",
        "decoder",
        "a counter sync that lowers the count stores the new count with the used-count mask it had "
        "for the old one (the mask is set to all-used only when the count moves up): an older ADD "
        "below the new count, never entered, is accepted where every older count must count as used "
        '(docs/tokens.md "Used counts"); no scenario test was written for it: the random walk finds it',
    )
    SET_AS_ADD = (
        "set_as_add",
        "decoder",
        "SET_TIME tokens are classified as ADD_TIME: the device adds the days instead of setting them "
        "(and reports ADD_TIME)",
    )
    PARITY_BEFORE_SPECIAL = (
        "parity_before_special",
        "decoder",
        "the token type is decided by parity before checking for 998/999: a DISABLE_PAYG at an even "
        'count is taken as ADD_TIME 998 days (docs/tokens.md "Values and types")',
    )
    UNBOUNDED_JUMP = (
        "unbounded_jump",
        "decoder",
        "the search has no upper bound at last+64 (last+100 for a sync): tokens far ahead of the last "
        "count are accepted",
    )
    TIME_DIVIDER_IGNORED = (
        "time_divider_ignored",
        "decoder",
        "the provisioned time divider is ignored: a value counts whole days (divider 4: ADD 2.5 days gives 10 days)",
    )
    NO_LOCKOUT = (
        "no_lockout",
        "firmware",
        "invalid tokens are counted but token entry is never locked: no brute-force protection "
        '(docs/tokens.md "Brute-force lockout")',
    )
    LOCKOUT_NOT_PERSISTED = (
        "lockout_not_persisted",
        "firmware",
        "the invalid-token streak and the lockout end are kept in RAM only: a power cycle clears the "
        'lockout (docs/tokens.md "Brute-force lockout" requires it to survive off/on)',
    )
    USED_COUNTS_NOT_PERSISTED = (
        "used_counts_not_persisted",
        "firmware",
        "the token count is stored but the used-count mask is not: after a power cycle an older ADD "
        "token entered out of order is accepted again",
    )
    SLOW_DECODE = (
        "slow_decode",
        "firmware",
        "a software SipHash on a slow MCU (about 8.6 ms a step): the firmware keeps the chain around "
        "its last count (+-16) but walks it from count 0 for any other token, so a token far ahead at "
        "a high count (the top of G8: 30 counts apart near count 600) takes more than 5 s (the G8 "
        "limit)",
    )
    LEADING_ZERO_DROPPED = (
        "leading_zero_dropped",
        "firmware",
        "the keypad entry is read as a number and checked to have 9 digits: a token starting with 0 "
        "is refused as invalid",
    )
    SET_DOES_NOT_RELOCK = (
        "set_does_not_relock",
        "firmware",
        "a SET token sets the expiry but leaves the PAYG-disabled flag: once DISABLE_PAYG was entered "
        'the device cannot be re-locked (docs/tokens.md "Re-lock", G10)',
    )
    ADD_RELOCKS = (
        "add_relocks",
        "firmware",
        "any ADD token re-enables PAYG after DISABLE_PAYG, as old devices did (G11B, marked Optional by the procedure)",
    )
    RTC_LOST_ON_POWER_LOSS = (
        "rtc_lost_on_power_loss",
        "board",
        "no backup battery for the RTC: it restarts from a fixed epoch (2021-01-01, as on the "
        "OpenPAYGO HDK) at every power-on, so after a power cut the credit is measured against the "
        'wrong time (docs/tokens.md "Clock and credit": battery-backed RTC)',
    )
    CREDIT_RUNS_ON_UPTIME = (
        "credit_runs_on_uptime",
        "firmware",
        "the credit is kept as seconds left, counted down by the firmware's own uptime and saved: "
        "time spent unpowered is never charged, so each power loss moves the end of credit later by "
        "the time the device was off (its RTC is fine)",
    )
    ADD_COUNTS_EXPIRED_DAYS = (
        "add_counts_expired_days",
        "firmware",
        "an ADD token extends the stored end of credit even when it has passed, instead of counting "
        "from now: the days a device spent expired are owed to it (G12)",
    )
    RTC_STOPPED_UNPOWERED = (
        "rtc_stopped_unpowered",
        "board",
        "a flat backup cell: the RTC oscillator stops while the board is unpowered and resumes from "
        "where it stopped at power-on, so time spent off is never counted",
    )
    METRICS_COUNTER_NOT_PERSISTED = (
        "metrics_counter_not_persisted",
        "firmware",
        "the Metrics request counter is kept in RAM only: after a power cycle it restarts from the "
        "stored value and repeats counts the server has already seen",
    )
    METRICS_WRONG_SHORT_KEY = (
        "metrics_wrong_short_key",
        "firmware",
        "the Metrics request carries the request counter under a misspelt short key ('rqc' for 'rc'): "
        "the server refuses every session with 422 and the device's data never arrives",
    )
    METRICS_UNSIGNED = (
        "metrics_unsigned",
        "firmware",
        "the device is configured for signed requests but sends them without 'ra' / 'da': the server "
        "refuses each one with 403",
    )
    METRICS_MIS_SIGNED = (
        "metrics_mis_signed",
        "firmware",
        "the signature is computed before the last historical row is appended (over a payload that is "
        "not the one sent): the server's check fails and answers 403",
    )
    METRICS_DATA_DROPPED_BEFORE_REPLY = (
        "metrics_data_dropped_before_reply",
        "firmware",
        "the historical buffer is cleared as soon as the request is sent, not when the reply arrives "
        '(docs/metrics.md "Asynchronous flow"): a refused or lost request loses its rows',
    )
    METRICS_ROWS_DUPLICATED_ON_RETRY = (
        "metrics_rows_duplicated_on_retry",
        "firmware",
        "after a failed session the retry resends the unanswered rows and appends them to the buffer "
        "again: the server receives the same rows twice once it is back",
    )
    METRICS_AUTS_IGNORED = (
        "metrics_auts_ignored",
        "firmware",
        "the device asks for its active-until time in every Metrics request (autsr) but drops the "
        "server's answer: it never holds the time the server sold",
    )
    METRICS_BASE_URL_NOT_FOLLOWED = (
        "metrics_base_url_not_followed",
        "firmware",
        "a reply's settings.base_url is checked and then dropped: after a server migration the device "
        "keeps reporting to the old server (its data format id is still followed)",
    )
    METRICS_TOKENS_NOT_APPLIED = (
        "metrics_tokens_not_applied",
        "firmware",
        "tokens delivered in a Metrics reply ('tkl') are acknowledged but never entered: the device's "
        "count and credit stay behind the server's target",
    )
    TORN_WRITE_CORRUPTS_STATE = (
        "torn_write_corrupts_state",
        "firmware",
        "the state is kept in one record overwritten in place (no A/B copies): a power cut in the "
        "middle of a write leaves it torn, its CRC fails, and the device boots in factory state "
        "(unprovisioned: count, used tokens, credit and lockout gone)",
    )
    STATE_NOT_AB_CRC = (
        "state_not_ab_crc",
        "firmware",
        "one record overwritten in place and read back without checking its CRC: after a cut "
        "mid-write the device takes the torn bytes for its state (the new record's first pages "
        "spliced onto the old one's rest: e.g. the new credit with the old count) or, when they do "
        "not parse, boots in factory state",
    )
    NO_BROWNOUT_RESET = (
        "no_brownout_reset",
        "board",
        "the brown-out reset is disabled (or set below the EEPROM's minimum write voltage): on a slow "
        "supply ramp the MCU keeps running and answering below the threshold, down to 60 % of it, and "
        "the NVM pages it programs there come out garbled",
    )
    RTC_DRIFT_BEYOND_LIMIT = (
        "rtc_drift_beyond_limit",
        "board",
        "the 32 kHz crystal's load capacitors are wrong (or the RTC is clocked from the internal RC "
        "oscillator): the RTC runs +2000 ppm fast on top of the configured drift, about 17 h a year, "
        'far beyond OpenPAYGO\'s ~6 h (docs/drift.md "Units and the OpenPAYGO limit")',
    )
    STREAK_SAVED_LATE = (
        "streak_saved_late",
        "firmware",
        "an invalid entry is answered at once but its streak (and the lock it starts) is saved by the "
        "main loop a second later, to spare the EEPROM under brute force: a power cut after the reply "
        'loses an entry the device acknowledged (docs/tokens.md "What a device keeps")',
    )
    LOCK_END_SAVED_LATE = (
        "lock_end_saved_late",
        "firmware",
        "an invalid entry that starts a lockout is answered first and saved (the streak with the lock "
        "end) by the main loop a second later, other invalid entries before the reply: a power cut "
        'after the reply that locked entry unlocks it (docs/tokens.md "Brute-force lockout")',
    )

    COUNT_STORED_U8 = (
        "count_stored_u8",
        "firmware",
        "the token count is written to NVM in one byte (the RAM copy is a u16): after a power cycle a "
        "count above 255 comes back modulo 256, and tokens entered above it are accepted again or "
        "refused as out of the window",
    )
    COUNT_WRAPS_U16 = (
        "count_wraps_u16",
        "decoder",
        "as the reference C decoder (an int search bound, a u16 count): the search runs past 65535 "
        "and a token found there is stored modulo 65536, so the count falls back to 0 and the "
        "tokens at the top of the range are accepted again",
    )
    USED_MASK_STORED_U8 = (
        "used_mask_stored_u8",
        "firmware",
        "the used-count mask is written to NVM in one byte: after a power cycle the counts 9 to 16 "
        "below the last one are forgotten, and an older ADD entered there is accepted again",
    )
    CREDIT_END_INT32 = (
        "credit_end_int32",
        "firmware",
        "the end of credit is stored in NVM as a signed 32-bit number: an end past 2038-01-19 "
        "(2^31 s) comes back negative after a power cycle and the credit is gone",
    )
    CREDIT_COMPARE_INT32 = (
        "credit_compare_int32",
        "firmware",
        "the credit is judged with the wrap-safe idiom (int32_t)(end - now) > 0 and that difference "
        "is the seconds left: with more than 2^31 s (68 years) of credit the device reads expired",
    )
    STREAK_STORED_3_BITS = (
        "streak_stored_3_bits",
        "firmware",
        "the invalid-token streak is packed into 3 bits of a flags byte in NVM: at its cap (11) it "
        "comes back as 3 after a power cycle, and the next invalid token locks for minutes instead "
        'of the longest lock (docs/tokens.md "Brute-force lockout")',
    )
    RTC_SUPERCAP_BACKUP = (
        "rtc_supercap_backup",
        "board",
        "the RTC's backup supply is a supercapacitor, not a cell: it keeps the clock running for a "
        "minute unpowered, then the oscillator stops until power returns; short power cycles pass, "
        "a long unpowered interval moves the end of credit later by all but that minute",
    )
    EXPIRY_TIMER_U16 = (
        "expiry_timer_u16",
        "firmware",
        "once fewer than 2^16 s (18 h 12 min) of credit are left the firmware counts them down on a "
        "16-bit 1 Hz low-power timer instead of the RTC, saving its count in a backup register: the "
        "timer stops while unpowered, so an off time in the last 18 h is never charged",
    )


# name -> fault, in catalogue order (what the host side reads: bench/detection/catalogue.py)
CATALOGUE: dict[str, Fault] = {fault.value: fault for fault in Fault}


class FaultSet(frozenset):
    """The faults a build has: a frozenset whose `in` is also noted by the hook trace when one is
    on (bench/sim/hook_trace.py), so the detection matrix knows which tests reach which fault's code.
    Code that passes a build's faults on keeps this type (FaultSet(faults), not frozenset(faults))."""

    __slots__ = ()

    def __contains__(self, item: object) -> bool:
        trace = hook_trace.TRACE
        if trace is not None:
            trace.note(str(item))
        return frozenset.__contains__(self, item)


NO_FAULTS = FaultSet()


def validate(names: Iterable[str]) -> tuple[Fault, ...]:
    """Return the faults these names are, or raise ValueError naming the unknown ones and the valid ones."""
    names = tuple(names)
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        raise ValueError(f"unknown simulator fault(s) {', '.join(unknown)}; known: {', '.join(sorted(CATALOGUE))}")
    return tuple(CATALOGUE[n] for n in names)
