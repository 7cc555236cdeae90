"""The detection matrix, built from suite results alone (pure: no runs, no files).

Each fault × device test cell says whether the test caught the defect it is named for, missed
it, failed where the catalogue does not expect it, or never ran; a fault is caught exactly when
its named tests fail and every other test passes (the rule tests/selftest/test_fault_detection.py
enforces). The good device's runs are summarised by how many consecutive full passes they made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bench.detection.catalogue import Fault
from bench.report.junit import CaseResult

CAUGHT = "caught"  # failed, and the catalogue names it
MISSED = "missed"  # the catalogue names it, but it passed
UNEXPECTED = "unexpected failure"  # failed, but the catalogue does not name it
NOT_RUN = "not run"  # skipped or not collected in this run
PASSED = "passed"  # passed, and the catalogue does not name it (not expected to fail)
FOUND = "found"  # an explorer (the random walk) failed where the catalogue does not name it: it found the defect

_FAILED = ("failed", "error")


@dataclass(frozen=True)
class SuiteRun:
    """What one device-suite run left: per-test results, or why there are none."""

    results: Mapping[str, CaseResult] = field(default_factory=dict)
    error: str = ""  # the run itself failed (no JUnit file, timeout)


@dataclass(frozen=True)
class Cell:
    state: str  # CAUGHT | MISSED | UNEXPECTED | NOT_RUN | PASSED
    expected: bool  # the catalogue names this test for this fault
    message: str = ""  # the test's failure or skip message


@dataclass(frozen=True)
class FaultRow:
    fault: Fault
    cells: Mapping[str, Cell]  # device test node id → cell
    error: str = ""

    def count(self, state: str) -> int:
        return sum(1 for c in self.cells.values() if c.state == state)

    @property
    def exact(self) -> bool:
        """Every named test failed and every other one passed."""
        return not self.error and all(c.state in (CAUGHT, PASSED, FOUND) for c in self.cells.values())

    @property
    def verdict(self) -> str:
        if self.error:
            return "run failed"
        if self.exact:
            return "caught exactly"
        parts = [f"{n} {s}" for s in (MISSED, UNEXPECTED, NOT_RUN) if (n := self.count(s))]
        return ", ".join(parts)


@dataclass(frozen=True)
class GoodSummary:
    """The good device's runs, in run order: full = every test ran and passed."""

    total: int
    full: tuple[bool, ...]
    problems: Mapping[int, str]  # run number (1-based) → what went wrong

    @property
    def passed(self) -> int:
        return sum(self.full)

    @property
    def consecutive(self) -> int:
        """The longest streak of full passes."""
        best = streak = 0
        for ok in self.full:
            streak = streak + 1 if ok else 0
            best = max(best, streak)
        return best

    @property
    def ok(self) -> bool:
        return self.total > 0 and self.passed == self.total


@dataclass(frozen=True)
class NoResetCell:
    """A fault on the device without factory reset and RTC set (its tests run from the device
    ledger): caught when a test the catalogue names fails there; n/a when none of them can run
    on such a device (they need what it lacks)."""

    state: str  # caught | missed | n/a | run failed
    failed: tuple[str, ...] = ()  # the named tests that failed
    passed: tuple[str, ...] = ()  # the named tests that ran and passed
    error: str = ""

    @property
    def text(self) -> str:
        if self.state == CAUGHT:
            return f"caught ({len(self.failed)} of {len(self.failed) + len(self.passed)})"
        return self.state


def no_reset_cell(fault: Fault, run: SuiteRun) -> NoResetCell:
    if run.error:
        return NoResetCell("run failed", error=run.error)
    outcomes = {t: run.results[t].outcome for t in fault.caught_by if t in run.results}
    failed = tuple(t for t, o in outcomes.items() if o in _FAILED)
    passed = tuple(t for t, o in outcomes.items() if o == "passed")
    if failed:
        return NoResetCell(CAUGHT, failed, passed)
    return NoResetCell(MISSED if passed else "n/a", failed, passed)


def no_reset_good(run: SuiteRun) -> GoodSummary:
    """The good device without factory reset: every test that can run there passes (those that
    need a factory reset are not covered, which is no failure)."""
    failed = {n: r.outcome for n, r in run.results.items() if r.outcome in _FAILED}
    problem = (
        run.error.splitlines()[0]
        if run.error
        else ("no tests ran" if not run.results else ", ".join(f"{n}: {o}" for n, o in sorted(failed.items())))
    )
    ok = not problem
    return GoodSummary(1, (ok,), {} if ok else {1: problem})


@dataclass(frozen=True)
class Matrix:
    tests: tuple[str, ...]  # the columns, grouped by file
    rows: tuple[FaultRow, ...]
    good: GoodSummary
    no_reset: Mapping[str, NoResetCell] = field(default_factory=dict)  # fault -> the no-reset column
    no_reset_good: GoodSummary | None = None

    @property
    def no_reset_ok(self) -> bool:
        return all(c.state in (CAUGHT, "n/a") for c in self.no_reset.values()) and (
            self.no_reset_good is None or self.no_reset_good.ok
        )

    @property
    def caught_exactly(self) -> int:
        return sum(r.exact for r in self.rows)

    def catches(self, test: str) -> int:
        """How many faults this test caught (where the catalogue names it)."""
        return sum(1 for r in self.rows if r.cells[test].state == CAUGHT)

    @property
    def ok(self) -> bool:
        """Every fault caught exactly and every good run a full pass; in the no-reset column every
        fault that applies caught and the good device passing."""
        return self.caught_exactly == len(self.rows) and (self.good.ok or self.good.total == 0) and self.no_reset_ok


def cell(result: CaseResult | None, expected: bool, explorer: bool = False) -> Cell:
    if result is None or result.outcome not in ("passed", *_FAILED):
        return Cell(NOT_RUN, expected, result.message if result else "not collected")
    if result.outcome in _FAILED:
        return Cell(CAUGHT if expected else (FOUND if explorer else UNEXPECTED), expected, result.message)
    return Cell(MISSED if expected else PASSED, expected)


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def columns(runs: Sequence[SuiteRun], expected: Sequence[str]) -> tuple[str, ...]:
    """Every test any run reported or the catalogue names, grouped by file (files sorted, tests
    in the order they ran)."""
    seen: dict[str, None] = {}
    for run in runs:
        seen.update(dict.fromkeys(run.results))
    seen.update(dict.fromkeys(expected))
    order = {t: i for i, t in enumerate(seen)}
    return tuple(sorted(seen, key=lambda t: (file_of(t), order[t])))


def fault_row(fault: Fault, run: SuiteRun, tests: Sequence[str], explorers: frozenset[str] = frozenset()) -> FaultRow:
    expected = set(fault.caught_by)
    cells = {t: cell(run.results.get(t), t in expected, t in explorers) for t in tests}
    if run.error:
        cells = {t: Cell(NOT_RUN, t in expected, "the run failed") for t in tests}
    return FaultRow(fault, cells, run.error)


def good_summary(runs: Sequence[SuiteRun]) -> GoodSummary:
    full, problems = [], {}
    for i, run in enumerate(runs, 1):
        bad = {n: r.outcome for n, r in run.results.items() if r.outcome != "passed"}
        if run.error:
            problems[i] = run.error.splitlines()[0] if run.error else "run failed"
        elif not run.results:
            problems[i] = "no tests ran"
        elif bad:
            problems[i] = ", ".join(f"{n}: {o}" for n, o in sorted(bad.items()))
        full.append(i not in problems)
    return GoodSummary(len(runs), tuple(full), problems)


def build_matrix(
    fault_runs: Mapping[str, SuiteRun],
    catalogue: Mapping[str, Fault],
    good_runs: Sequence[SuiteRun] = (),
    no_reset_runs: Mapping[str, SuiteRun] | None = None,
    no_reset_good_run: SuiteRun | None = None,
    explorers: frozenset[str] = frozenset(),
) -> Matrix:
    """One row per fault in fault_runs (catalogue order), judged against its catalogue entry;
    with the no-reset column's runs (by fault) where they were made."""
    names = [n for n in catalogue if n in fault_runs]
    unknown = set(fault_runs) - set(catalogue)
    if unknown:
        raise KeyError(f"not in the fault catalogue: {sorted(unknown)}")
    expected = [t for n in names for t in catalogue[n].caught_by]
    tests = columns([*fault_runs.values(), *good_runs], expected)
    rows = tuple(fault_row(catalogue[n], fault_runs[n], tests, explorers) for n in names)
    column = {n: no_reset_cell(catalogue[n], run) for n, run in (no_reset_runs or {}).items()}
    return Matrix(
        tests,
        rows,
        good_summary(good_runs),
        column,
        no_reset_good(no_reset_good_run) if no_reset_good_run is not None else None,
    )
