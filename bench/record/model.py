"""The run record as typed dataclasses: what a lab keeps of one DUT run, turned into the JSON
that docs/record.md describes (and bench.record.schema checks) by `RunRecord.to_dict()`.

Times are UTC datetimes here and ISO 8601 strings with a `Z` in the JSON; durations come from
time.monotonic() so a clock step during a run cannot make them negative.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.record.schema import SCHEMA_ID, SCHEMA_VERSION
from bench.record.verdict import Coverage

RUN_STATUSES = ("running", "finished", "interrupted")  # the run's lifecycle; the verdict says what it found
TEST_OUTCOMES = ("passed", "failed", "error", "skipped", "not covered", "interrupted")
MEASUREMENT_OUTCOMES = ("PASS", "FAIL")
MAX_REASON_CHARS = 500


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_utc(when: datetime) -> str:
    """2026-12-05T22:50:59.123Z: UTC, millisecond resolution, `Z` rather than +00:00."""
    if when.tzinfo is None:
        raise ValueError("a recorded time must be timezone-aware")
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def one_line(text: str | None) -> str | None:
    """The first non-empty line, trimmed: a reason, not a traceback."""
    if not text:
        return None
    for line in str(text).splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= MAX_REASON_CHARS else line[: MAX_REASON_CHARS - 3] + "..."
    return None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class AttachmentRecord:
    """A file of the run, named relative to the run directory, with the hash that ties the record
    to its exact bytes."""

    path: str  # POSIX-style, relative to the run directory when inside it
    title: str
    sha256: str
    size: int  # bytes

    @classmethod
    def of_file(cls, path: Path, run_dir: Path, title: str) -> AttachmentRecord:
        try:
            name = path.resolve().relative_to(run_dir.resolve()).as_posix()
        except ValueError:  # outside the run directory (an explicit --junitxml elsewhere): absolute
            name = path.resolve().as_posix()
        return cls(name, title, sha256_file(path), path.stat().st_size)


@dataclass(frozen=True)
class MeasurementRecord:
    name: str
    value: float | int | str | bool | None  # NaN / ±inf are recorded as "nan" / "inf" / "-inf"
    unit: str
    low: float | None
    high: float | None
    expected: str | float | int | bool | None  # for a measurement compared with one value
    limits: str  # the limits as people read them, e.g. "[-50, 50] ppm"
    outcome: str  # PASS | FAIL
    doc: str = ""
    marginal: bool = False  # a PASS inside the test spec's band next to a limit
    spec_entry: str | None = None  # the test spec entry that judged it (None: no spec)

    @classmethod
    def of(cls, m: Any) -> MeasurementRecord:
        """From a bench.measure.measurement.Measurement (duck-typed: the record does not need it)."""
        d = m.as_dict()
        return cls(
            d["name"],
            _json_value(d["value"]),
            d["unit"],
            _json_value(d["low"]),
            _json_value(d["high"]),
            _json_value(d["expected"]),
            m.limits_text(),
            d["outcome"],
            getattr(m, "doc", "") or "",
            bool(d.get("marginal", False)),
            d.get("spec_entry"),
        )


def _json_value(value: Any) -> Any:
    """JSON has no NaN or infinity: record them as text rather than emit invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


@dataclass
class TestRecord:
    __test__ = False  # a record, not a pytest test class

    nodeid: str
    outcome: str  # one of TEST_OUTCOMES
    reason: str | None  # one line: why it failed, errored or was skipped; None when it passed
    started_at: datetime
    ended_at: datetime
    duration_s: float  # setup + call + teardown, as JUnit's time
    measurements: list[MeasurementRecord] = field(default_factory=list)
    attachments: list[AttachmentRecord] = field(default_factory=list)
    counterexample: dict[str, Any] | None = None  # a failing random walk, shrunk (schema 2.2)


@dataclass(frozen=True)
class DutIdentity:
    """What the DUT said about itself; `source` says where it was read ("ID" reply or boot banner)."""

    source: str  # ID | boot banner
    model: str | None
    firmware: str | None
    protocol: str | None
    serial_number: str | None  # None: not reported, or not provisioned
    capabilities: list[str] | None = None


@dataclass
class DutRecord:
    adapter: str  # the protocol adapter the rig names (reference, hdk, ...)
    profile_serial: str  # the serial number the rig's DUT profile provisions
    hardware_model: str  # pinned in the rig file ("" when not pinned)
    firmware_version: str
    identity: DutIdentity | None = None


@dataclass(frozen=True)
class InstrumentRecord:
    role: str  # psu
    resource: str
    profile: str
    channel: int
    idn: str | None  # the instrument's *IDN? reply, when it was asked


@dataclass(frozen=True)
class StationRecord:
    id: str
    location: str
    host: str
    operator: str
    rig_file: str | None  # None: the built-in virtual rig
    rig_sha256: str | None
    virtual: bool
    sim_faults: list[str]


@dataclass(frozen=True)
class Counts:
    collected: int
    passed: int = 0
    failed: int = 0
    error: int = 0
    skipped: int = 0
    not_covered: int = 0
    interrupted: int = 0

    @classmethod
    def of(cls, tests: list[TestRecord], collected: int) -> Counts:
        n = {o: sum(t.outcome == o for t in tests) for o in TEST_OUTCOMES}
        return cls(collected, n["passed"], n["failed"], n["error"], n["skipped"], n["not covered"], n["interrupted"])


@dataclass(frozen=True)
class SpecRecord:
    """The test spec that judged the run's measurements (docs/spec.md)."""

    path: str
    product: str
    version: str
    sha256: str


@dataclass
class LedgerRecord:
    """How the run knew the DUT's token state (docs/ledger.md): the ledger file, whether each test
    factory-reset the DUT (`fresh`) or continued from the ledger (`ledger`), what bring-up did with
    it, and what bring-up and re-basing found."""

    path: str
    mode: str  # fresh | ledger
    bring_up: str
    findings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SafeStateRecord:
    """Where the supply was left when the run ended, as measured (docs/record.md)."""

    wanted: str  # the rig's psu.safe_state: off | on | unchanged
    confirmed: bool | None  # measured in that state; None: nothing to confirm (unchanged)
    volts: float | None  # the rail as last measured, V
    output: str | None  # on | off: the output state the PSU reported; None: not read
    detail: str  # one line: how it was confirmed, or why not
    checked_at: datetime

    @classmethod
    def of(cls, outcome: Any, checked_at: datetime) -> SafeStateRecord:
        """From a bench.station.safe_state.SafeStateOutcome (duck-typed: the record does not need it)."""
        volts = outcome.volts
        return cls(
            outcome.wanted,
            outcome.confirmed,
            None if volts is None or not math.isfinite(volts) else round(float(volts), 6),
            None if outcome.output_on is None else ("on" if outcome.output_on else "off"),
            one_line(outcome.detail) or "-",
            checked_at,
        )

    def line(self) -> str:
        return safe_state_line(self.wanted, self.confirmed, self.detail)


def safe_state_line(wanted: str, confirmed: bool | None, detail: str) -> str:
    """One line for people (the CLI's, the report's) from the record's safe_state fields."""
    if confirmed is None:
        return f"supply {detail}"
    if confirmed:
        return f"supply {wanted}, confirmed: {detail}"
    return f"supply NOT confirmed {wanted}: {detail}"


@dataclass
class RunRecord:
    run_id: str
    status: str  # one of RUN_STATUSES
    started_at: datetime
    bench_version: str
    python_version: str
    pytest_version: str
    station: StationRecord
    dut: DutRecord
    status_reason: str | None = None  # why the run was interrupted
    verdict: str | None = None  # bench.record.verdict.VERDICTS; None while running
    verdict_reason: str | None = None
    suite: Coverage = field(default_factory=lambda: Coverage("full", "", 0, 0))
    exit_status: int | None = None  # the exit code the run ended with (the verdict's); None while running
    ended_at: datetime | None = None
    updated_at: datetime | None = None
    duration_s: float | None = None
    collected: int = 0
    instruments: list[InstrumentRecord] = field(default_factory=list)
    spec: SpecRecord | None = None
    ledger: LedgerRecord | None = None
    safe_state: SafeStateRecord | None = None  # None while running, or when the run never opened the PSU
    tests: list[TestRecord] = field(default_factory=list)
    attachments: list[AttachmentRecord] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The JSON document (schema docs/record.md), keys in a stable, readable order."""
        return {
            "schema": SCHEMA_ID,
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "verdict": self.verdict,
            "verdict_reason": self.verdict_reason,
            "suite": _plain(self.suite),
            "status": self.status,
            "status_reason": self.status_reason,
            "exit_status": self.exit_status,
            "started_at": iso_utc(self.started_at),
            "ended_at": iso_utc(self.ended_at) if self.ended_at else None,
            "updated_at": iso_utc(self.updated_at or utc_now()),
            "duration_s": None if self.duration_s is None else round(self.duration_s, 3),
            "bench": {"version": self.bench_version, "python": self.python_version, "pytest": self.pytest_version},
            "station": _plain(self.station),
            "dut": _plain(self.dut),
            "instruments": [_plain(i) for i in self.instruments],
            "spec": _plain(self.spec) if self.spec is not None else None,
            "ledger": _plain(self.ledger) if self.ledger is not None else None,
            "safe_state": _plain(self.safe_state) if self.safe_state is not None else None,
            "counts": _plain(Counts.of(self.tests, self.collected)),
            "tests": [_plain(t) for t in self.tests],
            "attachments": [_plain(a) for a in self.attachments],
        }


_SCALARS = frozenset({str, int, float, bool})
_FIELDS: dict[type, tuple[str, ...]] = {}  # a dataclass's field names, looked up once per type


def _plain(obj: Any) -> Any:
    """Dataclasses to dicts, datetimes to ISO UTC strings, floats rounded to what was measured."""
    if obj is None or type(obj) in _SCALARS:  # most of a record (series of samples): first and cheapest
        return obj
    names = _FIELDS.get(type(obj))
    if names is None and dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = _FIELDS[type(obj)] = tuple(f.name for f in dataclasses.fields(obj))
    if names is not None:
        return {name: _plain(getattr(obj, name)) for name in names}
    if isinstance(obj, datetime):
        return iso_utc(obj)
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return obj.as_posix()
    return obj
