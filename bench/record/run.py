"""The run record as a run goes: started, each test's outcome taken from its phases, the rig's and
the DUT's account of themselves once the rig is up, the run's files hashed, written after every
change. No pytest here: fixtures/record.py hands it what pytest reports.

Written atomically when the run starts (status "running"), after every test and when it ends, so
a run stopped by Ctrl-C says "interrupted" and one killed outright (SIGKILL, power loss) still
leaves the last complete state, marked "running" by a process that is gone (docs/record.md)."""

from __future__ import annotations

import platform
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.locations import OWNER_FILE, cannot
from bench.record.model import (
    AttachmentRecord,
    DutIdentity,
    DutRecord,
    InstrumentRecord,
    LedgerRecord,
    MeasurementRecord,
    RunRecord,
    StationRecord,
    TestRecord,
    utc_now,
)
from bench.record.writer import RECORD_NAME, write_record

# a test's outcome is the worst of its phases' (setup, call, teardown)
RANK = {"passed": 0, "skipped": 1, "not covered": 1, "failed": 2, "error": 3}
RUN_FILE_TITLES = {
    "junit.xml": "JUnit XML",
    "report.html": "HTML report",
    "logs/bring-up.log": "bring-up traffic log",
    "logs/session.log": "session traffic log (between tests)",
    "simulator-stderr.log": "simulator error output",
}


@dataclass
class TestInProgress:
    """A test between its start and its teardown report."""

    nodeid: str
    started_at: datetime = field(default_factory=utc_now)
    started_mono: float = field(default_factory=time.monotonic)
    outcome: str = "passed"
    reason: str | None = None
    duration_s: float = 0.0

    def phase(self, outcome: str, reason: str | None, duration_s: float) -> None:
        self.duration_s += duration_s
        if RANK[outcome] > RANK[self.outcome]:
            self.outcome, self.reason = outcome, reason

    def record(
        self,
        run_dir: Path,
        measurements: Iterable[Any] = (),
        files: Iterable[tuple[Path, str]] = (),
        outcome: str | None = None,
        reason: str | None = None,
        counterexample: dict | None = None,
    ) -> TestRecord:
        """The test as recorded: its outcome (or the one given, e.g. "interrupted"), its
        measurements and the files it left that exist."""
        return TestRecord(
            nodeid=self.nodeid,
            outcome=outcome or self.outcome,
            reason=reason if outcome else self.reason,
            started_at=self.started_at,
            ended_at=utc_now(),
            duration_s=round(max(self.duration_s, 0.0), 3),
            measurements=[MeasurementRecord.of(m) for m in measurements],
            attachments=[AttachmentRecord.of_file(path, run_dir, title) for path, title in files if path.is_file()],
            counterexample=counterexample,
        )


def new_run_record(rig: Any, run_id: str, *, operator: str, bench_version: str, pytest_version: str) -> RunRecord:
    """A run's record as it starts, from its rig (bench.rig.Rig)."""
    return RunRecord(
        run_id=run_id,
        status="running",
        started_at=utc_now(),
        bench_version=bench_version,
        python_version=platform.python_version(),
        pytest_version=pytest_version,
        station=StationRecord(
            id=rig.station.id,
            location=rig.station.location,
            host=socket.gethostname(),
            operator=operator,
            rig_file=str(rig.source) if rig.source else None,
            rig_sha256=rig.sha256 or None,
            virtual=rig.virtual,
            sim_faults=list(rig.sim.faults) if rig.virtual else [],
        ),
        dut=DutRecord(rig.dut.adapter, rig.dut.serial_number, rig.dut.hardware_model, rig.dut.firmware_version),
        instruments=[InstrumentRecord("psu", rig.psu.resource, rig.psu.profile, rig.psu.channel, None)],
    )


def note_rig_session(record: RunRecord, session: Any) -> None:
    """The instruments' and the DUT's own account of themselves, once the rig is up
    (session: bench.station.rig_session.RigSession)."""
    psu = record.instruments[0]
    if psu.idn is None:
        record.instruments[0] = InstrumentRecord(
            "psu",
            str(getattr(session.psu, "resource", psu.resource)),
            psu.profile,
            int(getattr(session.psu, "channel", psu.channel)),
            session.psu_idn or None,
        )
    ident = session.identity
    if ident is not None:
        record.dut.identity = DutIdentity(
            "ID", ident.model, ident.firmware, ident.protocol, ident.serial_number, sorted(ident.capabilities)
        )
    elif record.dut.identity is None:
        record.dut.identity = banner_identity(session.first_banner)
    t = session.tokens
    record.ledger = LedgerRecord(
        str(t.ledger.path), "fresh" if t.fresh else "ledger", session.ledger_bring_up, list(t.findings)
    )


def banner_identity(banner: Any) -> DutIdentity | None:
    """What a boot banner (parsed by the adapter) says of the DUT: model, firmware, protocol."""
    f = banner.fields
    return (
        DutIdentity("boot banner", f.get("model"), f.get("fw"), f.get("proto"), None, None) if f.get("model") else None
    )


def run_file_attachments(record: RunRecord, run_dir: Path, elsewhere: Mapping[Path, str]) -> list[AttachmentRecord]:
    """Every file of the run not already listed under a test, and the files written elsewhere
    (path -> title: --junitxml, --html), hashed; the record file itself is not one of them."""
    listed = {a.path for t in record.tests for a in t.attachments}
    paths = sorted(p for p in run_dir.rglob("*") if p.is_file()) if run_dir.is_dir() else []
    inside = {p.resolve() for p in paths}
    paths += [p for p in elsewhere if p.is_file() and p.resolve() not in inside]
    titles = {p.resolve(): title for p, title in elsewhere.items()}
    out = []
    for path in paths:
        if (path.name in (RECORD_NAME, OWNER_FILE) and path.parent == run_dir) or path.name.startswith(
            f".{RECORD_NAME}."
        ):
            continue
        try:
            att = AttachmentRecord.of_file(path, run_dir, "")
        except OSError:  # vanished meanwhile
            continue
        if att.path in listed:
            continue
        title = RUN_FILE_TITLES.get(att.path) or titles.get(path.resolve()) or "file of the run"
        out.append(AttachmentRecord(att.path, title, att.sha256, att.size))
    return out


class RecordFile:
    """record.json in the run directory. A write that fails (a full disk) does not end the run
    here: the file keeps its last whole version (writes are atomic), and the first failure is
    kept, in one line naming the file and the errno, for the run to stop on and say."""

    def __init__(self, run_dir: Path, secrets: Iterable[Any]) -> None:
        self.run_dir = run_dir
        self.secrets = list(secrets)
        self.error: str | None = None

    @property
    def path(self) -> Path:
        return self.run_dir / RECORD_NAME

    def write(self, record: RunRecord) -> None:
        record.updated_at = utc_now()
        try:
            write_record(self.run_dir, record, self.secrets)
        except OSError as e:
            self.error = self.error or cannot("write", self.path, e)
