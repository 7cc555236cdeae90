"""The devices a Metrics server knows: serial -> key, token parameters and target state.

Loaded from a TOML or JSON device file, an OpenPAYGO device-list CSV (the columns of
`OpenPAYGO-Token:documentation/examples/example_device_list.csv`), or built from the rig's
DutProfile. The static part (key, starting code...) lives here; what changes (token count,
target, replay counters) lives in the store, so it survives restarts: the file's `count` and
`active_until` only seed a device the store has never seen.

Keys are `Secret`s: no error, repr or log line shows one."""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bench.openpaygo.tokens import MAX_TIME_DIVIDER, TokenGenerator
from bench.rig import DeviceListError, DutProfile, read_device_list
from bench.secret import Secret
from bench.server.store import DeviceState, Store

_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_SERIAL = re.compile(r"[^\x00-\x1f\x7f]{1,128}")


class DeviceFileError(Exception):
    """ "<file>: <entry>: <key>: what was wrong; expected what" (never a key's value)."""

    def __init__(self, path: str, where: str, message: str) -> None:
        super().__init__(f"{path}: {where}: {message}" if where else f"{path}: {message}")


@dataclass(frozen=True)
class Device:
    serial_number: str
    key: Secret
    starting_code: int
    count: int = 1  # the server's count for a device it has not seen yet
    time_divider: int = 1
    restricted_digits: bool = False
    extended_tokens: bool = False
    active_until: datetime | None = None  # initial target (UTC)

    def generator(self, count: int) -> TokenGenerator:
        return TokenGenerator(
            self.key, self.starting_code, count, self.time_divider, self.restricted_digits, self.extended_tokens
        )


def device_from_profile(profile: DutProfile, active_until: datetime | None = None) -> Device:
    """The rig's DUT as a server device."""
    return Device(
        profile.serial_number,
        profile.secret_key,
        profile.starting_code,
        profile.token_count,
        profile.time_divider,
        profile.restricted_digits,
        profile.extended_only,  # standard tokens to a device that takes both (docs/tokens.md "Where a device may choose")
        _utc(active_until, "", "active_until") if active_until is not None else None,
    )


# -- device files -------------------------------------------------------------------------------

_KEYS = (
    "serial_number",
    "secret_key",
    "secret_key_env",
    "starting_code",
    "count",
    "time_divider",
    "restricted_digits",
    "extended_tokens",
    "active_until",
)


def _utc(value: Any, path: str, where: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise DeviceFileError(
                path, where, "not an ISO 8601 date and time; expected e.g. 2026-12-31T00:00:00Z"
            ) from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise DeviceFileError(path, where, "expected an ISO 8601 date and time")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _device(entry: Any, path: str, where: str, env: Mapping[str, str]) -> Device:
    if not isinstance(entry, dict):
        raise DeviceFileError(path, where, "expected a table/object describing one device")
    for k in entry:
        if k not in _KEYS:
            raise DeviceFileError(path, f"{where}.{k}", "unknown key; expected one of " + ", ".join(_KEYS))

    def need(k: str, kind: type, check: Any = None, expected: str = "") -> Any:
        if k not in entry:
            raise DeviceFileError(path, f"{where}.{k}", f"missing; expected {expected}")
        v = entry[k]
        if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool or (check and not check(v)):
            raise DeviceFileError(path, f"{where}.{k}", f"wrong value; expected {expected}")
        return v

    def opt(k: str, default: Any, kind: type, check: Any, expected: str) -> Any:
        return need(k, kind, check, expected) if k in entry else default

    serial = need("serial_number", str, _SERIAL.fullmatch, "1..128 printable characters")
    if ("secret_key" in entry) == ("secret_key_env" in entry):
        raise DeviceFileError(path, f"{where}.secret_key", "expected exactly one of secret_key, secret_key_env")
    if "secret_key" in entry:
        text = entry["secret_key"]
    else:
        var = need("secret_key_env", str, None, "an environment variable name")
        if var not in env:
            raise DeviceFileError(path, f"{where}.secret_key_env", f"environment variable {var} is not set")
        text = env[var]
    if not isinstance(text, str) or not _HEX32.fullmatch(text.strip()):
        raise DeviceFileError(
            path, f"{where}.secret_key", "not 32 hex characters (not shown); expected the 16-byte device key in hex"
        )
    return Device(
        serial_number=serial,
        key=Secret(text.strip().lower(), f"device {serial} key"),
        starting_code=need("starting_code", int, lambda v: 1 <= v <= 999_999_999, "an integer 1..999999999"),
        count=opt("count", 1, int, lambda v: 0 <= v <= 65535, "an integer 0..65535"),
        time_divider=opt("time_divider", 1, int, lambda v: 1 <= v <= MAX_TIME_DIVIDER, "an integer 1..255"),
        restricted_digits=opt("restricted_digits", False, bool, None, "true or false"),
        extended_tokens=opt("extended_tokens", False, bool, None, "true or false"),
        active_until=_utc(entry["active_until"], path, f"{where}.active_until") if "active_until" in entry else None,
    )


def _csv_devices(path: Path) -> list[Device]:
    """An OpenPAYGO device list, read by the bench's one device-list parser (bench/rig/device_list.py):
    a server device needs the key and the starting code of each row."""
    try:
        rows = read_device_list(path)
    except DeviceListError as e:
        raise DeviceFileError(e.path, e.where, e.message) from None
    devices = []
    for row in rows:
        for column, value in (("Key", row.secret_key), ("Starting Code", row.starting_code)):
            if value is None:
                raise DeviceFileError(
                    str(path),
                    f"line {row.line}: {column}",
                    "blank; expected it for a device the server issues tokens to",
                )
        assert row.secret_key is not None and row.starting_code is not None
        devices.append(
            Device(
                row.serial_number,
                row.secret_key,
                row.starting_code,
                1 if row.count is None else row.count,
                row.time_divider or 1,
                bool(row.restricted_digits),
            )
        )
    return devices


def load_devices(path: str | os.PathLike, env: Mapping[str, str] | None = None) -> list[Device]:
    """Devices from a .toml ([[device]] tables), .json ({"devices": [...]} or a list) or .csv
    (OpenPAYGO device list) file; DeviceFileError naming the entry and key otherwise."""
    file = Path(path)
    env = os.environ if env is None else env
    try:
        if file.suffix.lower() == ".csv":
            return _csv_devices(file)
        if file.suffix.lower() == ".toml":
            doc = tomllib.loads(file.read_text(encoding="utf-8"))
            entries, label = doc.get("device", []), "device"
            extra = [k for k in doc if k != "device"]
            if extra:
                raise DeviceFileError(str(file), extra[0], "unknown table; expected [[device]] entries")
        elif file.suffix.lower() == ".json":
            doc = json.loads(file.read_text(encoding="utf-8"))
            entries, label = (doc.get("devices") if isinstance(doc, dict) else doc), "devices"
        else:
            raise DeviceFileError(str(file), "", "expected a .toml, .json or .csv device file")
    except OSError as e:
        raise DeviceFileError(str(file), "", f"unreadable ({type(e).__name__})") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DeviceFileError(str(file), "", f"syntax error: {str(e)[:100]}") from None
    if not isinstance(entries, list):
        raise DeviceFileError(str(file), "", "expected a list of devices")
    devices = [_device(e, str(file), f"{label}[{i}]", env) for i, e in enumerate(entries)]
    seen: set[str] = set()
    for d in devices:
        if d.serial_number in seen:
            raise DeviceFileError(str(file), d.serial_number, "serial number listed twice")
        seen.add(d.serial_number)
    return devices


# -- the registry --------------------------------------------------------------------------------


class DeviceRegistry:
    """Known devices and their persisted state. Thread-safe through the store's transactions."""

    def __init__(self, devices: Iterable[Device], store: Store) -> None:
        self.store = store
        self._devices = {d.serial_number: d for d in devices}
        with store.transaction() as tx:
            for d in self._devices.values():
                if tx.device_state(d.serial_number) is None:
                    target = d.active_until.timestamp() if d.active_until is not None else None
                    tx.put_device_state(DeviceState(d.serial_number, d.count, target_until=target))

    def __contains__(self, serial: object) -> bool:
        return serial in self._devices

    def __len__(self) -> int:
        return len(self._devices)

    def get(self, serial: str) -> Device | None:
        return self._devices.get(serial)

    def serials(self) -> list[str]:
        return sorted(self._devices)

    def secrets(self) -> tuple[Secret, ...]:
        return tuple(d.key for d in self._devices.values())

    def state(self, serial: str) -> DeviceState:
        if serial not in self._devices:
            raise KeyError(f"unknown device {serial!r}")
        state = self.store.device_state(serial)
        assert state is not None
        return state

    def count(self, serial: str) -> int:
        """The last token count the server issued to this device."""
        return self.state(serial).token_count

    def set_target(self, serial: str, active_until: datetime | None) -> None:
        """Where the next token reply brings the device: active until this UTC time (None: no
        target, no tokens). Persisted at once."""
        if serial not in self._devices:
            raise KeyError(f"unknown device {serial!r}")
        if active_until is not None and active_until.tzinfo is None:
            raise ValueError("active_until must be timezone-aware (UTC)")
        target = active_until.timestamp() if active_until is not None else None
        with self.store.transaction() as tx:
            state = tx.device_state(serial)
            assert state is not None
            tx.put_device_state(replace(state, target_until=target))
