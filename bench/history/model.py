"""What the history keeps of one run: plain frozen dataclasses, so the analysis is pure functions
on plain data and the results database only holds them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bench.record.model import Counts

FAILING = ("failed", "error")  # the check failed, or its setup/teardown did
PASSING = ("passed",)
# A 1.x record's status, as the verdict it stood for (1.x had no suite profiles: a pass then meant
# only that nothing failed).
V1_VERDICTS = {"passed": "PASSED", "failed": "FAILED", "interrupted": "INCOMPLETE", "error": "BENCH ERROR"}
V1_LIFECYCLE = {"running": "running", "interrupted": "interrupted"}  # every other status: finished


@dataclass(frozen=True)
class MeasurementRow:
    nodeid: str
    name: str
    value: float | None  # None: not a finite number (see value_text)
    value_text: str | None  # what was recorded when it is not a finite number ("nan", "True", a string)
    unit: str
    low: float | None
    high: float | None
    outcome: str  # PASS | FAIL


@dataclass(frozen=True)
class TestRow:
    __test__ = False  # a row, not a pytest test class

    nodeid: str
    outcome: str  # passed, failed, error, skipped, not covered, interrupted
    reason: str | None
    duration_s: float | None


@dataclass(frozen=True)
class RunRow:
    run_id: str
    record_path: str  # relative to the reports directory, "/"-separated
    record_sha256: str
    station: str
    rig_file: str | None
    rig_sha256: str | None  # None: the built-in virtual rig
    sim_faults: tuple[str, ...]
    operator: str
    status: str  # the run's lifecycle: running, finished, interrupted
    status_reason: str | None
    verdict: str | None  # PASSED, FAILED, INCOMPLETE, BENCH ERROR; None while running (or killed)
    verdict_reason: str | None
    suite: str | None  # the suite profile's name; None for a 1.x record (before suite profiles)
    suite_required: int | None  # how many tests the profile required, and how many ran and passed
    suite_covered: int | None
    tests_sha256: str  # SHA-256 of the sorted node ids in the record: runs given the same tests share it
    started_at: datetime  # UTC
    ended_at: datetime | None
    bench_version: str
    dut_serial: str
    dut_model: str
    dut_firmware: str
    counts: Counts = Counts(0)  # the record's own counts, as it wrote them
    updated_at: datetime | None = None  # the record's last write: of two records of one run, the newer wins

    @property
    def group(self) -> tuple[str, str | None, str | None]:
        """Runs compared with each other: the same station, rig file and suite profile."""
        return (self.station, self.rig_sha256, self.suite)

    @property
    def setup(self) -> tuple:
        """Everything whose change can explain a different outcome: rig file, bench, DUT, faults."""
        return (
            self.station,
            self.rig_sha256,
            self.bench_version,
            self.dut_serial,
            self.dut_model,
            self.dut_firmware,
            self.sim_faults,
        )


@dataclass(frozen=True)
class RunData:
    run: RunRow
    tests: tuple[TestRow, ...] = ()  # in run order; a nodeid may repeat (a rerun inside the run)
    measurements: tuple[MeasurementRow, ...] = ()
