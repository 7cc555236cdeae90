"""The OpenPAYGO HDK firmware (EnAccess/OpenPAYGO-HDK) as a simulator firmware:
its UART protocol with every quirk a host has to live with, so the HDK adapter is tested
against them on the virtual rig.

What it models, after `openpaygo-hdk.ino`, `factory_setup.cpp`, `openpaygo_token.cpp`,
`storage.cpp`, `hal.cpp`:
- a command is `#`, a name read up to `;`, then arguments up to the newline; bytes before `#`
  are dropped unanswered. Without `;` the name read runs into the 1 s `readStringUntil` timeout
  (`HdkTiming.read_timeout_s`), takes the newline with it and is answered `#INVALID`.
- unconfigured, only `#SETUP;<sn>;<sc>;<key hex>` is understood (sn and sc via `%d`, the key
  as 16 `strtol` pairs); it answers with `INFO:` lines only (echoing sn, sc and the key, upper
  case without zero padding) ending `INFO: Setup complete. RESTART DEVICE.`. Anything else gets
  `#INVALID`. As the code reads, token commands work straight after setup; the restart the
  firmware asks for is what sets up Metrics and Pass (not simulated).
- `#TOKEN;<n>` (`%d` into a uint32) and `#STATUS;`, each after an `INFO: Received Command:`
  line; token replies after blocking LED blinks (`HdkTiming.blink_s` each) and an `INFO: Token
  received: ...` line. `#TOKEN;VALID;<s>` and `#STATUS;INACTIVE` go out without a newline; the
  other lines end in `\\r\\n` (Arduino println). Seconds left is `activeUntil - now` as a uint32:
  it wraps once the credit has expired (a COUNTER_SYNC after expiry, or after any reboot).
- NVM holds only setup data, lastCount, usedTokens and paygDisabled, written after ADD, SET and
  COUNTER_SYNC; the PAYG_DISABLED path returns before saving, so a DISABLE_PAYG token (its count
  and the disabled flag) is lost at the next reboot unless a later token saved it. activeUntil is
  RAM only, the RTC is set to a fixed epoch at every boot (no backup battery), there is no
  lockout (`tokenEntryAllowed` is never called) and the time divider is the build's (1).

`FirmwareConfig.hdk_fixed` builds the same firmware with those defects corrected, same protocol:
`#TOKEN` checks the lockout (while locked it answers `#TOKEN;INVALID` after the usual red
blinks, without decoding or counting the token; the invalid streak and the lock end follow the
reference C schedule in `lockout_unit_s` units and are saved), `activeUntil` is saved with every
change and loaded at boot, the RTC is battery-backed (not set at boot) and DISABLE_PAYG is saved.

Decoding is the simulator's own (`bench/sim/token_decoder.py`, with its catalogue faults), not
the HDK's C decoder: where the two differ (the C accepts U2D; it reports the starting code as
already used, the simulator as invalid) the device suite accepts either. Not modelled: the ESP32
ROM boot messages at 74880 baud, input that arrives while a command is still being read (it is
consumed by that read on the real board), Metrics and Pass output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from bench.openpaygo.tokens import TokenKind
from bench.sim.firmware_config import FirmwareConfig
from bench.sim.nvstate import NvState, RecordStore
from bench.sim.request_line import Reply
from bench.sim.rtc import Rtc
from bench.sim.token_decoder import (
    COUNTER_SYNC_VALUE,
    PAYG_DISABLE_VALUE,
    TokenState,
    apply_time,
    decode,
)

BOOT_EPOCH = 1_609_459_200  # ESP32Time's default setTime(): 2021-01-01, set at every boot
TIME_DIVIDER = 1  # hal.h build setting
UINT32 = 2**32
CRLF = "\r"  # println's \r; the board adds the \n
BLINKS = {
    "invalid": 5,
    "already_used": 1,
    TokenKind.COUNTER_SYNC: 3,
    TokenKind.DISABLE_PAYG: 5,
    TokenKind.ADD_TIME: 2,
    TokenKind.SET_TIME: 2,
}


@dataclass(frozen=True)
class HdkTiming:
    """The HDK's blocking waits, scaled down on the virtual rig so the suite stays fast."""

    blink_s: float = 0.05  # one LED blink, on + off (the HDK: 2 x LED_BLINK_TIME = 0.5 s)
    read_timeout_s: float = 0.1  # Arduino Serial timeout for readStringUntil (the HDK: 1 s)


REAL_HDK_TIMING = HdkTiming(blink_s=0.5, read_timeout_s=1.0)


class HdkFirmware:
    def __init__(
        self, store: RecordStore, rtc: Rtc, config: FirmwareConfig, reset_reason: str, timing: HdkTiming = HdkTiming()
    ) -> None:
        self.store = store
        self.rtc = rtc
        self.config = config
        self.faults = config.faults
        self.fixed = config.hdk_fixed
        self.timing = timing
        self.reset_reason = reset_reason  # the HDK does not report it
        nv = store.load().state
        if self.fixed:  # a backed-up RTC and everything loaded from NVM
            self.state: NvState = nv
            return
        rtc.set(BOOT_EPOCH)  # hal.cpp setupPeripherals: rtc.setTime()
        # RAM: activeUntil starts at 0 whatever was in effect before the restart
        self.state = replace(nv, active_until=0, invalid_streak=0, locked_until=0)

    # -- boot ---------------------------------------------------------------------------------
    def banner(self) -> str:
        if self.state.provisioned:
            middle = ["INFO: Factory setup done", "INFO: Waiting for commands or NFC taps..."]
        else:
            middle = ["INFO: Factory setup NOT done", "INFO: Waiting for Factory setup instruction..."]
        return "\n".join(
            line + CRLF for line in ["INFO: OpenPAYGO-HDK Starting...", *middle, "INFO: OpenPAYGO-HDK Started!"]
        )

    # -- dispatch -----------------------------------------------------------------------------
    def handle(self, line: str) -> Reply:
        start = line.find("#")
        if start < 0:
            return Reply("")  # Serial.read() != '#': the bytes are dropped, nothing is sent
        name, sep, args = line[start + 1 :].partition(";")
        if not sep:  # readStringUntil(';') times out holding "<name>\n"
            echo = f"INFO: Received Command: {name}\n{CRLF}\n" if self.state.provisioned else ""
            return Reply(f"{echo}#INVALID{CRLF}", delay_s=self.timing.read_timeout_s)
        if not self.state.provisioned:
            return self._setup(args) if name == "SETUP" else Reply("#INVALID" + CRLF)
        received = f"INFO: Received Command: {name}{CRLF}"
        if name == "TOKEN":
            return self._token(args, received)
        if name == "STATUS":
            return self._status(received)
        return Reply("#INVALID" + CRLF, before=(received,))

    # -- factory setup ------------------------------------------------------------------------
    def _setup(self, args: str) -> Reply:
        parts = args.split(";", 2)
        missing = 3 - len(parts)  # each missing ';' is one more readStringUntil timeout
        parts += [""] * missing
        sn = _scan_int(parts[0])
        sc = _scan_int(parts[1])
        key = _parse_key(parts[2])
        serial = 0 if sn is None else sn % UINT32  # sscanf leaves the global (0) when nothing matches
        starting_code = 0 if sc is None else sc % UINT32
        self.state = replace(
            NvState(),
            provisioned=True,
            serial=str(serial),
            key_hex=key.hex(),
            starting_code=starting_code,
            last_count=0,
            used_mask=0,
            payg_disabled=False,
        )
        self._save()
        info = (
            "INFO: Setup Data Received",
            f"INFO: SN: {serial}, SC: {starting_code}, KEY: {''.join(f'{b:X}' for b in key)}",
            "INFO: Setup data saved",
            "INFO: Setup complete. RESTART DEVICE.",
        )
        return Reply("", before=tuple(line + CRLF for line in info), delay_s=missing * self.timing.read_timeout_s)

    # -- token --------------------------------------------------------------------------------
    def _token(self, args: str, received: str) -> Reply:
        scanned = _scan_int(args)
        number = (scanned or 0) % UINT32  # sscanf %d into a uint32; no match: modelled as 0
        st = self.state
        now = self._now()
        if self.fixed and st.locked_until > now:  # tokenEntryAllowed() consulted: not decoded, not counted
            locked = f"INFO: Token entry locked for {st.locked_until - now} s{CRLF}"
            return self._blinking(f"#TOKEN;INVALID{CRLF}", BLINKS["invalid"], (received, locked))
        result, tstate = decode(
            f"{number:09d}",
            bytes.fromhex(st.key_hex),
            st.starting_code,
            TokenState(st.last_count, st.used_mask),
            faults=self.faults,
        )
        if result.outcome == "invalid" and self.fixed:
            self._count_invalid(now)
        if result.outcome != "accepted":
            value = -1 if result.outcome == "invalid" else -2
            debug = _token_debug(number, value, st.last_count, st.last_count)
            word = "INVALID" if result.outcome == "invalid" else "ALREADY_USED"
            return self._blinking(f"#TOKEN;{word}{CRLF}", BLINKS[result.outcome], (received, debug))
        kind, count = result.kind, result.count
        assert kind is not None and count is not None  # an accepted token has both
        raw = {TokenKind.DISABLE_PAYG: PAYG_DISABLE_VALUE, TokenKind.COUNTER_SYNC: COUNTER_SYNC_VALUE}.get(
            kind, result.value
        )
        assert raw is not None  # ADD and SET carry their value
        active_until, disabled = apply_time(kind, result.value, now, st.active_until, st.payg_disabled, TIME_DIVIDER)
        self.state = replace(
            st,
            last_count=tstate.last_count,
            used_mask=tstate.used_mask,
            active_until=active_until,
            payg_disabled=disabled,
            invalid_streak=0,
            locked_until=0,
        )
        debug = _token_debug(number, raw, count, tstate.last_count)
        if kind is TokenKind.DISABLE_PAYG and not self.fixed:  # returns before saveActivationData()
            return self._blinking(f"#TOKEN;PAYG_DISABLED{CRLF}", BLINKS[kind], (received, debug))
        self._save()
        if kind is TokenKind.DISABLE_PAYG:
            return self._blinking(f"#TOKEN;PAYG_DISABLED{CRLF}", BLINKS[kind], (received, debug))
        left = (active_until - now) % UINT32
        return self._blinking(f"#TOKEN;VALID;{left}", BLINKS[kind], (received, debug), newline=False)

    def _count_invalid(self, now: int) -> None:
        """The fixed build: the invalid streak and the lock end, saved (the reference C schedule)."""
        streak = min(self.state.invalid_streak + 1, self.config.invalid_streak_cap)
        lock_s = self.config.lockout_s(streak)
        locked_until = now + lock_s if lock_s else self.state.locked_until
        self.state = replace(self.state, invalid_streak=streak, locked_until=locked_until)
        self._save()

    def _blinking(self, line: str, blinks: int, before: tuple[str, ...], newline: bool = True) -> Reply:
        return Reply(line, before=before, delay_s=blinks * self.timing.blink_s, newline=newline)

    # -- status -------------------------------------------------------------------------------
    def _status(self, received: str) -> Reply:
        st = self.state
        now = self._now()
        if st.payg_disabled:
            return Reply("#STATUS;PAYG_DISABLED" + CRLF, before=(received,))
        if st.active_until > now:
            return Reply(f"#STATUS;ACTIVE;{(st.active_until - now) % UINT32}{CRLF}", before=(received,))
        return Reply("#STATUS;INACTIVE", before=(received,), newline=False)

    # -- helpers ------------------------------------------------------------------------------
    def _now(self) -> int:
        return int(self.rtc.now()) % UINT32

    def _save(self) -> None:
        """What storage.cpp keeps: setup data, lastCount, usedTokens, paygDisabled; the fixed
        build also activeUntil, the invalid streak and the lock end."""
        if self.fixed:
            self.store.save(self.state)
        else:
            self.store.save(replace(self.state, active_until=0, invalid_streak=0, locked_until=0))


def _token_debug(number: int, value: int, count: int, max_count: int) -> str:
    return (
        f"INFO: Token received: {number} | Token Value: {value} | Token Count: {count} | Max Count: {max_count}{CRLF}"
    )


def _scan_int(text: str) -> int | None:
    """C `sscanf(text, "%d", ...)`: optional blanks and sign, then digits; None if no digits."""
    m = re.match(r"\s*([+-]?\d+)", text)
    return int(m.group(1)) if m else None


def _parse_key(text: str) -> bytes:
    """factory_setup.cpp: the first 32 characters, each pair through strtol(pair, NULL, 16);
    a pair past the end of the text reads as 0."""
    chars = text[:32]
    out = bytearray()
    for i in range(16):
        m = re.match(r"\s*([+-]?)([0-9A-Fa-f]*)", chars[2 * i : 2 * i + 2])
        digits = m.group(2) if m else ""
        value = int(digits, 16) if digits else 0
        out.append((-value if m and m.group(1) == "-" else value) & 0xFF)
    return bytes(out)
