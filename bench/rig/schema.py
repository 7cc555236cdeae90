"""The rig file's schema: one `_Field` per key, its type, range, default and what it expects; the
single source of truth for keys (docs/rig.md describes it for people). Names a rig file may give
for the adapter and the PSU profile are taken from their registries (bench/dut/registry.py,
bench/power/profiles.py), never retyped here."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.dut.registry import ADAPTERS
from bench.power.profiles import PROFILES
from bench.rig.model import (
    EXTENDED_998_999,
    LABGRID,
    METRICS_AUTH_METHODS,
    SECTIONS,
    STANDARD_BAUDS,
    VIRTUAL,
    VIRTUAL_DUT_KEY,
    VIRTUAL_DUT_SERIAL,
    VIRTUAL_DUT_STARTING_CODE,
)
from bench.secret import Secret

KNOWN_PSU_PROFILES = tuple(PROFILES)
KNOWN_ADAPTERS = tuple(ADAPTERS)

# Schema: one _Field per key. `check` sees an already type-converted value (each item of a list).


@dataclass(frozen=True)
class _Field:
    kind: str  # "str" | "int" | "float" | "bool" | "strlist" | "secret" | "url" (a str shown without its password)
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
    """ "virtual", a device path (/dev/ttyUSB0, COM3) or a pyserial URL (rfc2217://host:port)."""
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
        "ui_host": _Field(
            "str",
            "127.0.0.1",
            lambda v: bool(re.fullmatch(r"[A-Za-z0-9_.:-]{1,253}", v)),
            "an address or host name the live page listens on (127.0.0.1: this machine only)",
        ),
        "ui_psu_poll_s": _float(1.0, lambda v: v == 0 or 0.2 <= v <= 60, "0 (off) or 0.2..60 seconds"),
        # the results database runs are written to (docs/history.md); its password never shown
        "results_db": _Field(
            "url",
            None,
            lambda v: re.fullmatch(r"(sqlite|postgres|postgresql|postgresql\+psycopg)://\S+", v) is not None,
            "a database URL: sqlite:///FILE or postgresql://[USER[:PASSWORD]@]HOST[:PORT]/DB",
        ),
    },
    "link": {
        "port": _Field(
            "str",
            VIRTUAL,
            _is_serial_port,
            "a serial device (/dev/ttyUSB0, /dev/serial/by-id/..., COM3), a pyserial URL "
            '(rfc2217://host:port, socket://host:port) or "virtual"',
        ),
        "baud": _Field("int", 115200, lambda v: v in STANDARD_BAUDS, "a standard baud rate 300..4000000"),
        "reply_timeout_s": _float(2.0, lambda v: v > 0, "seconds > 0"),
        "boot_timeout_s": _Field("float", None, lambda v: v > 0, "seconds > 0"),
    },
    "psu": {
        "resource": _Field(
            "str",
            VIRTUAL,
            lambda v: v in (VIRTUAL, LABGRID) or _VISA.fullmatch(v) is not None,
            'a VISA resource (TCPIP0::10.0.0.5::5025::SOCKET, USB0::...::INSTR, ASRL/dev/ttyUSB1::INSTR), "virtual", '
            'or "labgrid" (the labgrid place\'s tag)',
        ),
        "profile": _Field(
            "str", None, lambda v: v in KNOWN_PSU_PROFILES, "one of " + ", ".join(f'"{o}"' for o in KNOWN_PSU_PROFILES)
        ),
        "channel": _int(1, 1, 8),
        "voltage": _float(12.0, lambda v: 0 < v <= 60, "volts, 0 < v <= 60"),
        "current_limit": _float(1.0, lambda v: 0 < v <= 20, "amps, 0 < a <= 20"),
        "off_threshold_v": _float(0.5, lambda v: v >= 0, "volts >= 0 and below psu.voltage"),
        "min_off_s": _Field("float", None, lambda v: v >= 0, "seconds >= 0"),
        "settle_timeout_s": _float(5.0, lambda v: v > 0, "seconds > 0"),
        "safe_state": _choice("off", ("off", "on", "unchanged")),
        "timeout_s": _float(2.0, lambda v: v > 0, "seconds > 0"),
    },
    "dut": {
        "adapter": _choice("reference", KNOWN_ADAPTERS),
        "serial_number": _str(None, r"[A-Za-z0-9_-]{1,32}", "1..32 characters of A-Z a-z 0-9 _ -"),
        "secret_key": _Field("secret", None, lambda v: True, "32 hex characters"),
        "secret_key_env": _str(None, r"[A-Za-z_][A-Za-z0-9_]*", "an environment variable name"),
        "secret_key_file": _Field("str", None, lambda v: bool(v.strip()), "a file path"),
        "starting_code": _int(None, 1, 999_999_999),  # 0: openpaygo would derive one from the key
        "token_count": _int(None, 0, 65535),
        "time_divider": _int(None, 1, 255),
        "restricted_digits": _bool(None),
        "extended_tokens": _bool(False),
        "extended_only": _bool(False),
        "extended_998_999": _choice("disable_sync", EXTENDED_998_999),
        "sync_lowers_count": _bool(True),
        "lockout_free_errors": _int(2, 0, 100, "a number of errors"),
        "lockout_first_minutes": _int(2, 1, 10080, "minutes"),
        "lockout_max_minutes": _int(512, 1, 100000, "minutes"),
        "lockout_max_streak": _int(11, 1, 1000, "a number of errors"),
        "lockout_unit_s": _float(60.0, lambda v: 0 < v <= 3600, "seconds, 0 < s <= 3600"),
        "lockout_wait_budget_s": _Field("float", None, lambda v: 0 <= v <= 7 * 86400, "seconds, 0..604800"),
        "lockout_persists": _bool(True),
        "rtc_off_test_s": _Field("float", None, lambda v: 0 < v <= 86400, "seconds, 0 < s <= 86400"),
        "unpowered_long_s": _Field("float", None, lambda v: 60 <= v <= 30 * 86400, "seconds, 60..2592000"),
        "power_cut_cycles": _int(200, 1, 1_000_000, "a number of power cuts"),
        "power_cut_off_s": _float(0.0, lambda v: 0 <= v <= 3600, "seconds, 0..3600"),
        "walk_steps": _int(300, 1, 1_000_000, "a number of random-walk steps"),
        "walk_power_cycles": _int(6, 0, 100_000, "a number of power cycles"),
        "walk_shrink_s": _float(120.0, lambda v: 0 <= v <= 86400, "seconds, 0..86400"),
        "rtc_drift_limit_ppm": _float(685.0, lambda v: 0 < v <= 100000, "ppm, 0 < v <= 100000"),
        "rtc_drift_observe_s": _Field("float", None, lambda v: 1 <= v <= 86400, "seconds, 1..86400"),
        "rtc_drift_max_observe_s": _Field(
            "float", None, lambda v: 1 <= v <= 86400, "seconds, 1..86400 and >= dut.rtc_drift_observe_s"
        ),
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
        "cert_file": _any_str(""),
        "key_file": _any_str(""),
        "jwt_secret_file": _any_str(""),
        "jwt_secret_env": _str("", r"([A-Za-z_][A-Za-z0-9_]*)?", "an environment variable name"),
    },
    "sim": {
        "faults": _strlist(r"\S+", "a list of fault names"),
        "rtc_drift_ppm": _float(250.0, lambda v: -10000 <= v <= 10000, "ppm, -10000..10000"),
        "psu_decay_s": _float(0.04, lambda v: v >= 0, "seconds >= 0"),
        "link": _choice("auto", ("auto", "pty", "socket")),
        "uart": _choice("direct", ("direct", "rfc2217")),
        "brownout_v": _float(3.0, lambda v: v > 0, "volts > 0"),
        "nvm_page_write_ms": _float(0.25, lambda v: v >= 0, "milliseconds >= 0"),
        "rtc_subsecond": _bool(False),
        "metrics_mode": _choice("direct", ("off", "direct", "bridge")),
        "metrics_period_s": _float(0.2, lambda v: 0.05 <= v <= 604800, "seconds, 0.05..604800"),
        "metrics_sample_s": _int(300, 1, 86400, "whole seconds"),
        "metrics_encoding": _choice("json", ("json", "cbor")),
        "metrics_reply_timeout_s": _float(1.0, lambda v: 0.05 <= v <= 600, "seconds, 0.05..600"),
        "hide_capabilities": _strlist(r"[a-z0-9_]+", "a list of capability names matching [a-z0-9_]+"),
        "lockout_unit_s": _float(60.0, lambda v: 0 < v <= 3600, "seconds, 0 < s <= 3600"),
        "hdk_fixed": _bool(False),
        "sync_keeps_higher_count": _bool(False),
        "extended_as_time": _bool(False),
        "extended_only": _bool(False),
        "state_dir": _any_str(""),
        "metrics_ca_file": _any_str(""),
        "metrics_jwt_secret_file": _any_str(""),
        "metrics_jwt_secret_env": _str("", r"([A-Za-z_][A-Za-z0-9_]*)?", "an environment variable name"),
    },
    "labgrid": {
        "coordinator": _str(
            "127.0.0.1:20408", r"[A-Za-z0-9_.:\[\]-]+:[0-9]{1,5}", "HOST:PORT of a labgrid coordinator"
        ),
        "place": _str("", r"[A-Za-z0-9_.-]{0,64}", "a labgrid place name (A-Z a-z 0-9 _ . -)"),
        "psu_tag": _str("psu_visa", r"[A-Za-z0-9_.-]{1,64}", "the place tag holding the PSU's VISA resource"),
        "client": _any_str(""),
    },
}
assert tuple(_SCHEMA) == SECTIONS
_SECTIONS = SECTIONS
# The [dut] keys a device list can supply, and their values when neither it nor [dut] does. The
# identity keys default to the simulated device's; a real rig must give them.
_DUT_DEFAULTS = {
    "serial_number": VIRTUAL_DUT_SERIAL,
    "starting_code": VIRTUAL_DUT_STARTING_CODE,
    "secret_key": Secret(VIRTUAL_DUT_KEY, "dut.secret_key"),
    "token_count": 1,
    "time_divider": 1,
    "restricted_digits": False,
    "hardware_model": "",
    "firmware_version": "",
}
_IDENTITY = ("serial_number", "starting_code", "secret_key")
