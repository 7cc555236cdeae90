"""The stations of a lab run, from `--rig` files or a lab file, checked before anything starts.

A lab file (TOML) lists the stations, each a rig file with an optional suite and operator:

    [[station]]
    rig = "bench-a.toml"     # relative to the lab file
    suite = "quick"          # optional: else --suite, else the rig's dut.suite, else full
    operator = "ana"         # optional: else --operator

Every mistake is found at once, each one line naming the file and line: the lab file's own
keys, every error of each rig file (bench.station.check.rig_file_errors), two stations with one
station.id, and two stations on one instrument or one device. Two runs driving one UART or one
PSU would each judge a device the other is changing (docs/rig.md "Virtual and real rigs"); two
runs on one virtual device (`sim.state_dir`) or one device's ledger rows (`dut.serial_number`
in one ledger file) likewise.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from bench.rig import Rig, load_rig

STATION_KEYS = ("rig", "suite", "operator")
_HEADER = re.compile(r"^\s*\[\[\s*station\s*\]\]")
_TABLE = re.compile(r"^\s*\[")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


class LabError(Exception):
    """The lab cannot start: every mistake, one line each (`lines`)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass(frozen=True)
class Station:
    rig: Rig
    rig_file: str  # as given (on the command line, or resolved from the lab file)
    where: str  # how errors name it: "lab.toml: line 3" or the rig file
    suite: str | None = None
    operator: str | None = None

    @property
    def id(self) -> str:
        return self.rig.station.id


class _Lines:
    """Where each [[station]] and each of its keys is in the lab file's text (tomllib gives no
    positions): station i's header line, and the line of key k in it."""

    def __init__(self, text: str) -> None:
        self.headers: list[int] = []
        self.keys: list[dict[str, int]] = []
        self.top: dict[str, int] = {}
        section: str | None = ""  # "" top level, "station" in a [[station]], None elsewhere
        for n, line in enumerate(text.splitlines(), start=1):
            if _HEADER.match(line):
                self.headers.append(n)
                self.keys.append({})
                section = "station"
            elif _TABLE.match(line):
                section = None
            elif (m := _KEY.match(line)) and section is not None:
                (self.keys[-1] if section else self.top).setdefault(m.group(1), n)

    def of(self, index: int, key: str | None = None) -> int:
        if index < len(self.keys) and key in self.keys[index]:
            return self.keys[index][key]
        return self.headers[index] if index < len(self.headers) else 1


def rig_errors(path: str) -> list[str]:
    """Every error of a station's rig file, its `dut.suite` naming a profile included (a single
    run checks that as it starts; here it is found with the rest, before any station starts)."""
    from bench.station.check import rig_file_errors
    from bench.suites import SuiteError, load_profile

    errors = rig_file_errors(Path(path))
    if not errors:
        suite = load_rig(path).dut.suite
        try:
            if suite:
                load_profile(suite, f"{path}: dut.suite")
        except SuiteError as e:
            errors.append(str(e))
    return errors


def from_rig_files(paths: list[str]) -> list[Station]:
    """Stations from `--rig` files, in the order given; LabError lists every mistake."""
    errors: list[str] = []
    stations: list[Station] = []
    for path in paths:
        found = rig_errors(path)
        if found:
            errors += found
            continue
        stations.append(Station(rig=load_rig(path), rig_file=path, where=path))
    errors += conflicts(stations)
    if errors:
        raise LabError(errors)
    return stations


def from_lab_file(path: str) -> list[Station]:
    """Stations from a lab file; LabError lists every mistake of it and of its rig files."""
    from bench.suites import profile_names

    try:
        text = Path(path).read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LabError([f"{path}: cannot read the lab file: {e}"]) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)$", str(e))
        at = f"line {m.group(1)}, column {m.group(2)}" if m else "end of file"
        what = re.sub(r"\s*\(at [^)]*\)$", "", str(e))
        raise LabError([f"{path}: {at}: TOML syntax error: {what}"]) from None
    lines = _Lines(text)
    errors: list[str] = []
    for key in doc:
        if key != "station":
            errors.append(f"{path}: line {lines.top.get(key, 1)}: {key}: unknown key; expected [[station]] tables")
    entries = doc.get("station", [])
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        errors.append(f"{path}: line 1: station: no [[station]] table; expected one per station, each with rig = FILE")
        raise LabError(errors)
    stations: list[Station] = []
    base = Path(path).parent
    for i, entry in enumerate(entries):
        head = f"{path}: line {lines.of(i)}: station {i + 1}"
        for key, value in entry.items():
            at = f"{path}: line {lines.of(i, key)}: station {i + 1}: {key}"
            if key not in STATION_KEYS:
                errors.append(f"{at}: unknown key; expected one of {', '.join(STATION_KEYS)}")
            elif not isinstance(value, str) or not value.strip():
                errors.append(f"{at}: got {value!r}; expected a non-empty string")
            elif key == "suite" and value not in profile_names():
                errors.append(f"{at}: no suite profile {value!r}; expected one of {', '.join(profile_names())}")
        rig = entry.get("rig")
        if "rig" not in entry:
            errors.append(f"{head}: rig: missing; expected the station's rig file (relative to the lab file)")
            continue
        if not isinstance(rig, str) or not rig.strip():
            continue
        rig_path = os.fspath(base / rig) if not os.path.isabs(rig) else rig
        found = rig_errors(rig_path)
        where = f"{path}: line {lines.of(i, 'rig')}"
        errors += [f"{where}: {line}" for line in found]
        if not found:  # checked against the others even when another key of it is wrong
            suite, operator = (v if isinstance(v, str) else None for v in (entry.get("suite"), entry.get("operator")))
            stations.append(Station(load_rig(rig_path), rig_path, where, suite, operator))
    errors += conflicts(stations)
    if errors:
        raise LabError(sorted(errors, key=lambda e: _line_of(e, path)))  # in the file's order
    return stations


def _line_of(error: str, path: str) -> int:
    m = re.match(rf"{re.escape(path)}: line (\d+)", error)
    return int(m.group(1)) if m else 0


def _state_dir(rig: Rig) -> str | None:
    return os.path.realpath(rig.sim.state_dir) if rig.virtual and rig.sim.state_dir else None


def _device(rig: Rig) -> str | None:
    """The ledger rows a run of this rig writes: (ledger file, serial), None when its ledger is
    its own run's (a virtual device living only for the run)."""
    if rig.virtual and not rig.sim.state_dir and rig.dut.ledger is None:
        return None
    ledger = os.path.realpath(rig.dut.ledger) if rig.dut.ledger is not None else "the reports folder's ledger"
    return f"device {rig.dut.serial_number} in {ledger}"


def conflicts(stations: list[Station]) -> list[str]:
    """Two stations that would share a station id, a serial port, a PSU, a simulated device or
    one device's ledger rows: one line each, naming both."""
    from bench.station.station_lock import resource_key

    seen: dict[tuple[str, str], Station] = {}
    errors: list[str] = []
    for station in stations:
        rig = station.rig
        claims = [("station.id", rig.station.id)]
        if not rig.virtual:
            claims += [("link.port", resource_key(rig.link.port)), ("psu.resource", resource_key(rig.psu.resource))]
        if (state := _state_dir(rig)) is not None:
            claims.append(("sim.state_dir", state))
        if (device := _device(rig)) is not None:
            claims.append(("dut.serial_number", device))
        for what, value in claims:
            other = seen.setdefault((what, value), station)
            if other is not station:
                errors.append(
                    f"{station.where}: {what}: {value} also in {other.where} (station {other.id!r}); expected "
                    "each station its own (two runs on one would each judge a device the other changes)"
                )
    return errors
