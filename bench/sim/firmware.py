"""The simulated device's test firmware: the reference implementation of docs/protocol.md.

One instance is the device's RAM for one power-on period: it is built at boot from what the
NVM holds and thrown away when the supply collapses. Faults from the catalogue change what it
does in exactly the place the real defect would live.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from bench.openpaygo.tokens import TokenKind
from bench.sim.capabilities import missing_command, validate_hidden
from bench.sim.faults import Fault, validate
from bench.sim.metrics.device_format import device_format
from bench.sim.metrics.port import FirmwareMetricsPort
from bench.sim.metrics.payload import ReplyRefused, compact_json
from bench.sim.metrics.session import MetricsSession, NothingPending
from bench.sim.metrics.settings import MetricsSettings, valid_base_url
from bench.sim.nvstate import LoadResult, NvState, RecordStore
from bench.sim.rtc import Rtc
from bench.sim.token_decoder import MAX_TOKEN_JUMP, TokenState, apply_time, decode
from bench.sim.uptime_credit import UptimeCredit

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
    faults: frozenset[Fault] = frozenset()
    rtc_subsecond: bool = False
    extended_tokens: bool = False
    # Capabilities the build is made without (bench/sim/capabilities.py): left out of ID's caps=,
    # their commands unknown. Token entry and status cannot be left out.
    hide_capabilities: frozenset[str] = frozenset()
    # The brute-force lockout (the reference C schedule): errors 1-2 free, error n >= 3 locks for
    # 2^(n-2) units, at most 512, the streak capped at 11. A unit is a minute on a production
    # build; a test build may shorten it.
    lockout_free_errors: int = 2
    lockout_max_units: int = 512
    invalid_streak_cap: int = 11
    lockout_unit_s: float = 60.0
    # The HDK firmware with its documented defects corrected (bench/sim/hdk_firmware.py); the
    # reference firmware has none of them and ignores it.
    hdk_fixed: bool = False
    # OpenPAYGO Metrics reporting (docs/protocol.md "Metrics sessions"): the build's settings.
    # `METRICS CONFIG` changes mode, period, sample and encoding until the next boot; the base
    # URL, data format id and auth method are provisioning data in NVM (PROV, METRICS CONFIG).
    metrics_mode: str = "off"  # off | direct (HTTP POST to <url>/dd) | bridge (METRICS EXPORT/IMPORT)
    metrics_period_s: float = 3600.0  # a session every period (seconds of the MCU's tick)
    metrics_sample_s: int = 60  # a historical row every sample_s; also the data format's interval
    metrics_encoding: str = "json"  # json | cbor
    metrics_buffer_rows: int = 256  # rows held in RAM, the request in flight included
    metrics_request_rows: int = 64  # rows per request at most
    metrics_reply_timeout_s: float = 10.0  # direct mode: no reply within this is a failed session

    def __post_init__(self) -> None:
        object.__setattr__(self, "faults", frozenset(validate(self.faults)))  # names -> Fault; unknown: ValueError
        object.__setattr__(self, "hide_capabilities", validate_hidden(self.hide_capabilities))
        if not (math.isfinite(self.lockout_unit_s) and self.lockout_unit_s > 0):
            raise ValueError(f"lockout_unit_s: got {self.lockout_unit_s!r}; expected seconds > 0")
        self.metrics_settings()  # ValueError for a bad combination, at build time
        hidden = self.hide_capabilities
        if self.metrics_mode != "off" and "metrics_report" in hidden:
            raise ValueError(f"hide_capabilities: 'metrics_report' hidden, but metrics_mode is "
                             f"{self.metrics_mode!r}: a build that reports by itself has it")
        if self.metrics_mode == "bridge" and "metrics_bridge" in hidden:
            raise ValueError("hide_capabilities: 'metrics_bridge' hidden, but metrics_mode is 'bridge', "
                             "which sends its requests through METRICS EXPORT/IMPORT")

    def has(self, capability: str) -> bool:
        """Whether the build was made with this capability (not hidden)."""
        return capability not in self.hide_capabilities

    def lockout_s(self, streak: int) -> int:
        """Seconds of token-entry lockout after the streak-th invalid token in a row (0: free)."""
        if streak <= self.lockout_free_errors:
            return 0
        units = min(2 ** (streak - self.lockout_free_errors), self.lockout_max_units)
        return math.ceil(units * self.lockout_unit_s)

    def metrics_settings(self) -> MetricsSettings:
        return MetricsSettings(
            mode=self.metrics_mode,
            period_s=self.metrics_period_s,
            sample_s=self.metrics_sample_s,
            encoding=self.metrics_encoding,
            buffer_rows=self.metrics_buffer_rows,
            request_rows=self.metrics_request_rows,
            reply_timeout_s=self.metrics_reply_timeout_s,
        )


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
    firmware_version = FIRMWARE_VERSION

    def __init__(self, store: RecordStore, rtc: Rtc, config: FirmwareConfig, reset_reason: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
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
        self.credit: UptimeCredit | None = None  # credit_runs_on_uptime: the credit's countdown
        if Fault.CREDIT_RUNS_ON_UPTIME in self.faults:
            self.credit = UptimeCredit(rtc, clock, loaded.state.active_until)
            self._refresh_credit()
        # Metrics sessions (RAM: rows and the request in flight are lost with the supply)
        self.metrics = MetricsSession(FirmwareMetricsPort(self), config.metrics_settings(),
                                      device_format(config.metrics_sample_s), clock, faults=self.faults)

    # -- boot ---------------------------------------------------------------------------------
    def _load(self) -> LoadResult:
        if Fault.TORN_WRITE_CORRUPTS_STATE in self.faults:  # one copy, CRC checked: torn = lost
            return self.store.load_single(check_crc=True)
        if Fault.STATE_NOT_AB_CRC in self.faults:  # one copy, no CRC: torn bytes taken as the state
            return self.store.load_single(check_crc=False)
        return self.store.load()

    def banner(self) -> str:
        return (
            f"! BOOT model={MODEL} fw={FIRMWARE_VERSION} proto={self._proto()} "
            f"reset={self.reset_reason} nvm={self.boot_status}"
        )

    def _proto(self) -> str:
        return "0.9" if Fault.WRONG_PROTOCOL_MAJOR in self.faults else PROTOCOL_VERSION

    def capabilities(self) -> list[str]:
        caps = ["token", "status", "rtc", "rtc_set", "nvm", "factory_reset", "metrics_bridge"]
        if self.config.rtc_subsecond:
            caps.insert(3, "rtc_subsecond")
        if self.config.extended_tokens:
            caps.append("extended_tokens")
        if self.config.metrics_mode != "off":
            caps.append("metrics_report")
        return [c for c in caps if self.config.has(c)]

    def _offers(self, capability: str) -> bool:
        return capability in self.capabilities()

    # -- main loop ----------------------------------------------------------------------------
    def tick(self) -> list[str]:
        """Background work between requests (Metrics sampling and sessions), run by the board on
        its thread; the unsolicited lines to send. PowerLost from an NVM write propagates."""
        if not self.state.provisioned:
            return []
        self._refresh_credit()
        return self.metrics.tick()

    def _refresh_credit(self) -> None:
        """credit_runs_on_uptime: the credit end is RTC now + the uptime countdown (RAM only)."""
        if self.credit is not None and self.state.provisioned:
            self.credit.tick()
            self.state.active_until = self.credit.end()

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
            missing = missing_command(words, self.config.hide_capabilities)
            if missing:  # a build without the capability does not have the command
                raise CommandError(404, f"unknown command '{missing}'")
            limit = MAX_IMPORT_LINE if name == "METRICS" else MAX_LINE
            if len(line) > limit:
                raise CommandError(400, f"line longer than {limit} bytes")
            self._refresh_credit()
            return handler(words[1:])
        except CommandError as e:
            return Reply(f"ERR {e.code} {e.reason}")

    def _persist(self) -> None:
        saved = replace(self.state)
        if Fault.COUNT_NOT_PERSISTED in self.faults:
            saved.last_count = self._nvm_at_boot.last_count
            saved.used_mask = self._nvm_at_boot.used_mask
        if Fault.USED_COUNTS_NOT_PERSISTED in self.faults:  # the count is stored, the mask is not
            saved.used_mask = self._nvm_at_boot.used_mask
        if Fault.LOCKOUT_NOT_PERSISTED in self.faults:  # streak and lockout kept in RAM only
            saved.invalid_streak = self._nvm_at_boot.invalid_streak
            saved.locked_until = self._nvm_at_boot.locked_until
        if Fault.METRICS_COUNTER_NOT_PERSISTED in self.faults:  # the request counter lives in RAM
            saved.metrics_rc = self._nvm_at_boot.metrics_rc
        if Fault.PROVISIONING_NOT_PERSISTED in self.faults:
            for field in ("provisioned", "serial", "key_hex", "starting_code", "time_divider", "restricted"):
                setattr(saved, field, getattr(self._nvm_at_boot, field))
        if {Fault.TORN_WRITE_CORRUPTS_STATE, Fault.STATE_NOT_AB_CRC} & self.faults:
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
        serial = kv["sn"][:8] if Fault.SERIAL_TRUNCATED in self.faults else kv["sn"]
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
        if self.credit is not None:
            self.credit.set_end(0)
        self._persist()
        extra = f" key={self.state.key_hex}" if Fault.KEY_ECHOED in self.faults else ""
        return Reply(f"OK sn={self.state.serial}{extra}")

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
        delay = SLOW_DECODE_S_PER_STEP * self._decode_steps if Fault.SLOW_DECODE in self.faults else 0.0
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
        if Fault.LEADING_ZERO_DROPPED in self.faults and code.startswith("0"):
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
            divider = 1 if Fault.TIME_DIVIDER_IGNORED in self.faults else st.time_divider
            active_until, disabled = apply_time(
                result.kind, result.value, now, st.active_until, st.payg_disabled, divider, faults=self.faults
            )
            if Fault.SET_DOES_NOT_RELOCK in self.faults and result.kind is TokenKind.SET_TIME:
                disabled = st.payg_disabled  # the expiry is set, the PAYG-disabled flag left alone
            if Fault.ADD_RELOCKS in self.faults and result.kind is TokenKind.ADD_TIME:
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
            return Reply(f"OK t={t:.3f}" if self._offers("rtc_subsecond") else f"OK t={int(t)}")
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
        """METRICS FORMAT | CONFIG | STATUS | REPORT | EXPORT | IMPORT (docs/protocol.md "Metrics
        bridge" and "Metrics sessions"). With metrics off, EXPORT and IMPORT keep protocol 1.0's
        minimal bridge (below); otherwise they carry the session's real request and reply."""
        sub = args[0] if args else ""
        if sub == "FORMAT" and len(args) == 1:  # compiled in: no provisioning needed
            fmt = compact_json(self.metrics.format).encode()
            return Reply(f"OK id={self.state.data_format_id} interval={self.config.metrics_sample_s} "
                         f"b64={base64.b64encode(fmt).decode()}")
        self._require_provisioned()
        if sub == "CONFIG":
            return self._metrics_config(args[1:])
        if sub == "STATUS" and len(args) == 1:
            fields = {**self.metrics.status(), "rc": self.state.metrics_rc}
            return Reply("OK " + " ".join(f"{k}={v}" for k, v in fields.items()))
        if sub == "REPORT" and len(args) == 1:
            if self.metrics.settings.mode == "off":
                raise CommandError(409, "metrics are off (METRICS CONFIG mode=direct|bridge)")
            self.metrics.report_now()
            return Reply("OK")
        if self.metrics.settings.mode == "off":
            return self._metrics_minimal(args)
        if args == ["EXPORT"]:
            inf, wait_s = self.metrics.export()
            req = inf.request
            return Reply(f"OK ct={req.content_type} rc={req.rc} b64={base64.b64encode(req.body).decode()}",
                         delay_s=wait_s)
        if len(args) in (2, 3) and args[0] == "IMPORT" and args[1].startswith("b64="):
            kv = _parse_kv(args[2:])
            if set(kv) - {"ct"}:
                raise CommandError(400, "usage: METRICS IMPORT b64=<reply> [ct=<content type>]")
            try:
                body = base64.b64decode(args[1][4:], validate=True)
            except (binascii.Error, ValueError):
                raise CommandError(400, "IMPORT b64= is not base64") from None
            try:
                done = self.metrics.import_reply(body, kv.get("ct"))
            except NothingPending:
                raise CommandError(409, "no exported request awaits a reply") from None
            except ReplyRefused as e:
                raise CommandError(422, f"reply refused: {e.reason}: {e.detail}") from None
            return Reply(f"OK tokens={done.tokens_accepted}/{done.tokens_received} rc={done.rc} rows={done.rows}")
        raise CommandError(400, "usage: METRICS EXPORT | METRICS IMPORT b64=<reply> | METRICS CONFIG ... | "
                           "METRICS STATUS | METRICS REPORT | METRICS FORMAT")

    def _metrics_config(self, args: list[str]) -> Reply:
        """METRICS CONFIG [mode=] [period=] [sample=] [enc=] [url=] [df=] [auth=]: url, df and
        auth are written to NVM (as PROV's); the others last until the next boot."""
        kv = _parse_kv(args)
        unknown = set(kv) - {"mode", "period", "sample", "enc", "url", "df", "auth"}
        if unknown:
            raise CommandError(400, f"unknown argument {sorted(unknown)[0]}=")
        settings = self.metrics.settings
        changes: dict[str, Any] = {}
        if "mode" in kv:
            changes["mode"] = kv["mode"]
        if "period" in kv:
            if not re.fullmatch(r"[0-9]{1,7}(\.[0-9]{1,3})?", kv["period"]):
                raise CommandError(400, "period= must be seconds, e.g. 3600 or 0.5")
            changes["period_s"] = float(kv["period"])
        if "sample" in kv:
            changes["sample_s"] = _int_arg(kv, "sample", 1, 86400)
        if "enc" in kv:
            changes["encoding"] = kv["enc"]
        try:
            settings = replace(settings, **changes)
        except ValueError as e:
            raise CommandError(400, str(e)) from None
        state = self.state
        if "url" in kv and kv["url"] and not valid_base_url(kv["url"]):
            raise CommandError(400, "url= must be http(s)://host[:port][/path], at most 200 characters")
        auth = kv.get("auth", state.auth)
        if auth not in _AUTH:
            raise CommandError(400, f"auth= must be one of {','.join(sorted(_AUTH))}")
        new_state = replace(state, metrics_url=kv.get("url", state.metrics_url),
                            data_format_id=_int_arg(kv, "df", 0, 2**31 - 1, default=state.data_format_id),
                            auth=auth)
        if new_state != state:
            self.state = new_state
            self._persist()
        self.metrics.configure(settings)
        st = self.state
        url = st.metrics_url if valid_base_url(st.metrics_url) else ("-" if not st.metrics_url else "?")
        return Reply(f"OK mode={settings.mode} period={settings.period_s:g} sample={settings.sample_s} "
                     f"enc={settings.encoding} auth={st.auth} df={st.data_format_id} url={url}")

    def _metrics_minimal(self, args: list[str]) -> Reply:
        """Metrics off: protocol 1.0's minimal bridge. EXPORT gives a simple-form request with the
        token count only (no format, time or signature: nothing is configured), rc incremented
        and stored; IMPORT applies a reply's tkl tokens, whatever else it holds."""
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
