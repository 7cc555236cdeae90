"""The rig as the bench uses it: one test station (UART, PSU, DUT profile, local server,
simulator) in frozen typed dataclasses, made from a rig file by bench/rig/load.py. Device keys are
held as `Secret` and never appear in a repr or `describe()`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from bench.secret import MASK, Secret, url_password

# Defaults that differ between the virtual rig and a real one (rig file leaves the key out):
# psu.profile: the simulated PSU (with its NVM-write trigger), or the generic Keysight dialect;
# link.boot_timeout_s: the simulated device boots in a few ms, a real one may take seconds.
DEFAULT_PSU_PROFILE = {True: "paygo-sim", False: "keysight-e36"}
DEFAULT_BOOT_TIMEOUT_S = {True: 2.0, False: 10.0}
# psu.min_off_s: a real DUT's capacitors hold it up for a while after the rail reads off. The
# simulated rail falls below the 0.5 V off threshold 0.038 s after the switch-off (sim.psu_decay_s
# 0.04 from 12 V) and the device is held in reset below 3 V from 0.03 s, however briefly (its
# brown-out detector latches the lowest the rail has been, bench/sim/board.py): 0.06 s is past the
# rail's fall and one 20 ms poll, so the cycle's hold-off step still acts and the off-time check
# still has a minimum to hold the bench to. Each power cycle of the suite pays it (about 40 a run).
DEFAULT_MIN_OFF_S = {True: 0.06, False: 0.5}
# dut.rtc_drift_observe_s / _max_observe_s: the simulated RTC drifts by hundreds of ppm, which a
# few seconds resolve; a real crystal's few ppm take minutes (docs/drift.md).
DEFAULT_DRIFT_OBSERVE_S = {True: 4.0, False: 600.0}
DEFAULT_DRIFT_MAX_OBSERVE_S = {True: 45.0, False: 1800.0}
# dut.rtc_off_test_s: the timekeeping tests must tell a clock that stopped (or a credit that
# counted only while powered) from one that ran on. Such a clock loses the whole time its device
# was unpowered, and the tests allow 1 s (the whole-second readout) + the rollover's bracket
# (at most 0.25 s) + half a round trip + 500 ppm: so the device must be unpowered for clearly more
# than 1.3 s. A real DUT's capacitors hold it up for a while after the rail reads off: 2 s there,
# on the real clock. The virtual rig's simulated PSU lets the time pass at once once the device is
# down (SIM:TIME:SKIP, as for dut.unpowered_long_s), so there it costs nothing and is 5 s: a stopped
# clock is 3.5 s beyond the tolerance however loaded the host.
DEFAULT_RTC_OFF_TEST_S = {True: 5.0, False: 2.0}
# dut.unpowered_long_s: the long unpowered interval, far beyond every credit tolerance (docs/tokens.md
# "Clock and credit"): a clock whose backup lasts only minutes (a supercapacitor), or credit that
# moves only after a long off time, passes the short cycles. A real rig waits it on the real
# clock (5 minutes); the virtual rig's simulated PSU lets it pass at once (SIM:TIME:SKIP), so
# there it is an hour of the simulated world's time.
DEFAULT_UNPOWERED_LONG_S = {True: 3600.0, False: 300.0}
# dut.lockout_wait_budget_s: how long, in all, a run may wait out lockouts on the real clock when
# the DUT's RTC cannot be set forward (no `rtc_set`): a real rig climbs the schedule for half an
# hour; the virtual rig's test builds lock for seconds (dut.lockout_unit_s).
DEFAULT_LOCKOUT_WAIT_BUDGET_S = {True: 60.0, False: 1800.0}
VIRTUAL = "virtual"
# dut.extended_998_999: what an extended token's 998/999 mean, the manufacturer's choice
# (docs/tokens.md "Extended tokens"): DISABLE_PAYG/COUNTER_SYNC as in a standard token, or time
# values like any other (openpaygo 0.6.3 decodes them as SET_TIME at an odd count).
EXTENDED_998_999 = ("disable_sync", "time")
SECTIONS = ("station", "link", "psu", "dut", "server", "sim", "labgrid")  # the rig file's tables
LABGRID = "labgrid"  # link.port / psu.resource: found through the rig's labgrid place
# OpenPAYGO Metrics payload auth methods (docs/metrics.md "Authentication"); "none" is not one a bench
# qualifies a device with.
METRICS_AUTH_METHODS = ("sa", "ta", "ca", "da", "ra")
RIG_ENV_VAR = "PAYGO_BENCH_RIG"
# The public test device of the OpenPAYGO quick test (docs/tokens.md "Quick test"): fine to ship in source.
VIRTUAL_DUT_SERIAL = "SIM000001"
VIRTUAL_DUT_KEY = "a29ab82edc5fbbc41ec9530f6dac86b1"
VIRTUAL_DUT_STARTING_CODE = 123456789
# pyserial's standard rates from 300 up.
STANDARD_BAUDS = (
    300,
    600,
    1200,
    1800,
    2400,
    4800,
    9600,
    19200,
    38400,
    57600,
    115200,
    230400,
    460800,
    500000,
    576000,
    921600,
    1000000,
    1152000,
    1500000,
    2000000,
    2500000,
    3000000,
    3500000,
    4000000,
)


class FileMistake(Exception):
    """A mistake in a file the bench reads, as one line: "<file>: <where>: <what was wrong>" (no
    <where> for the file as a whole); the parts are kept so a caller can re-word it."""

    def __init__(self, path: Path | str, where: str, message: str) -> None:
        self.path, self.where, self.message = str(path), where, message
        super().__init__(f"{self.path}: {where}: {message}" if where else f"{self.path}: {message}")


class RigError(FileMistake):
    """A rig file mistake, as one line: "<file>: <key>: <what was wrong>; expected <what>"."""

    @property
    def key(self) -> str:
        """The dotted rig-file key (`where`)."""
        return self.where


@dataclass(frozen=True)
class StationConfig:
    id: str
    location: str
    ui_host: str = "127.0.0.1"  # where `paygo-bench run --ui` serves the live page
    ui_psu_poll_s: float = 1.0  # how often the live page's PSU reading is taken (0: never)
    results_db: Secret | None = None  # the results database's URL (None: reports/history.sqlite)


@dataclass(frozen=True)
class LinkConfig:
    port: str
    baud: int
    reply_timeout_s: float
    boot_timeout_s: float


@dataclass(frozen=True)
class PsuConfig:
    resource: str
    profile: str
    channel: int
    voltage: float
    current_limit: float
    off_threshold_v: float
    min_off_s: float
    settle_timeout_s: float
    safe_state: str
    timeout_s: float


@dataclass(frozen=True)
class DutProfile:
    adapter: str
    serial_number: str
    secret_key: Secret
    starting_code: int
    token_count: int
    time_divider: int
    restricted_digits: bool
    extended_tokens: bool
    extended_only: bool  # the DUT takes only extended tokens (a standard-length code is invalid)
    extended_998_999: str  # what an extended 998/999 is: "disable_sync" (as standard) or "time"
    sync_lowers_count: bool  # a counter-sync below the count lowers it (False: keeps the higher one)
    lockout_free_errors: int  # lockout schedule (docs/tokens.md "Brute-force lockout"): free errors,
    lockout_first_minutes: int  # the first lock, doubling per further error,
    lockout_max_minutes: int  # up to this cap,
    lockout_max_streak: int  # with the error count capped here (reference firmware: 2, 2, 512, 11)
    lockout_unit_s: float  # the schedule's "minute" in seconds (60; a test build may shorten it)
    lockout_wait_budget_s: float  # real-clock lockout waiting a run may spend (no rtc_set)
    lockout_persists: bool  # the invalid streak and the lockout end survive a power loss (requirements: yes)
    rtc_off_test_s: float  # how long the timekeeping test holds the DUT unpowered
    unpowered_long_s: float  # the long-unpowered test's off time (skipped at once where the PSU can)
    power_cut_cycles: int  # power cuts the power-cut test makes
    power_cut_off_s: float  # how long each of them keeps the supply off once the rail is down
    walk_steps: int  # the random walk's steps (test_random_walk.py)
    walk_power_cycles: int  # the most power cycles it makes
    walk_shrink_s: float  # how long it may spend shrinking a failing walk on the DUT
    rtc_drift_limit_ppm: float  # the drift test's limit, |drift| <= this (OpenPAYGO: ~6 h/year)
    rtc_drift_observe_s: float  # how long the drift test polls the RTC first,
    rtc_drift_max_observe_s: float  # and how long in all when it must measure longer
    metrics_auth: str  # the OpenPAYGO Metrics payload auth the bench configures (sa|ta|ca|da|ra)
    metrics_period_s: float  # the product's Metrics session period (the data budget's sessions a month)
    metrics_budget_bytes_per_month: int  # the data budget's limit: bytes on the wire a month
    hardware_model: str
    firmware_version: str
    capabilities: frozenset[str]
    spec: Path | None = None  # the product's test spec (docs/spec.md); None: bench/specs/<adapter>.toml
    suite: str | None = None  # the suite profile this product is qualified against (None: "full")
    ledger: Path | None = None  # the device ledger (SQLite); None: the bench's default place


@dataclass(frozen=True)
class ServerConfig:
    host: str
    port: int
    base_path: str
    # The device tests' Metrics server (fixtures/metrics_server.py): HTTPS with this certificate
    # chain and key (PEM) when both are given; a JWT secret (from a file or an environment
    # variable) makes it require `Authorization: JWT` on every request
    cert_file: str = ""
    key_file: str = ""
    jwt_secret_file: str = ""
    jwt_secret_env: str = ""
    jwt_secret: Secret | None = None


@dataclass(frozen=True)
class LabgridConfig:
    """The labgrid place the station is (bench/station/labgrid_place.py); place "" = none."""

    coordinator: str = "127.0.0.1:20408"
    place: str = ""
    psu_tag: str = "psu_visa"
    client: str = ""  # labgrid-client's path; "": beside the bench's Python, else on PATH


@dataclass(frozen=True)
class SimConfig:
    faults: tuple[str, ...]
    rtc_drift_ppm: float
    psu_decay_s: float
    link: str
    brownout_v: float
    nvm_page_write_ms: float
    rtc_subsecond: bool
    metrics_mode: str  # the simulated firmware build's Metrics sessions: off | direct | bridge
    metrics_period_s: float  # a session every this many seconds
    metrics_sample_s: int  # a historical row every this many seconds
    metrics_encoding: str  # json | cbor
    metrics_reply_timeout_s: float  # direct mode: a session with no reply within this failed
    hide_capabilities: tuple[str, ...]  # capabilities the simulated firmware is built without
    lockout_unit_s: float  # the simulated build's lockout "minute", s
    hdk_fixed: bool  # the HDK firmware with its documented defects fixed (hdk adapter only)
    # the simulated build's choices where the requirements leave one (docs/tokens.md "Where a
    # device may choose"): a sync below the count keeps the higher one; extended 996-999 are
    # time values; only extended tokens are taken
    sync_keeps_higher_count: bool
    extended_as_time: bool
    extended_only: bool
    state_dir: str  # where the simulated device keeps NVM and RTC between runs ("" = a fresh device)
    # how the bench reaches the simulated UART: directly (the simulator's pty or socket), or through
    # an RFC 2217 server on loopback serving it (bench/equipment/rfc2217_server.py), a remote rig's hop
    uart: str = "direct"
    # direct mode's provisioning (bench/sim/metrics/uplink.py): the CA its HTTPS client trusts
    # ("": the system's), its JWT secret from a file or an environment variable (none: no JWT)
    metrics_ca_file: str = ""
    metrics_jwt_secret_file: str = ""
    metrics_jwt_secret_env: str = ""
    metrics_jwt_secret: Secret | None = None


@dataclass(frozen=True)
class Rig:
    source: Path | None  # the rig file, None for the built-in virtual rig
    sha256: str  # of the rig file bytes, "" for the built-in rig: ties a report to the exact file
    station: StationConfig
    link: LinkConfig
    psu: PsuConfig
    dut: DutProfile
    server: ServerConfig
    sim: SimConfig
    labgrid: LabgridConfig = LabgridConfig()

    @property
    def virtual(self) -> bool:
        return self.link.port == VIRTUAL and self.psu.resource == VIRTUAL

    def secrets(self) -> tuple[Secret, ...]:
        """Every secret in the rig, for `bench.secret.mask` over logs and reports."""
        db = self.station.results_db
        extra = (self.server.jwt_secret, self.sim.metrics_jwt_secret, db, url_password(db.reveal()) if db else None)
        return (self.dut.secret_key, *(s for s in extra if s is not None))

    def describe(self) -> dict:
        """A JSON-safe summary for records and reports, secrets shown as ***."""

        def plain(obj: Any) -> dict:
            out = {}
            for f in fields(obj):
                v = getattr(obj, f.name)
                if isinstance(v, Secret):
                    v = MASK
                elif isinstance(v, (frozenset, set)):
                    v = sorted(v)
                elif isinstance(v, tuple):
                    v = list(v)
                out[f.name] = v
            return out

        return {
            "source": str(self.source) if self.source else None,
            "sha256": self.sha256,
            "virtual": self.virtual,
            **{name: plain(getattr(self, name)) for name in SECTIONS},
        }
