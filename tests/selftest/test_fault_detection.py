"""Trust in the bench: every device check fails on the defect it targets and passes on the good
device (DESIGN.md, "Trust in the bench itself").

For each fault in the simulator's catalogue, the whole device suite runs against a virtual rig
with that one defect switched on; exactly the tests the catalogue names must fail, and every
other test must pass as it does on the good device.
"""

from __future__ import annotations

import pytest

from bench.sim.faults import CATALOGUE
from tests.selftest.device_suite import run_device_suite


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    results, output = run_device_suite(tmp_path_factory.mktemp("good"))
    return results, output


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
def test_fault_is_caught_by_exactly_its_checks(fault, good_run, tmp_path):
    results, output = run_device_suite(tmp_path, faults=[fault])
    failed = {n for n, r in results.items() if r.outcome in ("failed", "error")}
    expected = set(CATALOGUE[fault].caught_by)
    assert failed == expected, (
        f"fault {fault}: expected exactly {sorted(expected)} to fail, got {sorted(failed)} failing\n"
        + "\n".join(f"  {n}: {r.outcome} {r.message[:200]}" for n, r in sorted(results.items()) if r.outcome != "passed")
        + f"\n{output}"
    )
    others = {n: r.outcome for n, r in results.items() if n not in expected and r.outcome != "passed"}
    assert not others, f"fault {fault}: other tests did not pass: {others}"
