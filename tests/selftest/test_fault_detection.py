"""Trust in the bench: every device check fails on the defect it targets and passes on the good
device (docs/simulator.md "Faults", docs/detection-matrix.md).

For each fault in the simulator's catalogue, the whole device suite runs against a virtual rig
with that one defect switched on; exactly the tests the catalogue names must fail, and every
other test must pass as it does on the good device.

The suite runs are independent (each has its own virtual rig) and mostly wait on the simulated
device, so they run side by side: all the runs this session selected start as soon as pytest has
collected (while the other self-tests run) on a pool of PAYGO_SELFTEST_JOBS workers
(bench/detection/runner.py), the longest first, and each test here waits for its own. The same
runs and judgement, for every fault at once and written as a matrix: `paygo-bench selftest`.
"""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from bench.detection.catalogue import CATALOGUE
from bench.detection.matrix import CAUGHT, PASSED, SuiteRun, fault_row, no_reset_cell
from tests.selftest.device_suite import (
    DETECTION_RUNS_KEY,
    GOOD,
    NO_RESET,
    no_reset_selection,
    selected_faults,
    start_detection_runs,
)

# Faults no test can show on a device without factory reset: their only tests provision the DUT
# themselves (another time divider; the provisioning reply).
NOT_APPLICABLE_WITHOUT_RESET = {"time_divider_ignored", "key_echoed", "key_echoed_base64", "key_echoed_decimal"}


@pytest.fixture(scope="module")
def suite_runs(request: pytest.FixtureRequest, tmp_path_factory) -> dict[str, Future]:
    """One device-suite run per fault the session selected, plus the good device: started when
    collection finished (tests/selftest/conftest.py), or now if they were not."""
    runs = request.config.stash.get(DETECTION_RUNS_KEY, None)
    if runs is not None:  # on the session's shared pool: the conftest shuts it down
        yield runs.futures
        return
    items = request.session.items
    runs = start_detection_runs(
        selected_faults(items),
        lambda key: tmp_path_factory.mktemp(key.replace("@", "_")),
        no_reset=no_reset_selection(items),
    )
    yield runs.futures
    runs.pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def good_run(suite_runs):
    return suite_runs[GOOD].result()


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
    row = fault_row(CATALOGUE[fault], SuiteRun(results), [*results, *expected])
    failed = {n for n, r in results.items() if r.outcome in ("failed", "error")}
    assert failed == set(expected), (
        f"fault {fault}: {row.verdict}: expected exactly {sorted(expected)} to fail, got {sorted(failed)} failing\n"
        + "\n".join(
            f"  {n}: {c.state} ({results[n].outcome if n in results else 'not collected'}) {c.message[:200]}"
            for n, c in sorted(row.cells.items())
            if c.state not in (CAUGHT, PASSED)
        )
        + f"\n{output}"
    )
    others = {n: r.outcome for n, r in results.items() if n not in expected and r.outcome != "passed"}
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
    assert all("'factory_reset'" in m for m in skipped.values()), skipped
    assert len(results) - len(skipped) >= 0.9 * len(results), f"{len(skipped)} of {len(results)} not covered"
