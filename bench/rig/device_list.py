"""The OpenPAYGO device-list CSV, parsed once for the whole bench: a rig file's `dut.device_list`
row and the Metrics server's `--devices file.csv` read it through this module alone, so the same
file is accepted or refused the same way everywhere (docs/rig.md, "The device list").

Columns, exactly and in this order (the OpenPAYGO Token customization guide's example list):
`Serial Number, Starting Code, Key, Count, Time Divider, Restricted Digit Mode, Hardware Model,
Version, Test Code`. A blank cell is "not given". Every mistake is a DeviceListError naming the
file, the line and the column; a key is never shown."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from bench.rig.model import FileMistake
from bench.secret import Secret

DEVICE_LIST_COLUMNS = (
    "Serial Number",
    "Starting Code",
    "Key",
    "Count",
    "Time Divider",
    "Restricted Digit Mode",
    "Hardware Model",
    "Version",
    "Test Code",
)
# What the bench can use: a starting code openpaygo would not replace with one derived from the
# key (it does so for 0), counts a device can hold, the OpenPAYGO time divider's range.
STARTING_CODE = (1, 999_999_999)
COUNT = (0, 65535)
TIME_DIVIDER = (1, 255)
SERIAL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
HEX = frozenset("0123456789abcdefABCDEF")


class DeviceListError(FileMistake, ValueError):
    """One line: "<file>: line <n>: <column>: <what was wrong>; expected <what>"."""


@dataclass(frozen=True)
class DeviceListRow:
    """One device of the list; None where the cell is blank."""

    line: int
    serial_number: str
    starting_code: int | None
    secret_key: Secret | None
    count: int | None
    time_divider: int | None
    restricted_digits: bool | None
    hardware_model: str | None
    firmware_version: str | None
    test_code: str | None


def read_device_list(path: Path) -> list[DeviceListRow]:
    """Every device row (blank lines skipped), or DeviceListError."""
    try:
        with Path(path).open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        why = "not found" if isinstance(exc, FileNotFoundError) else f"unreadable ({type(exc).__name__})"
        raise DeviceListError(path, "", f"{why}; expected an OpenPAYGO device-list CSV") from None
    _check_header(path, [h.strip() for h in rows[0]] if rows else [])
    out: list[DeviceListRow] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        device = _row(path, line, row)
        if device.serial_number in seen:
            raise DeviceListError(
                path,
                f"line {line}: Serial Number",
                f"{device.serial_number!r} is also on line {seen[device.serial_number]}; expected each device once",
            )
        seen[device.serial_number] = line
        out.append(device)
    return out


def _check_header(path: Path, header: list[str]) -> None:
    if tuple(header) == DEVICE_LIST_COLUMNS:
        return
    missing = [c for c in DEVICE_LIST_COLUMNS if c not in header]
    extra = [c for c in header if c not in DEVICE_LIST_COLUMNS]
    parts = (["missing " + ", ".join(missing)] if missing else []) + (
        ["unexpected " + ", ".join(map(repr, extra))] if extra else []
    )
    detail = "; ".join(parts) or "wrong order"
    raise DeviceListError(
        path, "header", f"wrong columns ({detail}); expected exactly " + ",".join(DEVICE_LIST_COLUMNS)
    )


def _row(path: Path, line: int, row: list[str]) -> DeviceListRow:
    if len(row) > len(DEVICE_LIST_COLUMNS):  # fewer is fine: missing trailing cells are blank
        raise DeviceListError(path, f"line {line}", f"got {len(row)} cells; expected {len(DEVICE_LIST_COLUMNS)}")
    cell = dict(zip(DEVICE_LIST_COLUMNS, (c.strip() for c in row + [""] * len(DEVICE_LIST_COLUMNS))))

    def fail(column: str, message: str) -> DeviceListError:
        return DeviceListError(path, f"line {line}: {column}", message)

    def number(column: str, bounds: tuple[int, int]) -> int | None:
        text = cell[column]
        if not text:
            return None
        if not (text.isascii() and text.isdigit()) or not bounds[0] <= int(text) <= bounds[1]:
            raise fail(column, f"got {text[:20]!r} (string); expected an integer {bounds[0]}..{bounds[1]}")
        return int(text)

    serial = cell["Serial Number"]
    if not 1 <= len(serial) <= 32 or set(serial) - SERIAL_CHARS:
        raise fail("Serial Number", f"got {serial[:40]!r}; expected 1..32 characters of A-Z a-z 0-9 _ -")
    key = cell["Key"]
    if key and (len(key) != 32 or set(key) - HEX):  # counted, never shown: it may be a real key
        raise fail(
            "Key",
            f"got {len(key)} characters{'' if not set(key) - HEX else ', not all hex'}; expected "
            "32 hex characters (16 bytes)",
        )
    restricted = cell["Restricted Digit Mode"]
    if restricted not in ("", "0", "1"):
        raise fail("Restricted Digit Mode", f"got {restricted[:20]!r}; expected 0 or 1")
    return DeviceListRow(
        line=line,
        serial_number=serial,
        starting_code=number("Starting Code", STARTING_CODE),
        secret_key=Secret(key.lower(), f"{serial} key") if key else None,
        count=number("Count", COUNT),
        time_divider=number("Time Divider", TIME_DIVIDER),
        restricted_digits={"": None, "0": False, "1": True}[restricted],
        hardware_model=cell["Hardware Model"] or None,
        firmware_version=cell["Version"] or None,
        test_code=cell["Test Code"] or None,
    )
