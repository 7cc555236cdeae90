"""The verdict on plain data (bench/record/verdict.py): every precedence case, the coverage of a
suite profile's required tests, and the one-line reasons a lab reads."""

from __future__ import annotations

import pytest

from bench.record.verdict import (
    BENCH_ERROR,
    EXIT_CODES,
    FAILED,
    INCOMPLETE,
    PASSED,
    USAGE_EXIT,
    VERDICTS,
    Coverage,
    Missing,
    RequiredState,
    SessionEnd,
    TestOutcome,
    coverage,
    final_outcomes,
    judge,
)

P = "tests/device/"
A, B, C, D, E = (f"{P}test_{x}.py::test_{x}" for x in "abcde")
DEVICE = frozenset({A, B, C, D, E})
ALL_SELECTED = SessionEnd(device_tests=5, device_selected=5, device_ids=DEVICE)


def short(nodeid: str) -> str:
    return nodeid.removeprefix(P)


def outcomes(**by_letter: str) -> list[TestOutcome]:
    nodes = {"a": A, "b": B, "c": C, "d": D, "e": E}
    return [TestOutcome(nodes[k], o, None if o == "passed" else f"{o}: because {k}") for k, o in by_letter.items()]


def cov(tests: list[TestOutcome], required=(A, B), why: dict[str, str] | None = None) -> Coverage:
    states = [RequiredState(n, (why or {}).get(n)) for n in required]
    return coverage("quick", "Quick check", states, final_outcomes(tests))


def verdict(end: SessionEnd, tests: list[TestOutcome], required=(A, B), why=None):
    return judge(end, tests, cov(tests, required, why), short)


def test_every_verdict_has_its_own_exit_code_and_usage_errors_another():
    assert set(VERDICTS) == set(EXIT_CODES) == {PASSED, FAILED, INCOMPLETE, BENCH_ERROR}
    assert [EXIT_CODES[v] for v in (PASSED, FAILED, INCOMPLETE, BENCH_ERROR)] == [0, 1, 2, 3]
    assert USAGE_EXIT == 4


def test_passed_needs_every_required_test_run_and_passed():
    tests = outcomes(a="passed", b="passed", c="passed")
    v = verdict(ALL_SELECTED, tests)
    assert (v.verdict, v.exit_code) == (PASSED, 0)
    assert v.reason == "2 of 2 required tests ran and passed (suite quick)"
    assert v.line() == f"PASSED: {v.reason}"


def test_passed_still_says_what_did_not_run_outside_the_required_set():
    v = verdict(ALL_SELECTED, outcomes(a="passed", b="passed", c="not covered", d="skipped", e="not covered"))
    assert v.verdict == PASSED
    assert v.reason.endswith("; not required: 2 not covered, 1 skipped"), v.reason


@pytest.mark.parametrize("outcome", ["not covered", "skipped"])
def test_a_required_test_not_run_makes_it_incomplete_naming_it_and_why(outcome):
    tests = outcomes(a="passed", b=outcome, c="passed")
    v = verdict(ALL_SELECTED, tests)
    assert (v.verdict, v.exit_code) == (INCOMPLETE, 2)
    assert v.reason == f"1 of 2 required tests ran (suite quick); missing: test_b.py::test_b ({outcome}: because b)"


def test_missing_tests_are_named_up_to_three_then_counted():
    tests = outcomes(a="passed", b="skipped", c="skipped", d="skipped", e="skipped")
    v = verdict(ALL_SELECTED, tests, required=(A, B, C, D, E))
    assert v.verdict == INCOMPLETE
    assert v.reason.startswith(
        "1 of 5 required tests ran (suite quick); missing: test_b.py::test_b (skipped: because b), "
    )
    assert v.reason.endswith("test_d.py::test_d (skipped: because d) and 1 more"), v.reason
    assert "\n" not in v.reason


def test_coverage_says_why_each_required_test_did_not_count():
    tests = [
        TestOutcome(A, "passed"),
        TestOutcome(B, "not covered", "not covered: the hdk adapter lacks 'identity'"),
        TestOutcome(C, "error", "setup: boom"),
    ]
    c = cov(
        tests,
        required=(A, B, C, D, E, f"{P}test_f.py::test_f"),
        why={E: "deselected (-k, -m or --deselect)", f"{P}test_f.py::test_f": "not collected"},
    )
    assert (c.required, c.covered) == (6, 1)
    assert c.missing == (
        Missing(B, "not covered: the hdk adapter lacks 'identity'"),  # the reason already says what it was
        Missing(C, "error: setup: boom"),
        Missing(D, "not run"),  # selected, but the run never reached it
        Missing(E, "deselected (-k, -m or --deselect)"),
        Missing(f"{P}test_f.py::test_f", "not collected"),
    )
    assert c.text() == "1 of 6 required (suite quick)"


def test_a_rerun_counts_by_its_last_outcome():
    tests = [TestOutcome(A, "failed", "flaky"), TestOutcome(A, "passed"), TestOutcome(B, "passed")]
    assert cov(tests).covered == 2


def test_a_failed_test_is_failed_naming_the_first_with_its_reason():
    tests = outcomes(a="passed", b="failed", c="error", d="failed")
    v = verdict(ALL_SELECTED, tests)
    assert (v.verdict, v.exit_code) == (FAILED, 1)
    assert v.reason == "2 failed, 1 error (test_b.py::test_b: failed: because b)"


def test_an_error_alone_is_failed():
    v = verdict(ALL_SELECTED, outcomes(a="passed", b="error"))
    assert v.verdict == FAILED and v.reason.startswith("1 error (test_b.py::test_b"), v.reason


def test_failed_wins_over_incomplete_and_interrupted():
    end = SessionEnd(interrupted="KeyboardInterrupt", device_tests=5, device_selected=5, device_ids=DEVICE)
    assert verdict(end, outcomes(a="failed", b="interrupted")).verdict == FAILED


@pytest.mark.parametrize(
    "end, says",
    [
        (
            SessionEnd(rig_broken="cannot open serial port /dev/x: gone"),
            "rig broken: cannot open serial port /dev/x: gone",
        ),
        (SessionEnd(bench_gave_up="the virtual rig did not start: no pty"), "the virtual rig did not start: no pty"),
        (SessionEnd(internal_error="RuntimeError: a plugin crashed"), "internal error: RuntimeError: a plugin crashed"),
        (SessionEnd(usage_error=True), "usage error: pytest refused its arguments"),
        (
            SessionEnd(write_error="cannot write reports/x/record.json: [Errno 28] No space left on device"),
            "cannot write reports/x/record.json: [Errno 28] No space left on device",
        ),
    ],
)
def test_a_broken_rig_or_bench_is_bench_error_never_the_device(end, says):
    tests = outcomes(a="failed", b="passed")  # a device failure before: still not the device's verdict
    v = verdict(end, tests)
    assert (v.verdict, v.exit_code) == (BENCH_ERROR, 3)
    assert v.reason.startswith(says), v.reason
    assert v.reason.endswith("; 1 other test failed or errored"), v.reason


def test_the_test_that_found_the_rig_broken_is_not_counted_again():
    broke = "cannot open serial port /dev/x: gone"
    tests = [
        TestOutcome(A, "error", f"setup: PortOpenError: {broke}"),
        TestOutcome(B, "skipped", f"rig broken: {broke}"),
    ]
    v = verdict(SessionEnd(rig_broken=broke), tests)
    assert v.verdict == BENCH_ERROR and v.reason == f"rig broken: {broke}"


def test_a_test_that_failed_on_a_file_of_the_run_is_not_counted_as_the_devices():
    full = "cannot write reports/x/ledger.sqlite: [Errno 28] No space left on device"
    tests = [TestOutcome(A, "failed", full), TestOutcome(B, "passed")]
    v = verdict(SessionEnd(write_error=full, bench_gave_up="ledger: x", bench_failed=frozenset({A})), tests)
    assert (v.verdict, v.reason) == (BENCH_ERROR, full)  # the write first: what gave up after may follow from it
    v = verdict(SessionEnd(write_error=full), tests)
    assert v.reason == f"{full}; 1 other test failed or errored"


def test_the_rig_breaking_wins_over_everything_else():
    end = SessionEnd(rig_broken="PSU silent", internal_error="x", interrupted="Ctrl-C", write_error="y")
    assert verdict(end, []).reason == "rig broken: PSU silent"


def test_an_interrupted_run_is_incomplete_even_when_all_required_passed():
    end = SessionEnd(
        interrupted="KeyboardInterrupt (Ctrl-C or SIGINT)", device_tests=5, device_selected=5, device_ids=DEVICE
    )
    v = verdict(end, outcomes(a="passed", b="passed"))
    assert (v.verdict, v.exit_code) == (INCOMPLETE, 2)
    assert v.reason == "interrupted (KeyboardInterrupt (Ctrl-C or SIGINT)); 2 of 2 required tests ran (suite quick)"


def test_a_lab_s_own_tests_are_judged_as_themselves_never_as_the_device_suite():
    """Tests outside the device suite (a lab's own, with the bench's fixtures): no suite profile
    applies; the verdict says so, and never claims a device-suite coverage."""
    own = [TestOutcome("mytests/test_lab.py::test_y", "passed"), TestOutcome("mytests/test_lab.py::test_z", "skipped")]
    v = verdict(SessionEnd(), own)
    assert (v.verdict, v.exit_code) == (PASSED, 0)
    assert v.reason == (
        "1 test ran and passed; no device-suite test in this run, so no suite profile applies; not run: 1 skipped"
    ), v.reason
    failed = verdict(SessionEnd(), [TestOutcome("mytests/test_lab.py::test_y", "failed", "boom")])
    assert failed.verdict == FAILED


@pytest.mark.parametrize(
    "end, tests, why",
    [
        (SessionEnd(collect_only=True, device_tests=5, device_selected=5, device_ids=DEVICE), [], "--collect-only"),
        (SessionEnd(), [], "none collected from the device suite"),
        (SessionEnd(device_tests=5, device_selected=0, device_ids=DEVICE), [], "all 5 deselected"),
        (ALL_SELECTED, outcomes(a="not covered", b="skipped"), "every one skipped or not covered"),
    ],
)
def test_a_run_where_no_device_test_ran_is_incomplete_never_passed(end, tests, why):
    v = verdict(end, tests)
    assert (v.verdict, v.exit_code) == (INCOMPLETE, 2)
    assert v.reason == f"no device test ran ({why}); 0 of 2 required tests ran (suite quick)", v.reason


UNSAFE = "supply NOT confirmed off: PSU at TCPIP0::10.0.0.5::5025::SOCKET: output still at 12.000 V"


def test_a_supply_not_confirmed_safe_is_bench_error_whatever_the_tests_said():
    end = SessionEnd(device_tests=5, device_selected=5, device_ids=DEVICE, unsafe_supply=UNSAFE)
    v = verdict(end, outcomes(a="passed", b="passed"))
    assert (v.verdict, v.exit_code, v.reason) == (BENCH_ERROR, 3, UNSAFE)
    v = verdict(end, outcomes(a="failed", b="passed"))  # never a device failure while the supply is unsafe
    assert v.verdict == BENCH_ERROR and v.reason == f"{UNSAFE}; 1 other test failed or errored", v.reason
    interrupted = SessionEnd(interrupted="SIGTERM", device_tests=5, device_ids=DEVICE, unsafe_supply=UNSAFE)
    assert verdict(interrupted, outcomes(a="passed")).verdict == BENCH_ERROR


def test_the_cause_comes_first_then_the_supply_it_left_unsafe():
    end = SessionEnd(rig_broken="PSU at X: the PSU closed the connection", unsafe_supply=UNSAFE)
    assert verdict(end, []).reason == f"rig broken: PSU at X: the PSU closed the connection; {UNSAFE}"


def test_a_supply_left_unsafe_by_the_fault_that_broke_the_rig_says_it_once():
    fault = "PSU at X: output still at 12.000 V; it reports its output on"
    end = SessionEnd(rig_broken=fault, unsafe_supply=f"supply NOT confirmed off: {fault}")
    assert verdict(end, []).reason == f"rig broken: {fault}; supply NOT confirmed off: the same fault"
