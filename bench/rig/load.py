"""Loading a rig file (or the built-in virtual rig) into a `Rig`: the sections read against the
schema, the DUT profile merged from [dut], a device-list row and the virtual device's defaults."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.rig.device_list import DeviceListError, DeviceListRow, read_device_list
from bench.rig.model import (
    DEFAULT_BOOT_TIMEOUT_S,
    DEFAULT_DRIFT_MAX_OBSERVE_S,
    DEFAULT_DRIFT_OBSERVE_S,
    DEFAULT_LOCKOUT_WAIT_BUDGET_S,
    DEFAULT_MIN_OFF_S,
    DEFAULT_PSU_PROFILE,
    DEFAULT_RTC_OFF_TEST_S,
    DEFAULT_UNPOWERED_LONG_S,
    LABGRID,
    RIG_ENV_VAR,
    VIRTUAL,
    DutProfile,
    LabgridConfig,
    LinkConfig,
    PsuConfig,
    Rig,
    RigError,
    ServerConfig,
    SimConfig,
    StationConfig,
)
from bench.rig.schema import _DUT_DEFAULTS, _IDENTITY, _SCHEMA, _SECTIONS
from bench.rig.values import _KEY_SOURCES, _got, _key_from_sources, _read_section, _relative, _unknown, _with_defaults
from bench.secret import Secret

MIN_JWT_SECRET_BYTES = 32  # HS256 needs a 256-bit secret (RFC 7518, section 3.2), as the server's config says


def _device_list_row(where: str, given: dict, base: Path) -> dict[str, Any]:
    """The [dut] values the device list's row for `device_serial` gives (blank cells left out),
    read by the one device-list parser (bench/rig/device_list.py)."""
    if "device_serial" not in given:
        raise RigError(
            where,
            "dut.device_serial",
            "missing; expected the Serial Number of the device list row to use (required with dut.device_list)",
        )
    file, serial = _relative(base, given["device_list"]), given["device_serial"]
    try:
        rows = read_device_list(file)
    except DeviceListError as e:  # a cell or the header: named in the list itself; the file: in the rig
        raise (
            RigError(e.path, e.where, e.message)
            if e.where
            else RigError(where, "dut.device_list", f"{file}: {e.message}")
        ) from None
    row: DeviceListRow | None = next((r for r in rows if r.serial_number == serial), None)
    if row is None:
        raise RigError(
            where, "dut.device_serial", f"no row with Serial Number {_got(serial)} in {file}; expected exactly one"
        )
    values = {
        "serial_number": row.serial_number,
        "starting_code": row.starting_code,
        "secret_key": row.secret_key,
        "token_count": row.count,
        "time_divider": row.time_divider,
        "restricted_digits": row.restricted_digits,
        "hardware_model": row.hardware_model,
        "firmware_version": row.firmware_version,
    }
    return {k: v for k, v in values.items() if v is not None}


def _dut_profile(where: str, given: dict, base: Path, env: Mapping[str, str], virtual: bool) -> DutProfile:
    """Merge [dut], a device-list row and (virtual rig only) the simulated device's identity."""
    values = _with_defaults("dut", given)
    key = _key_from_sources(where, given, base, env)
    values.update(_device_list_values(where, given, base))
    if key is not None:
        values["secret_key"] = key
    _fill_defaults(where, values, virtual)
    return DutProfile(
        **{
            **{f.name: values[f.name] for f in dataclasses.fields(DutProfile)},
            "capabilities": frozenset(values["capabilities"]),
            "spec": _relative(base, values["spec"]) if values.get("spec") else None,
            "ledger": _relative(base, values["ledger"]) if values.get("ledger") else None,
        }
    )


def _device_list_values(where: str, given: dict, base: Path) -> dict[str, Any]:
    """The DUT's row of dut.device_list (none without one): each value in one place only."""
    if "device_list" not in given:
        if "device_serial" in given:
            raise RigError(where, "dut.device_serial", "given without dut.device_list; expected both or neither")
        return {}
    row = _device_list_row(where, given, base)
    for name in row:  # a non-blank cell and a [dut] key for the same thing clash
        same = _KEY_SOURCES if name == "secret_key" else () if name == "serial_number" else (name,)
        clash = next((k for k in same if k in given), None)
        if clash:
            raise RigError(
                where,
                f"dut.{clash}",
                "also given by the device list row of dut.device_serial; expected it in one place only",
            )
    if "serial_number" in given and given["serial_number"] != row["serial_number"]:
        raise RigError(
            where,
            "dut.serial_number",
            f"got {_got(given['serial_number'])}, not dut.device_serial; expected them equal, or serial_number left out",
        )
    return row


def _fill_defaults(where: str, values: dict[str, Any], virtual: bool) -> None:
    """Defaults for what the rig left out; a real DUT's identity has none."""
    for name, default in _DUT_DEFAULTS.items():
        if values[name] is not None:
            continue
        if name in _IDENTITY and not virtual:
            what = (
                "one of secret_key, secret_key_env, secret_key_file"
                if name == "secret_key"
                else _SCHEMA["dut"][name].expected
            )
            raise RigError(
                where,
                f"dut.{name}",
                f"missing (a real DUT has no default identity); expected {what}, or dut.device_list",
            )
        values[name] = default
    for name, by_rig in (
        ("rtc_drift_observe_s", DEFAULT_DRIFT_OBSERVE_S),
        ("rtc_drift_max_observe_s", DEFAULT_DRIFT_MAX_OBSERVE_S),
        ("lockout_wait_budget_s", DEFAULT_LOCKOUT_WAIT_BUDGET_S),
        ("rtc_off_test_s", DEFAULT_RTC_OFF_TEST_S),
        ("unpowered_long_s", DEFAULT_UNPOWERED_LONG_S),
    ):
        if values[name] is None:
            values[name] = by_rig[virtual]
    if values["extended_only"] and not values["extended_tokens"]:
        raise RigError(
            where, "dut.extended_only", "true with dut.extended_tokens false; expected dut.extended_tokens = true too"
        )
    if values["extended_only"] and values["extended_998_999"] == "time":
        raise RigError(
            where,
            "dut.extended_998_999",
            '"time" with dut.extended_only: such a device has no DISABLE_PAYG or COUNTER_SYNC token, and '
            'the bench re-bases a device with a counter-sync; expected "disable_sync", or extended_only = false',
        )
    if values["rtc_drift_max_observe_s"] < values["rtc_drift_observe_s"]:
        raise RigError(
            where,
            "dut.rtc_drift_max_observe_s",
            f"got {values['rtc_drift_max_observe_s']:g} "
            f"with dut.rtc_drift_observe_s {values['rtc_drift_observe_s']:g}; "
            "expected seconds >= dut.rtc_drift_observe_s",
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


def _build(where: str, doc: dict, base: Path, env: Mapping[str, str], source: Path | None, sha256: str) -> Rig:
    for name in doc:
        if name not in _SCHEMA:
            raise _unknown(where, name, _SECTIONS, "section")
    given = {name: _read_section(where, doc, name) for name in _SECTIONS}
    if "id" not in given["station"]:
        raise RigError(where, "station.id", f"missing; expected {_SCHEMA['station']['id'].expected}")
    link, psu, sim = (_with_defaults(n, given[n]) for n in ("link", "psu", "sim"))
    lab = _with_defaults("labgrid", given["labgrid"])
    _labgrid_endpoints(where, lab, given, link, psu)
    if (link["port"] == VIRTUAL) != (psu["resource"] == VIRTUAL):
        raise RigError(
            where,
            "link.port/psu.resource",
            f"got port {_got(link['port'])} and resource "
            f"{_got(psu['resource'])}: mixing a virtual and a real instrument is not supported; "
            'expected both "virtual" or both real',
        )
    virtual = link["port"] == VIRTUAL
    if psu["profile"] is None:
        psu["profile"] = DEFAULT_PSU_PROFILE[virtual]
    if link["boot_timeout_s"] is None:
        link["boot_timeout_s"] = DEFAULT_BOOT_TIMEOUT_S[virtual]
    if psu["min_off_s"] is None:
        psu["min_off_s"] = DEFAULT_MIN_OFF_S[virtual]
    if not virtual and "sim" in doc:
        raise RigError(where, "sim", "given on a real rig; expected [sim] only on the virtual rig")
    if not psu["off_threshold_v"] < psu["voltage"]:
        raise RigError(
            where,
            "psu.off_threshold_v",
            f"got {psu['off_threshold_v']} with psu.voltage "
            f"{psu['voltage']}; expected volts >= 0 and below psu.voltage",
        )
    return Rig(
        source=source,
        sha256=sha256,
        station=_station(given["station"]),
        link=LinkConfig(**link),
        psu=PsuConfig(**psu),
        dut=_dut_profile(where, given["dut"], base, env, virtual),
        server=_server(where, given["server"], base, env),
        sim=_sim(where, sim, base, env),
        labgrid=LabgridConfig(**lab),
    )


def _labgrid_endpoints(where: str, lab: dict, given: dict, link: dict, psu: dict) -> None:
    """With [labgrid] place, the serial port is the place's ("labgrid", the default then), the PSU
    the place's tag ("labgrid", the default) or a VISA resource given; without, neither is "labgrid"."""
    if lab["place"]:
        if "port" not in given["link"]:
            link["port"] = LABGRID
        if "resource" not in given["psu"]:
            psu["resource"] = LABGRID
        if link["port"] != LABGRID:
            raise RigError(
                where,
                "link.port",
                f'got {_got(link["port"])} with labgrid.place; expected "labgrid" (the place\'s serial port) or left out',
            )
        return
    for key, value in (("link.port", link["port"]), ("psu.resource", psu["resource"])):
        if value == LABGRID:
            raise RigError(where, key, '"labgrid" without labgrid.place; expected [labgrid] place = "<place name>"')


def _station(given: dict) -> StationConfig:
    """[station], the results database's URL held as a Secret (it may carry a password)."""
    values = _with_defaults("station", given)
    if values["results_db"] is not None:
        values["results_db"] = Secret(values["results_db"], "station.results_db")
    return StationConfig(**values)


def _server(where: str, given: dict, base: Path, env: Mapping[str, str]) -> ServerConfig:
    """[server], its files made absolute, its JWT secret read (never shown in an error)."""
    values = _with_defaults("server", given)
    for name in ("cert_file", "key_file"):
        values[name] = _file(where, f"server.{name}", values[name], base)
    if bool(values["cert_file"]) != bool(values["key_file"]):
        raise RigError(where, "server.cert_file/key_file", "only one given; expected both (HTTPS) or neither")
    secret = _jwt_secret(where, "server", values, base, env)
    return ServerConfig(**values, jwt_secret=secret)


def _sim(where: str, sim: dict, base: Path, env: Mapping[str, str]) -> SimConfig:
    values = {**sim, "state_dir": str(_relative(base, sim["state_dir"])) if sim["state_dir"] else ""}
    values["metrics_ca_file"] = _file(where, "sim.metrics_ca_file", values["metrics_ca_file"], base)
    secret = _jwt_secret(where, "sim", values, base, env, prefix="metrics_")
    return SimConfig(**values, metrics_jwt_secret=secret)


def _file(where: str, key: str, name: str, base: Path) -> str:
    """An existing file's absolute path ("" stays "")."""
    if not name:
        return ""
    path = _relative(base, name)
    if not path.is_file():
        raise RigError(where, key, f"{path}: not found; expected a PEM file")
    return str(path)


def _jwt_secret(
    where: str, section: str, values: dict, base: Path, env: Mapping[str, str], prefix: str = ""
) -> Secret | None:
    """A JWT secret from `<prefix>jwt_secret_file` (its first line) or `_env`; None if neither."""
    file_key, env_key = f"{prefix}jwt_secret_file", f"{prefix}jwt_secret_env"
    file, var = values[file_key], values[env_key]
    if file and var:
        raise RigError(where, f"{section}.{env_key}", f"given with {section}.{file_key}; expected one of them")
    text: str | None = None
    if var:
        if var not in env:
            raise RigError(
                where, f"{section}.{env_key}", f"environment variable {var} is not set; expected a JWT secret"
            )
        text = env[var]
    elif file:
        path = _relative(base, file)
        values[file_key] = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = "not found" if isinstance(exc, FileNotFoundError) else f"unreadable ({type(exc).__name__})"
            raise RigError(
                where, f"{section}.{file_key}", f"{path}: {why}; expected a file holding a JWT secret"
            ) from None
    if text is None:
        return None
    text = text.strip().splitlines()[0].strip() if text.strip() else ""
    if len(text.encode()) < MIN_JWT_SECRET_BYTES:
        raise RigError(
            where,
            f"{section}.{file_key if file else env_key}",
            f"a secret of {len(text.encode())} bytes; expected at least {MIN_JWT_SECRET_BYTES} (HS256)",
        )
    return Secret(text, f"{section}.jwt_secret")


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
    return _build(
        where,
        doc,
        file.resolve().parent,
        os.environ if env is None else env,
        file.resolve(),
        hashlib.sha256(data).hexdigest(),
    )


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
