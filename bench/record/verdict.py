"""The run's verdict: one of four, judged once when the session ends, from plain data.

- BENCH ERROR: the rig or the bench broke (the supply not confirmed in its safe state at the
  end, a port missing, a PSU silent, the simulator not starting, pytest failing inside, a file of
  the run not written): nothing may be concluded about the device, and it is never blamed on it.
- FAILED: a test failed or errored.
- INCOMPLETE: the run was interrupted, ran no device test, or a test the suite profile requires
  did not run and pass (not covered, skipped, deselected, not collected).
- PASSED: every required test ran and passed.

They are checked in that order. Each has its own exit code, shared by `paygo-bench run` and a
pytest session that ran device tests with a record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

PASSED, FAILED, INCOMPLETE, BENCH_ERROR = "PASSED", "FAILED", "INCOMPLETE", "BENCH ERROR"
VERDICTS = (PASSED, FAILED, INCOMPLETE, BENCH_ERROR)
EXIT_CODES = {PASSED: 0, FAILED: 1, INCOMPLETE: 2, BENCH_ERROR: 3}
USAGE_EXIT = 4  # paygo-bench's own command-line usage errors
FAILING = ("failed", "error")
RAN = ("passed", "failed")  # a test that ran its check; skipped / not covered / deselected did not
SHOWN_MISSING = 3  # how many missing tests the one-line reason names


@dataclass(frozen=True)
class Missing:
    nodeid: str
    why: str


@dataclass(frozen=True)
class Coverage:
    """How much of the suite profile's required tests the run covered: `covered` of `required`."""

    name: str
    title: str
    required: int
    covered: int
    missing: tuple[Missing, ...] = ()

    def text(self) -> str:
        return f"{self.covered} of {self.required} required (suite {self.name})"


@dataclass(frozen=True)
class RequiredState:
    """A required test as collection left it: `why_not_run` is None when it was selected to run,
    else why it could not (deselected, not collected)."""

    nodeid: str
    why_not_run: str | None = None


@dataclass(frozen=True)
class TestOutcome:
    __test__ = False

    nodeid: str
    outcome: str  # the record's test outcomes: passed, failed, error, skipped, not covered, interrupted
    reason: str | None = None


@dataclass(frozen=True)
class SessionEnd:
    """How the session ended, besides the tests' outcomes."""

    rig_broken: str | None = None  # the first line of what broke the rig (fixtures/health.py)
    bench_gave_up: str | None = None  # pytest.exit(..., returncode=3): the simulator could not start
    internal_error: str | None = None
    usage_error: bool = False
    write_error: str | None = None  # a file of the run could not be written: one line, file and errno
    bench_failed: frozenset[str] = field(default_factory=frozenset)  # tests that failed on that, not on the DUT
    interrupted: str | None = None  # Ctrl-C, SIGTERM, SIGHUP, pytest.exit: why
    unsafe_supply: str | None = None  # the supply's safe state not confirmed: the line saying so
    collect_only: bool = False
    device_tests: int = 0  # device-suite tests collected before any deselection
    device_selected: int = 0  # of them, left to run after deselection
    device_ids: frozenset[str] = field(default_factory=frozenset)  # nodeids of the device-suite tests


@dataclass(frozen=True)
class Verdict:
    verdict: str
    reason: str

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def line(self) -> str:
        return f"{self.verdict}: {self.reason}"


def final_outcomes(tests: Iterable[TestOutcome]) -> dict[str, TestOutcome]:
    """Each test's last entry (a rerun inside the run comes after the first)."""
    return {t.nodeid: t for t in tests}


def coverage(name: str, title: str, required: Sequence[RequiredState], outcomes: Mapping[str, TestOutcome]) -> Coverage:
    missing = []
    for r in required:
        got = outcomes.get(r.nodeid)
        if r.why_not_run is not None:
            missing.append(Missing(r.nodeid, r.why_not_run))
        elif got is None:
            missing.append(Missing(r.nodeid, "not run"))
        elif got.outcome != "passed":
            missing.append(Missing(r.nodeid, _why(got)))
    return Coverage(name, title, len(required), len(required) - len(missing), tuple(missing))


def _why(t: TestOutcome) -> str:
    reason = t.reason or ""
    if reason.startswith(t.outcome):
        return reason
    return f"{t.outcome}: {reason}" if reason else t.outcome


def judge(end: SessionEnd, tests: Sequence[TestOutcome], cov: Coverage, short=lambda nodeid: nodeid) -> Verdict:
    """The verdict and its one-line reason; `short` shortens a nodeid for that line."""
    outcomes = final_outcomes(tests)
    bad = [t for t in outcomes.values() if t.outcome in FAILING]
    unsafe = end.unsafe_supply
    if unsafe and end.rig_broken and end.rig_broken in unsafe:  # said once: the fault that broke the rig
        unsafe = unsafe.replace(end.rig_broken, "the same fault")
    broke = "; ".join(x for x in (_bench_error(end), unsafe) if x)  # the cause, then the supply it left
    if broke:  # tests that failed for another reason than the breakage itself are still said
        other = [
            t
            for t in bad
            if not (end.rig_broken and end.rig_broken in (t.reason or "")) and t.nodeid not in end.bench_failed
        ]
        also = f"; {len(other)} other test{'s' * (len(other) != 1)} failed or errored" if other else ""
        return Verdict(BENCH_ERROR, broke + also)
    if bad:
        n_failed = sum(t.outcome == "failed" for t in bad)
        tally = ", ".join(
            x
            for x in (
                f"{n_failed} failed" if n_failed else "",
                f"{len(bad) - n_failed} error" if len(bad) > n_failed else "",
            )
            if x
        )
        first = bad[0]
        return Verdict(FAILED, f"{tally} ({short(first.nodeid)}: {first.reason or first.outcome})")
    ran = [t for t in outcomes.values() if t.nodeid in end.device_ids and t.outcome in RAN]
    own = [t for t in outcomes.values() if t.outcome in RAN]
    if end.device_tests == 0 and own and not end.interrupted:  # a lab's own tests, with the bench's fixtures
        extra = _not_required_extras(outcomes.values())
        return Verdict(
            PASSED,
            f"{len(own)} test{'s' * (len(own) != 1)} ran and passed; no device-suite test in this "
            "run, so no suite profile applies" + (f"; not run: {extra}" if extra else ""),
        )
    of = f"{cov.covered} of {cov.required} required tests ran (suite {cov.name})"
    if end.interrupted:
        return Verdict(INCOMPLETE, f"interrupted ({end.interrupted}); {of}")
    if not ran:
        return Verdict(INCOMPLETE, f"no device test ran ({_why_none_ran(end)}); {of}")
    if cov.covered < cov.required:
        shown = ", ".join(f"{short(m.nodeid)} ({m.why})" for m in cov.missing[:SHOWN_MISSING])
        more = len(cov.missing) - SHOWN_MISSING
        return Verdict(INCOMPLETE, f"{of}; missing: {shown}" + (f" and {more} more" if more > 0 else ""))
    extra = _not_required_extras(outcomes.values())
    return Verdict(
        PASSED,
        f"{cov.covered} of {cov.required} required tests ran and passed (suite {cov.name})"
        + (f"; not required: {extra}" if extra else ""),
    )


def _bench_error(end: SessionEnd) -> str | None:
    if end.rig_broken:
        return f"rig broken: {end.rig_broken}"
    if end.write_error:  # first: what else gave up may be its consequence
        return end.write_error
    if end.bench_gave_up:
        return end.bench_gave_up
    if end.internal_error:
        return f"internal error: {end.internal_error}"
    if end.usage_error:
        return "usage error: pytest refused its arguments"
    return None


def _why_none_ran(end: SessionEnd) -> str:
    if end.collect_only:
        return "--collect-only"
    if end.device_tests == 0:
        return "none collected from the device suite"
    if end.device_selected == 0:
        return f"all {end.device_tests} deselected"
    return "every one skipped or not covered"


def _not_required_extras(outcomes: Iterable[TestOutcome]) -> str:
    """Tests outside the required set that did not run: said, so a PASSED hides nothing."""
    counts: dict[str, int] = {}
    for t in outcomes:
        if t.outcome in ("skipped", "not covered"):
            counts[t.outcome] = counts.get(t.outcome, 0) + 1
    return ", ".join(f"{n} {what}" for what, n in counts.items())
