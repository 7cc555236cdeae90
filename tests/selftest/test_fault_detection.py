"""Trust in the bench: every device check fails on the defect it targets and passes on the good
device (docs/simulator.md "Faults", docs/detection-matrix.md).

For each fault in the simulator's catalogue, the device suite runs against a virtual rig with
that one defect switched on; exactly the tests the catalogue names must fail, and every other test
must pass as it does on the good device. Each fault runs its reduced selection of the suite (the
tests that reach its code, the tests that must catch it, a fixed sample of the rest:
bench/detection/hooks.py) while the full-matrix record (docs/detection-matrix.json, made by
`paygo-bench selftest --docs`) is current; the last tests here hold the two to each other.

The suite runs are independent (each has its own virtual rig) and mostly wait on the simulated
device, so they run side by side: all the runs this session selected start as soon as pytest has
collected (while the other self-tests run) on a pool of PAYGO_SELFTEST_JOBS workers
(bench/detection/runner.py), the longest first, and each test here waits for its own. The same
runs and judgement, for every fault at once and written as a matrix: `paygo-bench selftest`.
"""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from bench.detection.catalogue import CATALOGUE, EXPLORERS
from bench.detection.hooks import RECORD, FullMatrixRecord, read_trace, sources_digest
from bench.detection.matrix import CAUGHT, FOUND, PASSED, SuiteRun, fault_row, no_reset_cell
from bench.detection.render import REGENERATE
from bench.detection.runner import TRACE_DIR
from tests.selftest.device_suite import (
    DETECTION_RUNS_KEY,
    GOOD,
    NO_RESET,
    ROOT,
    DetectionRuns,
    no_reset_selection,
    selected_faults,
    start_detection_runs,
)

# Faults no test can show on a device without factory reset and rtc_set: their only tests provision
# the DUT themselves (another time divider; the provisioning reply; a count at the top of its range)
# or set its clock past lockouts (the streak at its cap).
NOT_APPLICABLE_WITHOUT_RESET = {
    "time_divider_ignored",
    "key_echoed",
    "key_echoed_base64",
    "key_echoed_decimal",
    "count_wraps_u16",
    "streak_stored_3_bits",
}


@pytest.fixture(scope="module")
def detection_runs(request: pytest.FixtureRequest, tmp_path_factory) -> DetectionRuns:
    """One device-suite run per fault the session selected, plus the good device: started when
    collection finished (tests/selftest/conftest.py), or now if they were not."""
    runs = request.config.stash.get(DETECTION_RUNS_KEY, None)
    if runs is not None:  # on the session's shared pool: the conftest shuts it down
        yield runs
        return
    items = request.session.items
    runs = start_detection_runs(
        selected_faults(items),
        lambda key: tmp_path_factory.mktemp(key.replace("@", "_")),
        no_reset=no_reset_selection(items),
        reduced=True,
    )
    yield runs
    runs.pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def suite_runs(detection_runs) -> dict[str, Future]:
    return detection_runs.futures


@pytest.fixture(scope="module")
def good_run(suite_runs):
    return suite_runs[GOOD].result()


@pytest.fixture(scope="module")
def full_record() -> FullMatrixRecord:
    record = FullMatrixRecord.load(ROOT / RECORD)
    assert record is not None, f"no full-matrix record at {RECORD}: run `{REGENERATE}`"
    return record


def test_good_device_passes_every_check(good_run):
    results, output = good_run
    assert results, "the device suite collected no tests"
    not_passed = {n: r.outcome for n, r in results.items() if r.outcome != "passed"}
    assert not not_passed, f"the good device did not pass: {not_passed}\n{output}"


def test_every_catalogued_check_exists(good_run):
    results, _ = good_run
    named = {t for f in CATALOGUE.values() for t in f.caught_by}
    missing = named - set(results)
    assert not missing, f"the fault catalogue names tests that do not exist: {sorted(missing)}"


@pytest.mark.parametrize("fault", sorted(CATALOGUE))
def test_fault_is_caught_by_exactly_its_checks(fault, good_run, suite_runs):
    results, output = suite_runs[fault].result()
    expected = CATALOGUE[fault].caught_by
    row = fault_row(CATALOGUE[fault], SuiteRun(results), [*results, *expected], EXPLORERS)
    failed = {n for n, r in results.items() if r.outcome in ("failed", "error")} - (EXPLORERS - set(expected))
    assert failed == set(expected), (
        f"fault {fault}: {row.verdict}: expected exactly {sorted(expected)} to fail, got {sorted(failed)} failing\n"
        + "\n".join(
            f"  {n}: {c.state} ({results[n].outcome if n in results else 'not collected'}) {c.message[:200]}"
            for n, c in sorted(row.cells.items())
            if c.state not in (CAUGHT, PASSED, FOUND)
        )
        + f"\n{output}"
    )
    others = {
        n: r.outcome for n, r in results.items() if n not in expected and n not in EXPLORERS and r.outcome != "passed"
    }
    assert not others, f"fault {fault}: {row.verdict}: other tests did not pass: {others}"
    assert row.exact, f"fault {fault}: {row.verdict}"


@pytest.mark.parametrize("fault", sorted(CATALOGUE))
def test_fault_is_caught_without_factory_reset(fault, suite_runs):
    """The no-reset column (docs/ledger.md): on the reference device built without factory reset
    and RTC set, its tests running from the device ledger, the tests the catalogue names for the
    fault are run with the fault on; at least one of them must fail. Faults whose tests cannot run
    on such a device are listed as not applicable, and no other."""
    results, output = suite_runs[fault + NO_RESET].result()
    cell = no_reset_cell(CATALOGUE[fault], SuiteRun(results))
    if fault in NOT_APPLICABLE_WITHOUT_RESET:
        assert cell.state == "n/a", f"fault {fault} without factory reset: {cell.text} (expected n/a)\n{output}"
        return
    assert cell.state == CAUGHT, (
        f"fault {fault} without factory reset: {cell.text}: none of {sorted(CATALOGUE[fault].caught_by)} failed "
        f"({ {n: r.outcome for n, r in results.items()} })\n{output}"
    )


def test_good_device_passes_without_factory_reset(suite_runs):
    """The good device without factory reset: every test that can run passes; the ones that need a
    factory reset are not covered, and nothing else is skipped."""
    results, output = suite_runs[GOOD + NO_RESET].result()
    bad = {n: r.outcome for n, r in results.items() if r.outcome not in ("passed", "skipped")}
    assert results and not bad, f"{bad}\n{output}"
    skipped = {n: r.message for n, r in results.items() if r.outcome == "skipped"}
    assert all("'factory_reset'" in m or "'rtc_set'" in m for m in skipped.values()), skipped
    assert len(results) - len(skipped) >= 0.85 * len(results), f"{len(skipped)} of {len(results)} not covered"


def test_the_full_matrix_record_is_current(full_record):
    """The reduced matrix is trusted only for the sources the last full matrix ran: a change of the
    simulator, the device suite or its fixtures calls for the full run again (about 4 minutes)."""
    assert full_record.sources == sources_digest(ROOT), (
        f"bench/sim, tests/device or fixtures changed since the full matrix of {full_record.generated_at} "
        f"({RECORD}); every fault ran the whole suite this time. Run `{REGENERATE}` and commit {RECORD}."
    )
    missing = set(CATALOGUE) - set(full_record.not_passed)
    assert not missing, f"{RECORD} has no full run for {sorted(missing)}: run `{REGENERATE}`"


def test_reduced_and_full_matrix_agree(full_record, suite_runs, request):
    """Every test a fault failed in the full matrix is in that fault's reduced run, and the reduced
    runs of this session failed exactly the tests the full run failed."""
    uncovered = full_record.uncovered(CATALOGUE)
    assert not uncovered, f"the reduced runs leave out tests the full matrix failed: {uncovered}"
    disagree = {}
    for fault in sorted(selected_faults(request.session.items)):
        results, _ = suite_runs[fault].result()
        # an explorer runs in a reduced run only for the faults it names (what else it found in
        # the full run cannot change a verdict: bench/detection/hooks.py select())
        unnamed = EXPLORERS - set(CATALOGUE[fault].caught_by)
        failed = sorted(n for n, r in results.items() if r.outcome in ("failed", "error") and n not in unnamed)
        full = [n for n in full_record.not_passed.get(fault) or [] if n not in unnamed]
        if failed != full:
            disagree[fault] = f"reduced run failed {failed}, the full run {full}"
    assert not disagree, disagree


def test_the_good_run_reaches_no_hook_the_record_lacks(full_record, detection_runs, good_run):
    """What this session's good run reached is inside the record's hook map (the union of the full
    matrix's good runs) or its reduced selection: a test that now reaches a fault's code and is
    not in that fault's reduced run could change its verdict unseen. What a test certainly
    reached is checked (a noted question inside its span), not what it may have reached: a
    question noted a few ms before a test starts belongs to the test before it, whatever the
    widened attribution the record is built from says."""
    hooks = read_trace(detection_runs.dirs[GOOD] / TRACE_DIR, widen=False)
    assert hooks.tests, "the good run left no hook trace"
    extra = hooks.missing_from(full_record.hooks, CATALOGUE)
    assert not extra, f"reached now, not in {RECORD}: {extra[:20]}; run `{REGENERATE}`"
