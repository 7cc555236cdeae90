"""The fault catalogue: realistic firmware and board defects the virtual rig can switch on.

Each entry names the device tests that must fail when the defect is present (and only those:
every other device test must still pass). `tests/selftest/test_fault_detection.py` proves it
for every entry by running the device suite against a simulator with that one defect.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    name: str
    layer: str  # firmware | decoder | board
    description: str
    caught_by: tuple[str, ...]  # device test node ids, relative to the repository root


_T = "tests/device/"

# Every test that checks token state after a power loss: a device that forgets its state when
# unpowered (or never loses power) fails all of them.
_STATE_KEPT_THROUGH_POWER_LOSS = (
    _T + "test_persistence.py::test_token_state_survives_power_cycle",
    _T + "test_timekeeping.py::test_credit_end_holds_while_unpowered",
    _T + "test_persistence.py::test_used_counts_survive_power_cycle",
    _T + "test_lockout.py::test_lockout_survives_power_cycle",
    _T + "test_nvm_persistence.py::test_state_persists_after_token_accepted",
    _T + "test_nvm_persistence.py::test_state_persists_after_lockout_started",
    _T + "test_nvm_persistence.py::test_state_persists_after_payg_disabled",
    _T + "test_nvm_persistence.py::test_request_counter_persists",
    _T + "test_power_cuts.py::test_state_survives_power_cuts_during_nvm_writes",
    _T + "test_brownout.py::test_brownout_ramp_reboots_cleanly",
)

_M = _T + "test_metrics.py::test_metrics_"
# Every Metrics test that needs the server to accept the device's sessions.
_METRICS_SERVED = (
    _M + "payload_conforms",
    _M + "auth_verifies",
    _M + "rows_survive_server_faults",
    _M + "tokens_applied",
    _M + "data_budget",
    _M + "follows_base_url",
    _M + "active_until_honoured",
)
_METRICS_ACROSS_POWER_CYCLES = _M + "counter_and_time_increase_across_power_cycles"
_METRICS_ALL = _METRICS_SERVED + (_METRICS_ACROSS_POWER_CYCLES,)

CATALOGUE: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault(
            "reused_token_accepted",
            "decoder",
            "the used-count check is skipped: a token already entered is accepted again",
            (_T + "test_tokens.py::test_reused_token_refused",
             _T + "test_persistence.py::test_token_state_survives_power_cycle",
             _T + "test_persistence.py::test_used_counts_survive_power_cycle",
             _T + "test_token_procedure.py::test_quick_test_scenario_1",
             _T + "test_token_procedure.py::test_full_procedure",
             _T + "test_token_windows.py::test_u2d_older_add_refused_after_set",
             _T + "test_token_windows.py::test_older_add_window_edges",
             _T + "test_token_windows.py::test_restricted_digit_tokens",
             _T + "test_token_windows.py::test_extended_tokens",
             _T + "test_lockout.py::test_already_used_neither_counts_nor_resets",
             _T + "test_lockout.py::test_valid_token_resets_streak",
             _T + "test_nvm_persistence.py::test_state_persists_after_token_accepted",
             _T + "test_power_cuts.py::test_state_survives_power_cuts_during_nvm_writes",
             _T + "test_brownout.py::test_brownout_ramp_reboots_cleanly"),
        ),
        Fault(
            "accepts_starting_code",
            "decoder",
            "the starting code itself decodes as an ADD 0 token at count 0 (openpaygo 0.6.3 bug)",
            (_T + "test_tokens.py::test_invalid_tokens_refused",
             _T + "test_token_procedure.py::test_quick_test_scenario_1",
             _T + "test_token_procedure.py::test_full_procedure"),
        ),
        Fault(
            "count_not_persisted",
            "firmware",
            "the token count and used-count mask are kept in RAM only: after a power cycle the "
            "device has forgotten which tokens it accepted",
            _STATE_KEPT_THROUGH_POWER_LOSS,
        ),
        Fault(
            "provisioning_not_persisted",
            "firmware",
            "factory data (serial, key, starting code) is never committed to NVM: the device comes "
            "back unprovisioned after a power cycle",
            (_T + "test_persistence.py::test_provisioning_survives_power_cycle", _METRICS_ACROSS_POWER_CYCLES,
             _M + "follows_base_url") + _STATE_KEPT_THROUGH_POWER_LOSS,
        ),
        Fault(
            "serial_truncated",
            "firmware",
            "the serial number is stored in an 8-byte buffer: longer serials are cut (its Metrics "
            "requests then name a device the server does not know)",
            (_T + "test_identity.py::test_provisioning_round_trip",) + _METRICS_SERVED,
        ),
        Fault(
            "key_echoed",
            "firmware",
            "a debug leftover echoes the secret key in the provisioning reply",
            (_T + "test_identity.py::test_provisioning_round_trip",),
        ),
        Fault(
            "wrong_protocol_major",
            "firmware",
            "the firmware implements an incompatible major version of the test protocol (0.9)",
            (_T + "test_identity.py::test_identity",),
        ),
        Fault(
            "backfeed_from_uart",
            "board",
            "the board is powered through the UART adapter's lines: switching the PSU off does not "
            "power the device down (a wiring fault that voids every power test)",
            (_T + "test_power.py::test_device_silent_when_unpowered",
             _T + "test_timekeeping.py::test_rtc_keeps_time_while_unpowered",
             _T + "test_power.py::test_power_cycle_reboots_device",
             _T + "test_power.py::test_power_cycle_reports_power_on_reset",
             _T + "test_persistence.py::test_provisioning_survives_power_cycle",
             _METRICS_ACROSS_POWER_CYCLES, _M + "follows_base_url") + _STATE_KEPT_THROUGH_POWER_LOSS,
        ),
        Fault(
            "u2d_accepted",
            "decoder",
            "the used-count mask is updated like the reference C decoder (MarkCountAsUsed drops a "
            "bit and ORs unnormalised ones): an ADD older than an entered SET is accepted after a "
            "newer ADD (U2D, openpaygo.md §3e); the official procedure still passes",
            (_T + "test_token_windows.py::test_u2d_older_add_refused_after_set",),
        ),
        Fault(
            "set_as_add",
            "decoder",
            "SET_TIME tokens are classified as ADD_TIME: the device adds the days instead of "
            "setting them (and reports ADD_TIME)",
            (_T + "test_token_procedure.py::test_quick_test_scenario_1",
             _T + "test_token_procedure.py::test_full_procedure",
             _T + "test_token_procedure.py::test_g12_days_late_are_not_counted",
             _T + "test_token_windows.py::test_u2d_older_add_refused_after_set",
             _T + "test_token_windows.py::test_jump_window_edges",
             _T + "test_token_windows.py::test_leading_zero_token",
             _T + "test_token_windows.py::test_time_divider",
             _T + "test_token_windows.py::test_restricted_digit_tokens",
             _T + "test_token_windows.py::test_extended_tokens",
             _T + "test_token_windows.py::test_disable_then_set_relocks",
             _T + "test_token_windows.py::test_older_add_window_edges",
             _T + "test_timekeeping.py::test_credit_end_holds_while_unpowered",
             _T + "test_power_cuts.py::test_state_survives_power_cuts_during_nvm_writes"),
        ),
        Fault(
            "parity_before_special",
            "decoder",
            "the token type is decided by parity before checking for 998/999: a DISABLE_PAYG at an "
            "even count is taken as ADD_TIME 998 days (openpaygo.md §1 Count)",
            (_T + "test_token_procedure.py::test_full_procedure",
             _T + "test_token_windows.py::test_counter_sync_window_edges"),
        ),
        Fault(
            "unbounded_jump",
            "decoder",
            "the search has no upper bound at last+64 (last+100 for a sync): tokens far ahead of "
            "the last count are accepted",
            (_T + "test_token_windows.py::test_jump_window_edges",
             _T + "test_token_windows.py::test_counter_sync_window_edges",
             _T + "test_power_cuts.py::test_state_survives_power_cuts_during_nvm_writes"),
        ),
        Fault(
            "time_divider_ignored",
            "decoder",
            "the provisioned time divider is ignored: a value counts whole days (divider 4: ADD "
            "2.5 days gives 10 days)",
            (_T + "test_token_windows.py::test_time_divider",),
        ),
        Fault(
            "no_lockout",
            "firmware",
            "invalid tokens are counted but token entry is never locked: no brute-force protection "
            "(openpaygo.md §2)",
            (_T + "test_lockout.py::test_lockout_schedule",
             _T + "test_lockout.py::test_already_used_neither_counts_nor_resets",
             _T + "test_lockout.py::test_valid_token_resets_streak",
             _T + "test_lockout.py::test_lockout_survives_power_cycle",
             _T + "test_lockout.py::test_locked_entry_is_not_decoded",
             _T + "test_nvm_persistence.py::test_state_persists_after_lockout_started",
             _T + "test_power_cuts.py::test_state_survives_power_cuts_during_nvm_writes"),
        ),
        Fault(
            "lockout_not_persisted",
            "firmware",
            "the invalid-token streak and the lockout end are kept in RAM only: a power cycle "
            "clears the lockout (openpaygo.md §2 requires it to survive off/on)",
            (_T + "test_lockout.py::test_lockout_survives_power_cycle",
             _T + "test_nvm_persistence.py::test_state_persists_after_lockout_started",
             _T + "test_power_cuts.py::test_state_survives_power_cuts_during_nvm_writes"),
        ),
        Fault(
            "used_counts_not_persisted",
            "firmware",
            "the token count is stored but the used-count mask is not: after a power cycle an "
            "older ADD token entered out of order is accepted again",
            (_T + "test_persistence.py::test_token_state_survives_power_cycle",
             _T + "test_persistence.py::test_used_counts_survive_power_cycle",
             _T + "test_nvm_persistence.py::test_state_persists_after_token_accepted"),
        ),
        Fault(
            "slow_decode",
            "firmware",
            "a software SipHash on a slow MCU (about 8.6 ms a step): the firmware keeps the chain "
            "around its last count (+-16) but walks it from count 0 for any other token, so a "
            "token far ahead at a high count (the top of G8: 30 counts apart near count 600) "
            "takes more than 5 s (§3b G8 limit)",
            (_T + "test_token_procedure.py::test_full_procedure",),
        ),
        Fault(
            "leading_zero_dropped",
            "firmware",
            "the keypad entry is read as a number and checked to have 9 digits: a token starting "
            "with 0 is refused as invalid",
            (_T + "test_token_procedure.py::test_full_procedure",
             _T + "test_token_windows.py::test_counter_sync_window_edges",
             _T + "test_token_windows.py::test_leading_zero_token",
             _T + "test_token_windows.py::test_older_add_window_edges",
             _T + "test_token_windows.py::test_disable_then_set_relocks",
             _T + "test_brownout.py::test_brownout_ramp_reboots_cleanly"),
        ),
        Fault(
            "set_does_not_relock",
            "firmware",
            "a SET token sets the expiry but leaves the PAYG-disabled flag: once DISABLE_PAYG was "
            "entered the device cannot be re-locked (openpaygo.md §2 Re-lock, G10)",
            (_T + "test_token_procedure.py::test_quick_test_scenario_1",
             _T + "test_token_procedure.py::test_full_procedure",
             _T + "test_token_windows.py::test_disable_then_set_relocks",
             _T + "test_power_cuts.py::test_state_survives_power_cuts_during_nvm_writes"),
        ),
        Fault(
            "add_relocks",
            "firmware",
            "any ADD token re-enables PAYG after DISABLE_PAYG, as old devices did (G11B, marked "
            "Optional by the procedure)",
            (_T + "test_token_procedure.py::test_g11b_add_after_disable_does_not_relock",),
        ),
        Fault(
            "rtc_lost_on_power_loss",
            "board",
            "no backup battery for the RTC: it restarts from a fixed epoch (2021-01-01, as on the "
            "OpenPAYGO HDK) at every power-on, so after a power cut the credit is measured against "
            "the wrong time (openpaygo.md §2: battery-backed RTC)",
            (_T + "test_timekeeping.py::test_rtc_keeps_time_while_unpowered",
             _T + "test_timekeeping.py::test_credit_end_holds_while_unpowered",
             _T + "test_lockout.py::test_lockout_survives_power_cycle",
             _T + "test_nvm_persistence.py::test_state_persists_after_token_accepted",
             _T + "test_power_cuts.py::test_state_survives_power_cuts_during_nvm_writes",
             _T + "test_brownout.py::test_brownout_ramp_reboots_cleanly",
             _METRICS_ACROSS_POWER_CYCLES),
        ),
        Fault(
            "credit_runs_on_uptime",
            "firmware",
            "the credit is kept as seconds left, counted down by the firmware's own uptime and saved: "
            "time spent unpowered is never charged, so each power loss moves the end of credit later "
            "by the time the device was off (its RTC is fine)",
            (_T + "test_timekeeping.py::test_credit_end_holds_while_unpowered",
             _T + "test_power_cuts.py::test_state_survives_power_cuts_during_nvm_writes"),
        ),
        Fault(
            "add_counts_expired_days",
            "firmware",
            "an ADD token extends the stored end of credit even when it has passed, instead of counting "
            "from now: the days a device spent expired are owed to it (G12)",
            (_T + "test_token_procedure.py::test_g12_days_late_are_not_counted",),
        ),
        Fault(
            "rtc_stopped_unpowered",
            "board",
            "a flat backup cell: the RTC oscillator stops while the board is unpowered and resumes "
            "from where it stopped at power-on, so time spent off is never counted",
            (_T + "test_timekeeping.py::test_rtc_keeps_time_while_unpowered",
             _T + "test_timekeeping.py::test_credit_end_holds_while_unpowered"),
        ),
        Fault(
            "metrics_counter_not_persisted",
            "firmware",
            "the Metrics request counter is kept in RAM only: after a power cycle it restarts from "
            "the stored value and repeats counts the server has already seen",
            (_T + "test_nvm_persistence.py::test_request_counter_persists", _METRICS_ACROSS_POWER_CYCLES),
        ),
        Fault(
            "metrics_wrong_short_key",
            "firmware",
            "the Metrics request carries the request counter under a misspelt short key ('rqc' for "
            "'rc'): the server refuses every session with 422 and the device's data never arrives",
            _METRICS_ALL,
        ),
        Fault(
            "metrics_unsigned",
            "firmware",
            "the device is configured for signed requests but sends them without 'ra' / 'da': the "
            "server refuses each one with 403",
            _METRICS_SERVED,
        ),
        Fault(
            "metrics_mis_signed",
            "firmware",
            "the signature is computed before the last historical row is appended (over a payload "
            "that is not the one sent): the server's check fails and answers 403",
            _METRICS_SERVED,
        ),
        Fault(
            "metrics_data_dropped_before_reply",
            "firmware",
            "the historical buffer is cleared as soon as the request is sent, not when the reply "
            "arrives (openpaygo.md §6): a refused or lost request loses its rows",
            (_T + "test_metrics.py::test_metrics_rows_survive_server_faults",),
        ),
        Fault(
            "metrics_rows_duplicated_on_retry",
            "firmware",
            "after a failed session the retry resends the unanswered rows and appends them to the "
            "buffer again: the server receives the same rows twice once it is back",
            (_T + "test_metrics.py::test_metrics_rows_survive_server_faults",),
        ),
        Fault(
            "metrics_auts_ignored",
            "firmware",
            "the device asks for its active-until time in every Metrics request (autsr) but drops "
            "the server's answer: it never holds the time the server sold",
            (_M + "active_until_honoured",),
        ),
        Fault(
            "metrics_base_url_not_followed",
            "firmware",
            "a reply's settings.base_url is checked and then dropped: after a server migration the "
            "device keeps reporting to the old server (its data format id is still followed)",
            (_M + "follows_base_url",),
        ),
        Fault(
            "metrics_tokens_not_applied",
            "firmware",
            "tokens delivered in a Metrics reply ('tkl') are acknowledged but never entered: the "
            "device's count and credit stay behind the server's target",
            (_T + "test_metrics.py::test_metrics_tokens_applied", _M + "active_until_honoured"),
        ),
        Fault(
            "torn_write_corrupts_state",
            "firmware",
            "the state is kept in one record overwritten in place (no A/B copies): a power cut in "
            "the middle of a write leaves it torn, its CRC fails, and the device boots in factory "
            "state (unprovisioned: count, used tokens, credit and lockout gone)",
            (_T + "test_power_cuts.py::test_state_survives_power_cuts_during_nvm_writes",),
        ),
        Fault(
            "state_not_ab_crc",
            "firmware",
            "one record overwritten in place and read back without checking its CRC: after a cut "
            "mid-write the device takes the torn bytes for its state (the new record's first pages "
            "spliced onto the old one's rest: e.g. the new credit with the old count) or, when "
            "they do not parse, boots in factory state",
            (_T + "test_power_cuts.py::test_state_survives_power_cuts_during_nvm_writes",),
        ),
        Fault(
            "no_brownout_reset",
            "board",
            "the brown-out reset is disabled (or set below the EEPROM's minimum write voltage): on a "
            "slow supply ramp the MCU keeps running and answering below the threshold, down to 60 % "
            "of it, and the NVM pages it programs there come out garbled",
            (_T + "test_brownout.py::test_brownout_ramp_reboots_cleanly",),
        ),
        Fault(
            "rtc_drift_beyond_limit",
            "board",
            "the 32 kHz crystal's load capacitors are wrong (or the RTC is clocked from the internal "
            "RC oscillator): the RTC runs +2000 ppm fast on top of the configured drift, about 17 h "
            "a year, far beyond OpenPAYGO's ~6 h (openpaygo.md §2)",
            (_T + "test_rtc_drift.py::test_rtc_drift_within_limit",),
        ),
    )
}


def validate(names) -> tuple[str, ...]:
    """Return names as a tuple, or raise ValueError naming the unknown ones and the valid ones."""
    names = tuple(names)
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        raise ValueError(
            f"unknown simulator fault(s) {', '.join(unknown)}; known: {', '.join(sorted(CATALOGUE))}"
        )
    return names
