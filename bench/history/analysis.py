"""What a series of runs says: new failures and fixes since the previous run, flaky tests, and
the key measurements per run. Pure functions on plain data (bench.history.model); the
definitions are in docs/history.md and the unit tests hold them to it."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from bench.history.model import FAILING, PASSING, MeasurementRow, RunData

# Shown by default: the RTC's drift (test_rtc_drift.py) and the slowest G8 token decode
# (test_token_procedure.py measures G8A_decode_time .. G8U_decode_time).
DEFAULT_MEASUREMENTS = ("rtc_drift", "G8*_decode_time")


# -- outcomes ----------------------------------------------------------------------------------


def final_outcomes(run: RunData) -> dict[str, str]:
    """Each test's outcome in a run: its last entry (a rerun inside the run comes after)."""
    return {t.nodeid: t.outcome for t in run.tests}


def _reason(run: RunData, nodeid: str) -> str | None:
    for t in reversed(run.tests):
        if t.nodeid == nodeid:
            return t.reason
    return None


@dataclass(frozen=True)
class TestChange:
    __test__ = False

    nodeid: str
    before: str  # outcome in the previous run
    now: str  # outcome in the newer run
    reason: str | None  # the newer run's reason (why it fails now), None when it passes


@dataclass(frozen=True)
class RunChanges:
    """A run against the last earlier run of the same station, rig file and suite that was given
    the same tests (previous_id None: there is none; `earlier` says whether the group had any)."""

    run_id: str
    previous_id: str | None
    new_failures: tuple[TestChange, ...]
    fixed: tuple[TestChange, ...]
    earlier: int = 0  # earlier runs of the same station, rig file and suite, comparable or not


def compare(previous: RunData | None, run: RunData, earlier: int = 0) -> RunChanges:
    """New failures: failed/error now, passed in the previous run. Fixed: the opposite. A test the
    previous run did not run (or skipped) is neither."""
    if previous is None:
        return RunChanges(run.run.run_id, None, (), (), earlier)
    before, now = final_outcomes(previous), final_outcomes(run)
    new, fixed = [], []
    for nodeid, outcome in now.items():
        was = before.get(nodeid)
        if outcome in FAILING and was in PASSING:
            new.append(TestChange(nodeid, was, outcome, _reason(run, nodeid)))
        elif outcome in PASSING and was in FAILING:
            fixed.append(TestChange(nodeid, was, outcome, None))
    return RunChanges(run.run.run_id, previous.run.run_id, tuple(new), tuple(fixed), earlier)


def by_group(runs: Iterable[RunData]) -> dict[tuple, list[RunData]]:
    """Runs of the same station, rig file and suite, oldest first."""
    groups: dict[tuple, list[RunData]] = defaultdict(list)
    for run in runs:
        groups[run.run.group].append(run)
    for members in groups.values():
        members.sort(key=lambda r: (r.run.started_at, r.run.run_id))
    return dict(groups)


def comparable(members: Sequence[Any], run: Any) -> Any:
    """The last of `members` (one group, oldest first, RunRow or RunData) before `run` that was
    given the same tests; None when none was."""
    row = getattr(run, "run", run)
    i = next(k for k, m in enumerate(members) if getattr(m, "run", m).run_id == row.run_id)
    return next((m for m in reversed(members[:i]) if getattr(m, "run", m).tests_sha256 == row.tests_sha256), None)


def latest_changes(runs: Iterable[RunData]) -> list[RunChanges]:
    """For each station/rig/suite, its newest run against the last earlier one given the same tests."""
    out = []
    for members in by_group(runs).values():
        newest = members[-1]
        out.append(compare(comparable(members, newest), newest, len(members) - 1))
    return out


# -- flaky -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flip:
    failed_in: str  # run id
    passed_in: str  # run id (the same run for a rerun inside one run)
    reason: str | None  # why it failed


@dataclass(frozen=True)
class FlakyTest:
    nodeid: str
    flips: tuple[Flip, ...]


def flaky_tests(runs: Iterable[RunData]) -> list[FlakyTest]:
    """A test is flaky when it failed and then passed on a rerun with nothing changed in between:
    (a) in two consecutive runs of the same station and rig file with the same setup (rig file
    hash, bench version, DUT serial, model and firmware, simulator faults), failed/error in the
    first and passed in the second; or (b) within one run, an entry failed/error followed by a
    passed entry of the same test (a rerun plugin; records do not hold reruns today)."""
    flips: dict[str, list[Flip]] = defaultdict(list)
    for members in by_group(runs).values():
        for run in members:
            seen_failing: dict[str, str | None] = {}
            for t in run.tests:
                if t.outcome in FAILING:
                    seen_failing.setdefault(t.nodeid, t.reason)
                elif t.outcome in PASSING and t.nodeid in seen_failing:
                    flips[t.nodeid].append(Flip(run.run.run_id, run.run.run_id, seen_failing.pop(t.nodeid)))
        for a, b in zip(members, members[1:]):
            if a.run.setup != b.run.setup:
                continue
            after = final_outcomes(b)
            for nodeid, outcome in final_outcomes(a).items():
                if outcome in FAILING and after.get(nodeid) in PASSING:
                    flips[nodeid].append(Flip(a.run.run_id, b.run.run_id, _reason(a, nodeid)))
    return [FlakyTest(nodeid, tuple(f)) for nodeid, f in sorted(flips.items())]


# -- key measurements --------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyValue:
    """A key measurement of one run. When several measurements match the name (a glob such as
    G8*_decode_time, or a name two tests measure) it is the one farthest from zero, and FAIL if
    any of them failed."""

    spec: str
    value: float | None
    text: str | None  # the recorded value when not a finite number
    unit: str
    low: float | None
    high: float | None
    outcome: str  # PASS | FAIL
    matched: int  # how many measurements matched


def key_value(measurements: Sequence[MeasurementRow], spec: str) -> KeyValue | None:
    matched = [m for m in measurements if fnmatchcase(m.name, spec)]
    if not matched:
        return None
    numbers = [m for m in matched if m.value is not None and math.isfinite(m.value)]
    pick = max(numbers, key=lambda m: abs(m.value or 0.0)) if numbers else matched[-1]
    outcome = "FAIL" if any(m.outcome == "FAIL" for m in matched) else "PASS"
    return KeyValue(spec, pick.value, pick.value_text, pick.unit, pick.low, pick.high, outcome, len(matched))


def column_units(runs: Iterable[RunData], specs: Sequence[str]) -> dict[str, str]:
    """Each key measurement's unit, as the newest run that has it recorded it."""
    units: dict[str, str] = {}
    for run in runs:
        for spec in specs:
            kv = key_value(run.measurements, spec)
            if kv is not None:
                units[spec] = kv.unit
    return units


@dataclass(frozen=True)
class TrendPoint:
    when: datetime  # the run's start, UTC
    run_id: str
    value: float
    outcome: str
    low: float | None
    high: float | None


@dataclass(frozen=True)
class TrendSeries:
    spec: str
    unit: str
    points: tuple[TrendPoint, ...]


def trend(runs: Sequence[RunData], specs: Sequence[str]) -> list[TrendSeries]:
    """One series per key measurement over the runs (oldest first); runs without a finite value
    for it leave a gap rather than a zero."""
    out = []
    for spec in specs:
        points, unit = [], ""
        for run in sorted(runs, key=lambda r: (r.run.started_at, r.run.run_id)):
            kv = key_value(run.measurements, spec)
            if kv is None or kv.value is None:
                continue
            unit = kv.unit
            points.append(TrendPoint(run.run.started_at, run.run.run_id, kv.value, kv.outcome, kv.low, kv.high))
        out.append(TrendSeries(spec, unit, tuple(points)))
    return out


# -- the lab-wide view -------------------------------------------------------------------------


@dataclass(frozen=True)
class FirmwareSuite:
    """Which firmware passed which suite profile: one product, firmware version and suite, over
    every station's runs. A run still running (no verdict) counts in `running`."""

    product: str  # the DUT's model ("" when neither the device nor the rig said)
    firmware: str
    suite: str | None  # None: 1.x records, before suite profiles
    passed: int
    failed: int
    incomplete: int
    bench_error: int
    running: int
    stations: tuple[str, ...]
    last_run: str  # run id of the newest run
    last_verdict: str  # its verdict (or lifecycle while it has none)
    last_started: datetime


def firmware_matrix(rows: Iterable[Any]) -> list[FirmwareSuite]:
    """One entry per product, firmware version and suite profile of the runs (RunRow), sorted by
    them; counts by verdict and the newest run."""
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        groups[(r.dut_model, r.dut_firmware, r.suite)].append(r)
    out = []
    for (product, firmware, suite), members in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "")
    ):
        verdicts = [r.verdict for r in members]
        last = max(members, key=lambda r: (r.started_at, r.run_id))
        out.append(
            FirmwareSuite(
                product,
                firmware,
                suite,
                verdicts.count("PASSED"),
                verdicts.count("FAILED"),
                verdicts.count("INCOMPLETE"),
                verdicts.count("BENCH ERROR"),
                verdicts.count(None),
                tuple(sorted({r.station for r in members})),
                last.run_id,
                last.verdict or last.status,
                last.started_at,
            )
        )
    return out
