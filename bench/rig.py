"""The rig file: one test station (UART, PSU, DUT identity, local server, simulator) as TOML.

A rig file comes from outside, so it is parsed once, here, into frozen typed dataclasses; every
mistake is a `RigError` naming the file, the dotted key, what was found and what was expected, on
one line. Device keys are held as `Secret` and never appear in an error, a repr or `describe()`.
The schema below (`_SCHEMA`) is the single source of truth for keys, types, ranges and defaults;
docs/rig.md describes it for people.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import math
import os
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from collections.abc import Callable, Mapping
from typing import Any

from bench.secret import MASK, Secret

KNOWN_PSU_PROFILES = (
    "generic-scpi", "keysight-e36", "rigol-dp800", "siglent-spd3303x", "rs-hmp", "aimtti-cpx",
    "paygo-sim",
)
# Defaults that differ between the virtual rig and a real one (rig file leaves the key out):
# psu.profile: the simulated PSU (with its NVM-write trigger), or the generic Keysight dialect;
# link.boot_timeout_s: the simulated device boots in about 10 ms, a real one may take seconds.
DEFAULT_PSU_PROFILE = {True: "paygo-sim", False: "keysight-e36"}
DEFAULT_BOOT_TIMEOUT_S = {True: 2.0, False: 10.0}
# dut.rtc_drift_observe_s / _max_observe_s: the simulated RTC drifts by hundreds of ppm, which a
# few seconds resolve; a real crystal's few ppm take minutes (docs/drift.md).
DEFAULT_DRIFT_OBSERVE_S = {True: 6.0, False: 600.0}
DEFAULT_DRIFT_MAX_OBSERVE_S = {True: 45.0, False: 1800.0}
# dut.lockout_wait_budget_s: how long, in all, a run may wait out lockouts on the real clock when
# the DUT's RTC cannot be set forward (no `rtc_set`): a real rig climbs the schedule for half an
# hour; the virtual rig's test builds lock for seconds (dut.lockout_unit_s).
DEFAULT_LOCKOUT_WAIT_BUDGET_S = {True: 60.0, False: 1800.0}
VIRTUAL = "virtual"
# OpenPAYGO Metrics payload auth methods (openpaygo.md §6 Security); "none" is not one a bench
# qualifies a device with.
METRICS_AUTH_METHODS = ("sa", "ta", "ca", "da", "ra")
RIG_ENV_VAR = "PAYGO_BENCH_RIG"
DEVICE_LIST_COLUMNS = (
    "Serial Number", "Starting Code", "Key", "Count", "Time Divider",
    "Restricted Digit Mode", "Hardware Model", "Version", "Test Code",
)
# The public test device of the OpenPAYGO quick test (openpaygo.md §3a): fine to ship in source.
VIRTUAL_DUT_SERIAL = "SIM000001"
VIRTUAL_DUT_KEY = "a29ab82edc5fbbc41ec9530f6dac86b1"
VIRTUAL_DUT_STARTING_CODE = 123456789
# pyserial's standard rates from 300 up.
STANDARD_BAUDS = (300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400,
                  460800, 500000, 576000, 921600, 1000000, 1152000, 1500000, 2000000, 2500000,
                  3000000, 3500000, 4000000)


class RigError(Exception):
    """A rig file mistake, as one line: "<file>: <key>: <what was wrong>; expected <what>"."""

    def __init__(self, path: str, key: str, message: str) -> None:
        self.path, self.key, self.message = str(path), key, message
        super().__init__(f"{self.path}: {key}: {message}" if key else f"{self.path}: {message}")


@dataclass(frozen=True)
class StationConfig:
    id: str
    location: str


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
    lockout_free_errors: int  # brute-force lockout schedule (openpaygo.md §2): errors with no wait,
    lockout_first_minutes: int  # the first lock, doubling per further error,
    lockout_max_minutes: int  # up to this cap,
    lockout_max_streak: int  # with the error count capped here (reference firmware: 2, 2, 512, 11)
    lockout_unit_s: float  # the schedule's "minute" in seconds (60; a test build may shorten it)
    lockout_wait_budget_s: float  # real-clock lockout waiting a run may spend (no rtc_set)
    rtc_off_test_s: float  # how long the timekeeping test holds the DUT unpowered
    power_cut_cycles: int  # power cuts the power-cut test makes
    power_cut_off_s: float  # how long each of them keeps the supply off once the rail is down
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
    state_dir: str  # where the simulated device keeps NVM and RTC between runs ("" = a fresh device)


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

    @property
    def virtual(self) -> bool:
        return self.link.port == VIRTUAL and self.psu.resource == VIRTUAL

    def secrets(self) -> tuple[Secret, ...]:
        """Every secret in the rig, for `bench.secret.mask` over logs and reports."""
        return (self.dut.secret_key,)

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
            **{name: plain(getattr(self, name)) for name in _SECTIONS},
        }


# ---------------------------------------------------------------------------------------------
# Schema: one _Field per key. `check` sees an already type-converted value (each item of a list).

@dataclass(frozen=True)
class _Field:
    kind: str  # "str" | "int" | "float" | "bool" | "strlist" | "secret"
    default: Any  # None: no default (required, or filled from elsewhere)
    check: Callable[[Any], bool]
    expected: str


def _int(default: int | None, lo: int, hi: int, what: str = "an integer") -> _Field:
    return _Field("int", default, lambda v: lo <= v <= hi, f"{what} {lo}..{hi}")


def _float(default: float, check: Callable[[float], bool], expected: str) -> _Field:
    return _Field("float", default, check, expected)


def _str(default: str | None, pattern: str, expected: str) -> _Field:
    rx = re.compile(pattern)
    return _Field("str", default, lambda v: rx.fullmatch(v) is not None, expected)


def _choice(default: str, options: tuple[str, ...]) -> _Field:
    return _Field("str", default, lambda v: v in options, "one of " + ", ".join(f'"{o}"' for o in options))


def _bool(default: bool | None) -> _Field:
    return _Field("bool", default, lambda v: True, "true or false")


def _strlist(pattern: str, expected: str) -> _Field:
    """A list of strings; `check` applies to each item."""
    rx = re.compile(pattern)
    return _Field("strlist", (), lambda item: rx.fullmatch(item) is not None, expected)


def _any_str(default: str | None) -> _Field:
    return _Field("str", default, lambda v: "\n" not in v, "a single-line string")


_SERIAL_URL_SCHEMES = ("rfc2217", "socket", "loop", "spy", "alt", "hwgrep", "cp2110")
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s:/?\[\]]+):(\d{1,5})([/?]\S*)?")
_VISA = re.compile(r"(?:(?:TCPIP|USB|GPIB|VXI|PXI|VICP)\d*::\S+|ASRL\S+)", re.IGNORECASE)


def _is_serial_port(v: str) -> bool:
    """"virtual", a device path (/dev/ttyUSB0, COM3) or a pyserial URL (rfc2217://host:port)."""
    if not v or v != v.strip() or any(ord(c) < 32 for c in v):
        return False
    if "://" not in v:
        return True
    scheme, _, rest = v.partition("://")
    if scheme not in _SERIAL_URL_SCHEMES:
        return False
    if scheme in ("rfc2217", "socket"):
        m = _HOST_PORT.fullmatch(rest)
        return m is not None and 1 <= int(m.group(2)) <= 65535
    return True


_SCHEMA: dict[str, dict[str, _Field]] = {
    "station": {
        "id": _str(None, r"[A-Za-z0-9_.-]{1,64}", "1..64 characters of A-Z a-z 0-9 _ . -"),
        "location": _any_str(""),
    },
    "link": {
        "port": _Field("str", VIRTUAL, _is_serial_port,
                       'a serial device (/dev/ttyUSB0, /dev/serial/by-id/..., COM3), a pyserial URL '
                       '(rfc2217://host:port, socket://host:port) or "virtual"'),
        "baud": _Field("int", 115200, lambda v: v in STANDARD_BAUDS, "a standard baud rate 300..4000000"),
        "reply_timeout_s": _float(2.0, lambda v: v > 0, "seconds > 0"),
        "boot_timeout_s": _Field("float", None, lambda v: v > 0, "seconds > 0"),
    },
    "psu": {
        "resource": _Field("str", VIRTUAL, lambda v: v == VIRTUAL or _VISA.fullmatch(v) is not None,
                           'a VISA resource (TCPIP0::10.0.0.5::5025::SOCKET, USB0::...::INSTR, '
                           'ASRL/dev/ttyUSB1::INSTR) or "virtual"'),
        "profile": _Field("str", None, lambda v: v in KNOWN_PSU_PROFILES,
                          "one of " + ", ".join(f'"{o}"' for o in KNOWN_PSU_PROFILES)),
        "channel": _int(1, 1, 8),
        "voltage": _float(12.0, lambda v: 0 < v <= 60, "volts, 0 < v <= 60"),
        "current_limit": _float(1.0, lambda v: 0 < v <= 20, "amps, 0 < a <= 20"),
        "off_threshold_v": _float(0.5, lambda v: v >= 0, "volts >= 0 and below psu.voltage"),
        "min_off_s": _float(0.5, lambda v: v >= 0, "seconds >= 0"),
        "settle_timeout_s": _float(5.0, lambda v: v > 0, "seconds > 0"),
        "safe_state": _choice("off", ("off", "on", "unchanged")),
        "timeout_s": _float(2.0, lambda v: v > 0, "seconds > 0"),
    },
    "dut": {
        "adapter": _choice("reference", ("reference", "hdk")),
        "serial_number": _str(None, r"[A-Za-z0-9_-]{1,32}", "1..32 characters of A-Z a-z 0-9 _ -"),
        "secret_key": _Field("secret", None, lambda v: True, "32 hex characters"),
        "secret_key_env": _str(None, r"[A-Za-z_][A-Za-z0-9_]*", "an environment variable name"),
        "secret_key_file": _Field("str", None, lambda v: bool(v.strip()), "a file path"),
        "starting_code": _int(None, 0, 999_999_999),
        "token_count": _int(None, 0, 65535),
        "time_divider": _int(None, 1, 255),
        "restricted_digits": _bool(None),
        "extended_tokens": _bool(False),
        "lockout_free_errors": _int(2, 0, 100, "a number of errors"),
        "lockout_first_minutes": _int(2, 1, 10080, "minutes"),
        "lockout_max_minutes": _int(512, 1, 100000, "minutes"),
        "lockout_max_streak": _int(11, 1, 1000, "a number of errors"),
        "lockout_unit_s": _float(60.0, lambda v: 0 < v <= 3600, "seconds, 0 < s <= 3600"),
        "lockout_wait_budget_s": _Field("float", None, lambda v: 0 <= v <= 7 * 86400, "seconds, 0..604800"),
        "rtc_off_test_s": _float(2.0, lambda v: 0 < v <= 86400, "seconds, 0 < s <= 86400"),
        "power_cut_cycles": _int(200, 1, 1_000_000, "a number of power cuts"),
        "power_cut_off_s": _float(0.0, lambda v: 0 <= v <= 3600, "seconds, 0..3600"),
        "rtc_drift_limit_ppm": _float(685.0, lambda v: 0 < v <= 100000, "ppm, 0 < v <= 100000"),
        "rtc_drift_observe_s": _Field("float", None, lambda v: 1 <= v <= 86400, "seconds, 1..86400"),
        "rtc_drift_max_observe_s": _Field("float", None, lambda v: 1 <= v <= 86400,
                                          "seconds, 1..86400 and >= dut.rtc_drift_observe_s"),
        "metrics_auth": _choice("ra", METRICS_AUTH_METHODS),
        "metrics_period_s": _float(3600.0, lambda v: 1 <= v <= 31 * 86400, "seconds, 1..2678400"),
        "metrics_budget_bytes_per_month": _int(750_000, 1, 10**12, "bytes"),
        "hardware_model": _any_str(None),
        "firmware_version": _any_str(None),
        "capabilities": _strlist(r"[a-z0-9_]+", "a list of capability names matching [a-z0-9_]+"),
        "spec": _Field("str", None, lambda v: bool(v.strip()), "a test spec file path (TOML, docs/spec.md)"),
        "device_list": _Field("str", None, lambda v: bool(v.strip()), "a CSV file path"),
        "device_serial": _str(None, r"[A-Za-z0-9_-]{1,32}", "a Serial Number of the device list"),
        "suite": _str(None, r"[a-z0-9_-]{1,32}", "a suite profile name (docs/tests.md, Suites)"),
        "ledger": _Field("str", None, lambda v: bool(v.strip()), "a file path (SQLite)"),
    },
    "server": {
        "host": _str("127.0.0.1", r"[^\s/]+", "a host name or IP address"),
        "port": _int(0, 0, 65535, "a TCP port (0 = ephemeral)"),
        "base_path": _str("/", r"/\S*", 'a URL path starting with "/"'),
    },
    "sim": {
        "faults": _strlist(r"\S+", "a list of fault names"),
        "rtc_drift_ppm": _float(250.0, lambda v: -10000 <= v <= 10000, "ppm, -10000..10000"),
        "psu_decay_s": _float(0.3, lambda v: v >= 0, "seconds >= 0"),
        "link": _choice("auto", ("auto", "pty", "socket")),
        "brownout_v": _float(3.0, lambda v: v > 0, "volts > 0"),
        "nvm_page_write_ms": _float(1.0, lambda v: v >= 0, "milliseconds >= 0"),
        "rtc_subsecond": _bool(False),
        "metrics_mode": _choice("direct", ("off", "direct", "bridge")),
        "metrics_period_s": _float(1.0, lambda v: 0.05 <= v <= 604800, "seconds, 0.05..604800"),
        "metrics_sample_s": _int(1, 1, 86400, "whole seconds"),
        "metrics_encoding": _choice("json", ("json", "cbor")),
        "metrics_reply_timeout_s": _float(1.0, lambda v: 0.05 <= v <= 600, "seconds, 0.05..600"),
        "hide_capabilities": _strlist(r"[a-z0-9_]+", "a list of capability names matching [a-z0-9_]+"),
        "lockout_unit_s": _float(60.0, lambda v: 0 < v <= 3600, "seconds, 0 < s <= 3600"),
        "hdk_fixed": _bool(False),
        "state_dir": _any_str(""),
    },
}
_SECTIONS = tuple(_SCHEMA)
# The [dut] keys a device list can supply, and their values when neither it nor [dut] does. The
# identity keys default to the simulated device's; a real rig must give them.
_DUT_DEFAULTS = {
    "serial_number": VIRTUAL_DUT_SERIAL, "starting_code": VIRTUAL_DUT_STARTING_CODE,
    "secret_key": Secret(VIRTUAL_DUT_KEY, "dut.secret_key"), "token_count": 1, "time_divider": 1,
    "restricted_digits": False, "hardware_model": "", "firmware_version": "",
}
_IDENTITY = ("serial_number", "starting_code", "secret_key")


# ---------------------------------------------------------------------------------------------
# Reading values

_TOML_TYPE = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}
_HEXRUN = re.compile(r"[0-9A-Fa-f]{16,}")
_HEX32 = re.compile(r"[0-9A-Fa-f]{32}")


def _kind(value: Any) -> str:
    name = next((n for t, n in _TOML_TYPE.items() if isinstance(value, t)), type(value).__name__)
    return ("an " if name[0] in "aeiou" else "a ") + name


def _got(value: Any) -> str:
    """How a wrong value is shown: short, and never anything that might be a key."""
    if isinstance(value, (dict, list)):
        return _kind(value)
    if isinstance(value, str) and _HEXRUN.search(value):
        return f"{_kind(value)} of {len(value)} characters (not shown: it looks like a key)"
    shown = ("true" if value else "false") if isinstance(value, bool) else repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return f"{shown} ({_TOML_TYPE.get(type(value), type(value).__name__)})"


def _convert(fld: _Field, value: Any) -> Any:
    """The value as the field's Python type, or raise ValueError if its TOML type is wrong."""
    if fld.kind in ("str", "secret") and isinstance(value, str):
        return value
    if fld.kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if fld.kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isfinite(value):
            return float(value)
    if fld.kind == "bool" and isinstance(value, bool):
        return value
    if fld.kind == "strlist" and isinstance(value, list) and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise ValueError


def _field_value(where: str, key: str, fld: _Field, value: Any) -> Any:
    """Type-convert and range-check one value; RigError naming the key otherwise."""
    try:
        v = _convert(fld, value)
    except ValueError:
        got = _kind(value) if fld.kind == "secret" else _got(value)  # a bad key is still a key
        raise RigError(where, key, f"got {got}; expected {fld.expected}") from None
    if fld.kind == "secret":
        return _secret(where, key, v, "")
    if fld.kind == "strlist":
        bad = next((item for item in v if not fld.check(item)), None)
        if bad is not None:
            raise RigError(where, key, f"got {_got(bad)} in the list; expected {fld.expected}")
    elif not fld.check(v):
        raise RigError(where, key, f"got {_got(value)}; expected {fld.expected}")
    return v


def _secret(where: str, key: str, text: str, origin: str) -> Secret:
    """A device key: 32 hex characters. The error counts characters and never shows them."""
    text = text.strip()
    if not _HEX32.fullmatch(text):
        hexness = "" if all(c in "0123456789abcdefABCDEF" for c in text) else ", not all hex"
        raise RigError(where, key, f"{origin}not 32 hex characters (got {len(text)} characters{hexness}); "
                       "expected 32 hex characters (16 bytes)")
    return Secret(text.lower(), "dut.secret_key")


def _unknown(where: str, key: str, valid: tuple[str, ...] | list[str], what: str) -> RigError:
    near = difflib.get_close_matches(key.rpartition(".")[2], valid, n=1)
    hint = f" (did you mean {near[0]}?)" if near else ""
    return RigError(where, key, f"unknown {what}{hint}; expected one of {', '.join(valid)}")


def _read_section(where: str, doc: dict, name: str) -> dict[str, Any]:
    """The section's given keys, converted and checked (defaults are applied by the caller)."""
    table = doc.get(name, {})
    if not isinstance(table, dict):
        raise RigError(where, name, f"got {_got(table)}; expected a table [{name}]")
    schema = _SCHEMA[name]
    for key in table:
        if key not in schema:
            raise _unknown(where, f"{name}.{key}", list(schema), "key")
    return {key: _field_value(where, f"{name}.{key}", schema[key], table[key]) for key in table}


def _with_defaults(name: str, given: dict[str, Any]) -> dict[str, Any]:
    return {key: given.get(key, fld.default) for key, fld in _SCHEMA[name].items()}


# ---------------------------------------------------------------------------------------------
# The DUT's identity: [dut] keys, a key from env/file, or a row of an OpenPAYGO device list.

_KEY_SOURCES = ("secret_key", "secret_key_env", "secret_key_file")


def _key_from_sources(where: str, given: dict, base: Path, env: Mapping[str, str]) -> Secret | None:
    """The key from whichever one of secret_key / _env / _file was given, None if none was."""
    sources = [k for k in _KEY_SOURCES if k in given]
    if len(sources) > 1:
        raise RigError(where, "dut." + sources[1], f"given together with dut.{sources[0]}; "
                       "expected exactly one of secret_key, secret_key_env, secret_key_file")
    if not sources:
        return None
    if sources == ["secret_key"]:
        return given["secret_key"]
    if sources == ["secret_key_env"]:
        var = given["secret_key_env"]
        if var not in env:
            raise RigError(where, "dut.secret_key_env", f"environment variable {var} is not set; "
                           "expected it to hold the device key (32 hex characters)")
        return _secret(where, "dut.secret_key_env", env[var], f"environment variable {var}: ")
    file = _relative(base, given["secret_key_file"])
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = "not found" if isinstance(exc, FileNotFoundError) else f"unreadable ({type(exc).__name__})"
        raise RigError(where, "dut.secret_key_file", f"{file}: {why}; "
                       "expected a file holding the device key (32 hex characters)") from None
    return _secret(where, "dut.secret_key_file", text, f"{file}: ")


def _relative(base: Path, name: str) -> Path:
    path = Path(name).expanduser()
    return path if path.is_absolute() else base / path


def _device_list_row(where: str, given: dict, base: Path) -> dict[str, Any]:
    """The [dut] values given by the row of `device_list` for `device_serial` (blank cells left out)."""
    if "device_serial" not in given:
        raise RigError(where, "dut.device_serial", "missing; expected the Serial Number of the "
                       "device list row to use (required with dut.device_list)")
    file, serial = _relative(base, given["device_list"]), given["device_serial"]
    try:
        with file.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        why = "not found" if isinstance(exc, FileNotFoundError) else f"unreadable ({type(exc).__name__})"
        raise RigError(where, "dut.device_list",
                       f"{file}: {why}; expected an OpenPAYGO device-list CSV") from None
    header = [h.strip() for h in rows[0]] if rows else []
    if tuple(header) != DEVICE_LIST_COLUMNS:
        missing = [c for c in DEVICE_LIST_COLUMNS if c not in header]
        extra = [c for c in header if c not in DEVICE_LIST_COLUMNS]
        detail = "; ".join(filter(None, [missing and "missing " + ", ".join(missing),
                                         extra and "unexpected " + ", ".join(map(repr, extra))]))
        detail = detail or "wrong order"
        raise RigError(str(file), "header", f"wrong columns ({detail}); expected exactly "
                       + ",".join(DEVICE_LIST_COLUMNS))
    found = [(n, r) for n, r in enumerate(rows[1:], start=2) if r and r[0].strip() == serial]
    if len(found) != 1:
        what = "no row" if not found else f"{len(found)} rows (lines {', '.join(str(n) for n, _ in found)})"
        raise RigError(where, "dut.device_serial", f"{what} with Serial Number {_got(serial)} in {file}; "
                       "expected exactly one")
    line, row = found[0]
    if len(row) > len(DEVICE_LIST_COLUMNS):  # fewer is fine: missing trailing cells are blank
        raise RigError(str(file), f"line {line}",
                       f"got {len(row)} cells; expected {len(DEVICE_LIST_COLUMNS)}")
    row = row + [""] * (len(DEVICE_LIST_COLUMNS) - len(row))
    cell = dict(zip(DEVICE_LIST_COLUMNS, (c.strip() for c in row)))

    def number(column: str, key: str) -> int | None:
        text = cell[column]
        if not text:
            return None
        fld = _SCHEMA["dut"][key]
        if not text.isdigit() or not fld.check(int(text)):
            raise RigError(str(file), f"line {line}: {column}", f"got {_got(text)}; expected {fld.expected}")
        return int(text)

    restricted = cell["Restricted Digit Mode"]
    if restricted not in ("", "0", "1"):
        raise RigError(str(file), f"line {line}: Restricted Digit Mode",
                       f"got {_got(restricted)}; expected 0 or 1")
    values = {
        "serial_number": serial,
        "starting_code": number("Starting Code", "starting_code"),
        "secret_key": _secret(str(file), f"line {line}: Key", cell["Key"], "") if cell["Key"] else None,
        "token_count": number("Count", "token_count"),
        "time_divider": number("Time Divider", "time_divider"),
        "restricted_digits": {"": None, "0": False, "1": True}[restricted],
        "hardware_model": cell["Hardware Model"] or None,
        "firmware_version": cell["Version"] or None,
    }
    return {k: v for k, v in values.items() if v is not None}


def _dut_profile(where: str, given: dict, base: Path, env: Mapping[str, str], virtual: bool) -> DutProfile:
    """Merge [dut], a device-list row and (virtual rig only) the simulated device's identity."""
    values = _with_defaults("dut", given)
    key = _key_from_sources(where, given, base, env)
    row: dict[str, Any] = {}
    if "device_list" in given:
        row = _device_list_row(where, given, base)
        for name in row:  # a non-blank cell and a [dut] key for the same thing clash
            same = _KEY_SOURCES if name == "secret_key" else () if name == "serial_number" else (name,)
            clash = next((k for k in same if k in given), None)
            if clash:
                raise RigError(where, f"dut.{clash}", "also given by the device list row of "
                               "dut.device_serial; expected it in one place only")
        if "serial_number" in given and given["serial_number"] != row["serial_number"]:
            raise RigError(where, "dut.serial_number", f"got {_got(given['serial_number'])}, not "
                           "dut.device_serial; expected them equal, or serial_number left out")
    elif "device_serial" in given:
        raise RigError(where, "dut.device_serial", "given without dut.device_list; expected both or neither")
    values.update(row)
    if key is not None:
        values["secret_key"] = key
    for name, default in _DUT_DEFAULTS.items():
        if values[name] is not None:
            continue
        if name in _IDENTITY and not virtual:
            what = ("one of secret_key, secret_key_env, secret_key_file" if name == "secret_key"
                    else _SCHEMA["dut"][name].expected)
            raise RigError(where, f"dut.{name}", f"missing (a real DUT has no default identity); "
                           f"expected {what}, or dut.device_list")
        values[name] = default
    for name, default in (("rtc_drift_observe_s", DEFAULT_DRIFT_OBSERVE_S),
                          ("rtc_drift_max_observe_s", DEFAULT_DRIFT_MAX_OBSERVE_S),
                          ("lockout_wait_budget_s", DEFAULT_LOCKOUT_WAIT_BUDGET_S)):
        if values[name] is None:
            values[name] = default[virtual]
    if values["rtc_drift_max_observe_s"] < values["rtc_drift_observe_s"]:
        raise RigError(where, "dut.rtc_drift_max_observe_s", f"got {values['rtc_drift_max_observe_s']:g} "
                       f"with dut.rtc_drift_observe_s {values['rtc_drift_observe_s']:g}; "
                       "expected seconds >= dut.rtc_drift_observe_s")
    return DutProfile(
        adapter=values["adapter"], serial_number=values["serial_number"], secret_key=values["secret_key"],
        starting_code=values["starting_code"], token_count=values["token_count"],
        time_divider=values["time_divider"], restricted_digits=values["restricted_digits"],
        extended_tokens=values["extended_tokens"], hardware_model=values["hardware_model"],
        lockout_free_errors=values["lockout_free_errors"], lockout_first_minutes=values["lockout_first_minutes"],
        lockout_max_minutes=values["lockout_max_minutes"], lockout_max_streak=values["lockout_max_streak"],
        lockout_unit_s=values["lockout_unit_s"], lockout_wait_budget_s=values["lockout_wait_budget_s"],
        rtc_off_test_s=values["rtc_off_test_s"], power_cut_cycles=values["power_cut_cycles"],
        power_cut_off_s=values["power_cut_off_s"], rtc_drift_limit_ppm=values["rtc_drift_limit_ppm"],
        rtc_drift_observe_s=values["rtc_drift_observe_s"],
        rtc_drift_max_observe_s=values["rtc_drift_max_observe_s"],
        metrics_auth=values["metrics_auth"], metrics_period_s=values["metrics_period_s"],
        metrics_budget_bytes_per_month=values["metrics_budget_bytes_per_month"],
        firmware_version=values["firmware_version"], capabilities=frozenset(values["capabilities"]),
        spec=_relative(base, values["spec"]) if values.get("spec") else None,
        suite=values["suite"],
        ledger=_relative(base, values["ledger"]) if values.get("ledger") else None,
    )


# ---------------------------------------------------------------------------------------------
# Entry points

def _parse_toml(where: str, data: bytes) -> dict:
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RigError(where, f"byte {exc.start}", "not UTF-8; expected a UTF-8 TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        text = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)$", text)
        at = f"line {m.group(1)}, column {m.group(2)}" if m else "end of file"
        what = re.sub(r"\s*\(at [^)]*\)$", "", text)
        raise RigError(where, at, f"TOML syntax error: {what}") from None


def _build(where: str, doc: dict, base: Path, env: Mapping[str, str], source: Path | None,
           sha256: str) -> Rig:
    for name in doc:
        if name not in _SCHEMA:
            raise _unknown(where, name, _SECTIONS, "section")
    given = {name: _read_section(where, doc, name) for name in _SECTIONS}
    if "id" not in given["station"]:
        raise RigError(where, "station.id", f"missing; expected {_SCHEMA['station']['id'].expected}")
    link, psu, sim = (_with_defaults(n, given[n]) for n in ("link", "psu", "sim"))
    if (link["port"] == VIRTUAL) != (psu["resource"] == VIRTUAL):
        raise RigError(where, "link.port/psu.resource", f"got port {_got(link['port'])} and resource "
                       f"{_got(psu['resource'])}: mixing a virtual and a real instrument is not supported; "
                       'expected both "virtual" or both real')
    virtual = link["port"] == VIRTUAL
    if psu["profile"] is None:
        psu["profile"] = DEFAULT_PSU_PROFILE[virtual]
    if link["boot_timeout_s"] is None:
        link["boot_timeout_s"] = DEFAULT_BOOT_TIMEOUT_S[virtual]
    if not virtual and "sim" in doc:
        raise RigError(where, "sim", "given on a real rig; expected [sim] only on the virtual rig")
    if not psu["off_threshold_v"] < psu["voltage"]:
        raise RigError(where, "psu.off_threshold_v", f"got {psu['off_threshold_v']} with psu.voltage "
                       f"{psu['voltage']}; expected volts >= 0 and below psu.voltage")
    return Rig(
        source=source, sha256=sha256,
        station=StationConfig(**_with_defaults("station", given["station"])),
        link=LinkConfig(**link), psu=PsuConfig(**psu),
        dut=_dut_profile(where, given["dut"], base, env, virtual),
        server=ServerConfig(**_with_defaults("server", given["server"])),
        sim=SimConfig(**{**sim, "state_dir": str(_relative(base, sim["state_dir"])) if sim["state_dir"] else ""}),
    )


def load_rig(path: str | os.PathLike, env: Mapping[str, str] | None = None) -> Rig:
    """Read and validate a rig file; `env` (default os.environ) supplies dut.secret_key_env."""
    where = os.fspath(path)
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        why = "not found" if isinstance(exc, FileNotFoundError) else f"unreadable ({type(exc).__name__})"
        raise RigError(where, "", f"{why}; expected a rig file (TOML)") from None
    doc = _parse_toml(where, data)
    return _build(where, doc, file.resolve().parent, os.environ if env is None else env,
                  file.resolve(), hashlib.sha256(data).hexdigest())


def virtual_rig(**sim_overrides: Any) -> Rig:
    """The built-in virtual rig (no file), with [sim] keys overridden, e.g. faults=["count_not_persisted"]."""
    where = "virtual_rig()"
    for key in sim_overrides:
        if key not in _SCHEMA["sim"]:
            raise _unknown(where, f"sim.{key}", list(_SCHEMA["sim"]), "key")
    sim = {k: list(v) if isinstance(v, tuple) else v for k, v in sim_overrides.items()}
    return _build(where, {"station": {"id": VIRTUAL}, "sim": sim}, Path.cwd(), {}, None, "")


def resolve_rig(path: str | None, env: Mapping[str, str] = os.environ) -> Rig:
    """The rig to run on: `path`, else $PAYGO_BENCH_RIG, else the built-in virtual rig."""
    chosen = path or env.get(RIG_ENV_VAR) or None
    return load_rig(chosen, env=env) if chosen else virtual_rig()
