"""The firmware build: what the simulated device was compiled with (its defects, its
capabilities, the lockout schedule, its Metrics settings). The virtual rig builds one from the
simulator's options; tests build their own."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.sim.capabilities import validate_hidden
from bench.sim.faults import NO_FAULTS, Fault, FaultSet, validate
from bench.sim.metrics.settings import MetricsSettings
from bench.sim.metrics.uplink import Uplink


@dataclass(frozen=True)
class FirmwareConfig:
    faults: frozenset[Fault] = NO_FAULTS
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
    # Choices the token requirements leave to the device (docs/tokens.md "Where a device may
    # choose"), made the other way than the default build: a counter-sync below the count keeps
    # the higher count (the reference C); an extended token's 996-999 are time values (openpaygo
    # 0.6.3); only extended tokens are taken (a standard-length code is invalid).
    sync_keeps_higher_count: bool = False
    extended_as_time: bool = False
    extended_only: bool = False
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
    metrics_first_row_at_start: bool = False  # a row when logging starts (else one sample_s later)
    # direct mode's HTTPS trust anchor and JWT secret (bench/sim/metrics/uplink.py): provisioned
    # with the build, never over the UART
    metrics_uplink: Uplink = field(default_factory=Uplink)

    def __post_init__(self) -> None:
        object.__setattr__(self, "faults", FaultSet(validate(self.faults)))  # names -> Fault; unknown: ValueError
        object.__setattr__(self, "hide_capabilities", validate_hidden(self.hide_capabilities))
        if not (math.isfinite(self.lockout_unit_s) and self.lockout_unit_s > 0):
            raise ValueError(f"lockout_unit_s: got {self.lockout_unit_s!r}; expected seconds > 0")
        self.metrics_settings()  # ValueError for a bad combination, at build time
        if self.extended_only and not (self.extended_tokens and self.has("extended_tokens")):
            raise ValueError("extended_only: a build that takes only extended tokens needs extended_tokens")
        hidden = self.hide_capabilities
        if self.metrics_mode != "off" and "metrics_report" in hidden:
            raise ValueError(
                f"hide_capabilities: 'metrics_report' hidden, but metrics_mode is "
                f"{self.metrics_mode!r}: a build that reports by itself has it"
            )
        if self.metrics_mode == "bridge" and "metrics_bridge" in hidden:
            raise ValueError(
                "hide_capabilities: 'metrics_bridge' hidden, but metrics_mode is 'bridge', "
                "which sends its requests through METRICS EXPORT/IMPORT"
            )

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
            first_row_at_start=self.metrics_first_row_at_start,
        )
