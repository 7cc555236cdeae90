"""The simulated device's test firmware: the reference implementation of docs/protocol.md.

One instance is the device's RAM for one power-on period: it is built at boot from what the
NVM holds and thrown away when the supply collapses. Faults from the catalogue change what it
does in exactly the place the real defect would live.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, replace

from bench.openpaygo.tokens import TokenKind
from bench.sim.nvstate import LoadResult, NvState, RecordStore
from bench.sim.rtc import Rtc
from bench.sim.token_decoder import MAX_TOKEN_JUMP, TokenState, apply_time, decode

PROTOCOL_VERSION = "1.0"
MODEL = "PAYGO-SIM"
FIRMWARE_VERSION = "1.0.0"

_SERIAL = re.compile(r"[A-Za-z0-9_-]{1,32}")
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_AUTH = {"none", "sa", "ta", "ca", "da", "ra"}
MAX_LINE = 1024
MAX_IMPORT_LINE = 8192
# slow_decode: a software SipHash on a slow MCU, this many seconds per hash step. The firmware
# keeps the chain values around its last count (+-16) and steps from there; a token outside
# them, or one it has to search the whole window for (invalid), is walked from count 0: > 5 s
# from count ~580 on (the top of the full procedure's G8 series, 30 counts apart).
SLOW_DECODE_S_PER_STEP = 0.0086
SLOW_DECODE_CACHED = 16


@dataclass(frozen=True)
class FirmwareConfig:
    faults: frozenset[str] = frozenset()
    rtc_subsecond: bool = False
    extended_tokens: bool = False
    lockout_free_errors: int = 2  # reference firmware: two free errors, then 2^(n-2) minutes
    lockout_max_minutes: int = 512
    invalid_streak_cap: int = 11


@dataclass(frozen=True)
class Reply:
    """What the firmware sends for one request, and how (the board carries it out)."""

    line: str  # the reply ("" = none)
    reboot: bool = False  # the firmware restarts after sending this reply
    before: tuple[str, ...] = ()  # lines sent first (debug output interleaved with the reply)
    delay_s: float = 0.0  # the firmware is busy (blocking LED blinks, slow decode) before replying
    newline: bool = True  # False: the reply goes out without its terminating newline


class CommandError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Firmware:
    def __init__(self, store: RecordStore, rtc: Rtc, config: FirmwareConfig, reset_reason: str) -> None:
        self.store = store
        self.rtc = rtc
        self.config = config
        self.faults = config.faults
        loaded: LoadResult = self._load()
        self.boot_status = loaded.status
        self.state: NvState = loaded.state
        self.reset_reason = reset_reason
        self._nvm_at_boot = replace(loaded.state)  # what a RAM-only defect falls back to
        self._writes_at_boot = store.eeprom.pages_written
        self._decode_steps = 0  # hash steps the last token's decode walked (slow_decode)

    # -- boot ---------------------------------------------------------------------------------
    def _load(self) -> LoadResult:
        if "torn_write_corrupts_state" in self.faults:  # one copy, CRC checked: torn = lost
            return self.store.load_single(check_crc=True)
        if "state_not_ab_crc" in self.faults:  # one copy, no CRC: torn bytes taken as the state
            return self.store.load_single(check_crc=False)
        return self.store.load()

    def banner(self) -> str:
        return (
            f"! BOOT model={MODEL} fw={FIRMWARE_VERSION} proto={self._proto()} "
            f"reset={self.reset_reason} nvm={self.boot_status}"
        )

    def _proto(self) -> str:
        return "0.9" if "wrong_protocol_major" in self.faults else PROTOCOL_VERSION

    def capabilities(self) -> list[str]:
        caps = ["token", "status", "rtc", "rtc_set", "nvm", "factory_reset", "metrics_bridge"]
        if self.config.rtc_subsecond:
            caps.insert(3, "rtc_subsecond")
        if self.config.extended_tokens:
            caps.append("extended_tokens")
        return caps

    # -- dispatch -----------------------------------------------------------------------------
    def handle(self, line: str) -> Reply:
        """Answer one request line. PowerLost from an NVM write propagates: no reply is sent."""
        words = line.strip().split(" ")
        name = words[0].upper() if words and words[0] else ""
        handler = {
            "PING": self._ping,
            "ID": self._id,
            "PROV": self._prov,
            "TOKEN": self._token,
            "STATUS": self._status,
            "RTC": self._rtc,
            "NVM": self._nvm,
            "METRICS": self._metrics,
        }.get(name)
        try:
            if not name:
                raise CommandError(400, "empty request")
            if handler is None:
                raise CommandError(404, f"unknown command '{name[:32]}'")
            limit = MAX_IMPORT_LINE if name == "METRICS" else MAX_LINE
            if len(line) > limit:
                raise CommandError(400, f"line longer than {limit} bytes")
            return handler(words[1:])
        except CommandError as e:
            return Reply(f"ERR {e.code} {e.reason}")

    def _persist(self) -> None:
        saved = replace(self.state)
        if "count_not_persisted" in self.faults:
            saved.last_count = self._nvm_at_boot.last_count
            saved.used_mask = self._nvm_at_boot.used_mask
        if "used_counts_not_persisted" in self.faults:  # the count is stored, the mask is not
            saved.used_mask = self._nvm_at_boot.used_mask
        if "lockout_not_persisted" in self.faults:  # streak and lockout kept in RAM only
            saved.invalid_streak = self._nvm_at_boot.invalid_streak
            saved.locked_until = self._nvm_at_boot.locked_until
        if "metrics_counter_not_persisted" in self.faults:  # the request counter lives in RAM
            saved.metrics_rc = self._nvm_at_boot.metrics_rc
        if "provisioning_not_persisted" in self.faults:
            for field in ("provisioned", "serial", "key_hex", "starting_code", "time_divider", "restricted"):
                setattr(saved, field, getattr(self._nvm_at_boot, field))
        if {"torn_write_corrupts_state", "state_not_ab_crc"} & self.faults:
            self.store.save_in_place(saved)  # no A/B: the only copy is overwritten
        else:
            self.store.save(saved)

    def _now(self) -> int:
        return int(self.rtc.now())

    def _require_provisioned(self) -> None:
        if not self.state.provisioned:
            raise CommandError(409, "not provisioned")

    # -- commands -----------------------------------------------------------------------------
    def _ping(self, args: list[str]) -> Reply:
        return Reply("OK")

    def _id(self, args: list[str]) -> Reply:
        sn = self.state.serial if self.state.provisioned else "-"
        return Reply(
            f"OK model={MODEL} fw={FIRMWARE_VERSION} proto={self._proto()} sn={sn} "
            f"caps={','.join(self.capabilities())}"
        )

    def _prov(self, args: list[str]) -> Reply:
        kv = _parse_kv(args)
        if self.state.provisioned:
            raise CommandError(409, "already provisioned")
        for required in ("sn", "key", "sc"):
            if required not in kv:
                raise CommandError(400, f"missing {required}=")
        unknown = set(kv) - {"sn", "key", "sc", "count", "td", "rd", "url", "df", "auth"}
        if unknown:
            raise CommandError(400, f"unknown argument {sorted(unknown)[0]}=")
        if not _SERIAL.fullmatch(kv["sn"]):
            raise CommandError(400, "sn= must be 1-32 characters A-Z a-z 0-9 _ -")
        if not _HEX32.fullmatch(kv["key"]):
            raise CommandError(400, "key= must be 32 hex digits")
        sc = _int_arg(kv, "sc", 0, 999_999_999)
        count = _int_arg(kv, "count", 0, 65535, default=1)
        td = _int_arg(kv, "td", 1, 255, default=1)
        rd = _int_arg(kv, "rd", 0, 1, default=0)
        df = _int_arg(kv, "df", 0, 2**31 - 1, default=0)
        auth = kv.get("auth", "none")
        if auth not in _AUTH:
            raise CommandError(400, f"auth= must be one of {','.join(sorted(_AUTH))}")
        serial = kv["sn"][:8] if "serial_truncated" in self.faults else kv["sn"]
        self.state = replace(
            self.state,
            provisioned=True,
            serial=serial,
            key_hex=kv["key"].lower(),
            starting_code=sc,
            time_divider=td,
            restricted=bool(rd),
            metrics_url=kv.get("url", ""),
            data_format_id=df,
            auth=auth,
            last_count=count,
            used_mask=0,
            active_until=0,
            payg_disabled=False,
            invalid_streak=0,
            locked_until=0,
            metrics_rc=0,
        )
        self._persist()
        extra = f" key={self.state.key_hex}" if "key_echoed" in self.faults else ""
        return Reply(f"OK sn={self.state.serial}{extra}")

    def _token(self, args: list[str]) -> Reply:
        self._require_provisioned()
        if len(args) != 1 or not args[0].isdigit() or not args[0].isascii():
            raise CommandError(400, "TOKEN takes one argument of digits")
        code = args[0]
        lengths = {15, 20} if self.state.restricted else {9, 12}
        if not self.config.extended_tokens:
            lengths = {min(lengths)}
        if len(code) not in lengths:
            raise CommandError(400, f"a token has {' or '.join(map(str, sorted(lengths)))} digits")
        self._decode_steps = 0
        body = self.enter_token(code)
        delay = SLOW_DECODE_S_PER_STEP * self._decode_steps if "slow_decode" in self.faults else 0.0
        return Reply(body, delay_s=delay)

    def enter_token(self, code: str) -> str:
        """Decode and apply one token; the reply body (without ERR handling)."""
        st = self.state
        now = self._now()
        if st.locked_until > now:
            return f"OK result=locked seconds={st.locked_until - now}"
        if st.restricted and set(code) - set("1234"):
            return self._invalid_entry(now)  # outside the restricted digit set: an invalid token
        if "leading_zero_dropped" in self.faults and code.startswith("0"):
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
        )
        self._decode_steps = _slow_decode_steps(result.count, st.last_count)
        if result.outcome == "accepted":
            divider = 1 if "time_divider_ignored" in self.faults else st.time_divider
            active_until, disabled = apply_time(
                result.kind, result.value, now, st.active_until, st.payg_disabled, divider
            )
            if "set_does_not_relock" in self.faults and result.kind is TokenKind.SET_TIME:
                disabled = st.payg_disabled  # the expiry is set, the PAYG-disabled flag left alone
            if "add_relocks" in self.faults and result.kind is TokenKind.ADD_TIME:
                disabled = False  # legacy: any ADD re-enables PAYG (§2 Re-lock, G11B)
            self.state = replace(
                st,
                last_count=tstate.last_count,
                used_mask=tstate.used_mask,
                active_until=int(active_until),
                payg_disabled=disabled,
                invalid_streak=0,
                locked_until=0,
            )
            self._persist()
            value = "-" if result.value is None else result.value
            return f"OK result=accepted type={result.kind.name} value={value} count={result.count}"
        if result.outcome == "invalid":
            return self._invalid_entry(now)
        return "OK result=already_used"

    def _invalid_entry(self, now: int) -> str:
        """Count an invalid token toward the brute-force lockout (openpaygo.md §2)."""
        st = self.state
        streak = min(st.invalid_streak + 1, self.config.invalid_streak_cap)
        locked_until = st.locked_until
        if streak > self.config.lockout_free_errors and "no_lockout" not in self.faults:
            minutes = min(2 ** (streak - self.config.lockout_free_errors), self.config.lockout_max_minutes)
            locked_until = now + 60 * minutes
        self.state = replace(st, invalid_streak=streak, locked_until=locked_until)
        self._persist()
        return "OK result=invalid"

    def _status(self, args: list[str]) -> Reply:
        self._require_provisioned()
        st = self.state
        now = self._now()
        if st.payg_disabled:
            payg, left = "disabled", 0
        elif st.active_until > now:
            payg, left = "active", st.active_until - now
        else:
            payg, left = "inactive", 0
        return Reply(
            f"OK payg={payg} active_until={st.active_until} left={left} count={st.last_count} "
            f"invalid={st.invalid_streak} locked={max(0, st.locked_until - now)}"
        )

    def _rtc(self, args: list[str]) -> Reply:
        if not args:
            t = self.rtc.now()
            return Reply(f"OK t={t:.3f}" if self.config.rtc_subsecond else f"OK t={int(t)}")
        if args[0].upper() == "SET" and len(args) == 2:
            try:
                t = int(args[1])
            except ValueError:
                raise CommandError(400, "RTC SET takes whole seconds") from None
            if not 0 <= t < 2**32:
                raise CommandError(400, "RTC SET seconds out of range 0..4294967295")
            self.rtc.set(t)
            return Reply(f"OK t={t}")
        raise CommandError(400, "usage: RTC | RTC SET <seconds>")

    def _nvm(self, args: list[str]) -> Reply:
        if not args:
            s = self.store
            return Reply(
                f"OK slot={s.current_slot} seq={s.seq} crc={'ok' if s.crc_ok else 'bad'} "
                f"writes={s.eeprom.pages_written - self._writes_at_boot} size={s.eeprom.size}"
            )
        if args == ["ERASE"]:
            self.store.erase()
            return Reply("OK", reboot=True)
        raise CommandError(400, "usage: NVM | NVM ERASE")

    def _metrics(self, args: list[str]) -> Reply:
        """A minimal bridge: the full OpenPAYGO Metrics payload (formats, auth) is issue #6."""
        self._require_provisioned()
        if args == ["EXPORT"]:
            self.state = replace(self.state, metrics_rc=self.state.metrics_rc + 1)
            self._persist()
            payload = {
                "serial_number": self.state.serial,
                "request_count": self.state.metrics_rc,
                "data": {"token_count": self.state.last_count},
            }
            body = json.dumps(payload, separators=(",", ":")).encode()
            return Reply(
                f"OK ct=application/json rc={self.state.metrics_rc} b64={base64.b64encode(body).decode()}"
            )
        if len(args) == 2 and args[0] == "IMPORT" and args[1].startswith("b64="):
            try:
                reply = json.loads(base64.b64decode(args[1][4:], validate=True))
            except (binascii.Error, ValueError):
                raise CommandError(400, "IMPORT b64= is not base64 of a JSON object") from None
            if not isinstance(reply, dict):
                raise CommandError(400, "IMPORT payload is not a JSON object")
            tokens = reply.get("tkl", reply.get("token_list", []))
            if not isinstance(tokens, list):
                raise CommandError(400, "IMPORT tkl is not a list")
            accepted = 0
            for token in tokens:
                code = str(token).zfill(9) if isinstance(token, int) else str(token)
                if code.isdigit() and self.enter_token(code).startswith("OK result=accepted"):
                    accepted += 1
            return Reply(f"OK tokens={accepted}/{len(tokens)}")
        raise CommandError(400, "usage: METRICS EXPORT | METRICS IMPORT b64=<reply>")


def _slow_decode_steps(count: int | None, last: int) -> int:
    """Hash steps the slow_decode firmware walks for a token matched at `count` (None: no match,
    the whole window searched from count 0, openpaygo.md §1 Constants)."""
    if count is None:
        return last + MAX_TOKEN_JUMP + 1
    if abs(count - last) <= SLOW_DECODE_CACHED:
        return abs(count - last) + 1  # from the cached chain values around the last count
    return count + 1


def _parse_kv(args: list[str]) -> dict[str, str]:
    kv: dict[str, str] = {}
    for position, arg in enumerate(args, start=1):
        if not arg:
            continue
        key, sep, value = arg.partition("=")
        if not sep or not key:
            # the word is not echoed: it may be the secret key sent without its name
            raise CommandError(400, f"argument {position} is not key=value")
        kv[key] = value
    return kv


def _int_arg(kv: dict[str, str], key: str, low: int, high: int, default: int | None = None) -> int:
    if key not in kv:
        if default is None:
            raise CommandError(400, f"missing {key}=")
        return default
    raw = kv[key]
    if not raw.isdigit() or not raw.isascii():
        raise CommandError(400, f"{key}= must be a whole number")
    value = int(raw)
    if not low <= value <= high:
        raise CommandError(400, f"{key}= out of range {low}..{high}")
    return value
