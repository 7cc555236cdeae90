"""The simulated device's test firmware: the reference implementation of docs/protocol.md.

One instance is the device's RAM for one power-on period: it is built at boot from what the
NVM holds and thrown away when the supply collapses. Faults from the catalogue change what it
does in exactly the place the real defect would live.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from bench.sim.capabilities import missing_command
from bench.sim.faults import Fault
from bench.sim.firmware_config import FirmwareConfig
from bench.sim.metrics.commands import MetricsCommands
from bench.sim.metrics.device_format import device_format
from bench.sim.metrics.port import FirmwareMetricsPort
from bench.sim.metrics.session import MetricsSession
from bench.sim.nvstate import LoadResult, NvState, RecordStore
from bench.sim.persistence import Persistence
from bench.sim.provisioning import ProvisioningCommand
from bench.sim.request_line import MAX_IMPORT_LINE, MAX_LINE, CommandError, Reply
from bench.sim.rtc import Rtc
from bench.sim.token_entry import TokenEntry
from bench.sim.uptime_credit import REGISTER, UptimeCredit

PROTOCOL_VERSION = "1.0"
MODEL = "PAYGO-SIM"
FIRMWARE_VERSION = "1.0.0"
EXPIRY_TIMER_MAX_S = 0xFFFF  # expiry_timer_u16: the low-power timer's 16-bit count of seconds


class Firmware(Persistence, ProvisioningCommand, TokenEntry, MetricsCommands):
    firmware_version = FIRMWARE_VERSION

    def __init__(
        self,
        store: RecordStore,
        rtc: Rtc,
        config: FirmwareConfig,
        reset_reason: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.rtc = rtc
        self.config = config
        self.faults = config.faults
        self._clock = clock
        loaded: LoadResult = self._load()
        self.boot_status = loaded.status
        self.state: NvState = loaded.state
        self.reset_reason = reset_reason
        self._nvm_at_boot = replace(loaded.state)  # what a RAM-only defect falls back to
        self._writes_at_boot = store.eeprom.pages_written
        self._decode_steps = 0  # hash steps the last token's decode walked (slow_decode)
        self._clock = clock
        self.credit: UptimeCredit | None = None  # credit_runs_on_uptime: the credit's countdown
        resumes_timer = REGISTER in rtc.backup and Fault.EXPIRY_TIMER_U16 in self.faults
        if Fault.CREDIT_RUNS_ON_UPTIME in self.faults or resumes_timer:
            self.credit = UptimeCredit(rtc, clock, loaded.state.active_until)
            self._refresh_credit()
        # Metrics sessions (RAM: rows and the request in flight are lost with the supply)
        self.metrics = MetricsSession(
            FirmwareMetricsPort(self),
            config.metrics_settings(),
            device_format(config.metrics_sample_s),
            clock,
            faults=self.faults,
            uplink=config.metrics_uplink,
        )

    # -- boot ---------------------------------------------------------------------------------
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
        self._late_save()
        self._refresh_credit()
        return self.metrics.tick()

    def _refresh_credit(self) -> None:
        """credit_runs_on_uptime (and expiry_timer_u16 in its last 2^16 s): the credit end is RTC
        now + the uptime countdown."""
        if self.state.provisioned:
            left = self.state.active_until - self._now()
            if self._expiry_timer_due(left) and Fault.EXPIRY_TIMER_U16 in self.faults:
                self._expiry_timer(left)
        if self.credit is not None and self.state.provisioned:
            self.credit.tick()
            self.state.active_until = self.credit.end()

    def _expiry_timer_due(self, left: int) -> bool:
        """Whether _expiry_timer would arm or release the timer with `left` seconds of credit: the
        fault is asked about only then (bench/sim/hook_trace.py)."""
        return (self.credit is None and 0 < left <= EXPIRY_TIMER_MAX_S) or (
            self.credit is not None and left > EXPIRY_TIMER_MAX_S
        )

    def _expiry_timer(self, left: int) -> None:
        """expiry_timer_u16: the last 65535 s of credit go to the 16-bit low-power timer (armed
        once they fit, released when a token gives more)."""
        if self.credit is None and 0 < left <= EXPIRY_TIMER_MAX_S:
            self.rtc.backup.pop(REGISTER, None)
            self.credit = UptimeCredit(self.rtc, self._clock, self.state.active_until)
        elif self.credit is not None and left > EXPIRY_TIMER_MAX_S:
            self.credit = None
            self.rtc.backup.pop(REGISTER, None)

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
        kid = ""
        if Fault.KEY_ECHOED_DECIMAL in self.faults and self.state.provisioned:
            kid = f" kid={int.from_bytes(bytes.fromhex(self.state.key_hex), 'little')}"
        return Reply(
            f"OK model={MODEL} fw={FIRMWARE_VERSION} proto={self._proto()} sn={sn} "
            f"caps={','.join(self.capabilities())}{kid}"
        )

    def _status(self, args: list[str]) -> Reply:
        self._require_provisioned()
        st = self.state
        now = self._now()
        left = st.active_until - now
        as_int32 = (left + 2**31) % 2**32 - 2**31
        if as_int32 != left and Fault.CREDIT_COMPARE_INT32 in self.faults:  # (int32_t)(end - now)
            left = as_int32  # 2^31 s and more wrap negative
        if st.payg_disabled:
            payg, left = "disabled", 0
        elif left > 0:
            payg = "active"
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
