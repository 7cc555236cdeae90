"""The Metrics device tests on a build that samples as a product does (a row a minute), not as
the virtual rig's test build: the rows test must still see enough rows to show a lost one (the
bench shortens the sample interval, `METRICS CONFIG sample=`), and the data budget must be
reckoned at the product's real session (an hour of rows at the build's interval), not at the
bench's short one. Before, a build sampling every minute passed both while it lost rows (the rows
test waited a minute a row and judged one or two), and its hourly session of 60 rows (~2.5 KB as
the test now estimates it, ~1.8 MB a month against the spec's 750 KB) was measured as the bench's
0-1 row session (500 B, 360 KB a month).

Child runs of the device tests (`run_device_suite`) on rig files written here: the default
virtual rig with `[sim] metrics_sample_s` changed."""

from __future__ import annotations

import re
from pathlib import Path

from tests.selftest import background
from tests.selftest.device_suite import ROOT, run_device_suite

BASE_RIG = ROOT / "docs" / "rigs" / "virtual.toml"
ROWS = "tests/device/test_metrics.py::test_metrics_rows_survive_server_faults"
BUDGET = "tests/device/test_metrics.py::test_metrics_data_budget"
MINUTE_BUILD_S = 60  # the build: a row a minute, a session an hour


def rig_with_sample(tmp: Path, sample_s: int) -> Path:
    """The default virtual rig file, its simulated build sampling every sample_s."""
    text, n = re.subn(r"(?m)^metrics_sample_s = \d+", f"metrics_sample_s = {sample_s}", BASE_RIG.read_text())
    assert n == 1, f"{BASE_RIG} sets no metrics_sample_s to change"
    rig = tmp / f"sample-{sample_s}.toml"
    rig.write_text(text)
    return rig


def run(tmp: Path, sample_s: int | None, tests: tuple[str, ...], faults: tuple[str, ...] = ()) -> tuple[dict, str]:
    tmp.mkdir(parents=True, exist_ok=True)
    args = ("--rig", str(rig_with_sample(tmp, sample_s))) if sample_s else ()
    return run_device_suite(tmp, faults=faults, args=args, paths=tests)


@background.scenario
def minute_build_good(tmp: Path) -> tuple[dict, str]:
    return run(tmp, MINUTE_BUILD_S, (ROWS, BUDGET))


@background.scenario
def minute_build_losing_rows(tmp: Path) -> tuple[dict, str]:
    return run(tmp, MINUTE_BUILD_S, (ROWS,), faults=("metrics_data_dropped_before_reply",))


@background.scenario
def default_build_budget(tmp: Path) -> tuple[dict, str]:
    return run(tmp, None, (BUDGET,))


def outcome(results: dict, nodeid: str, output: str) -> tuple[str, str]:
    assert nodeid in results, f"{nodeid} did not run\n{output}"
    return results[nodeid].outcome, results[nodeid].message


def test_rows_test_passes_a_good_minute_build(request):
    results, output = background.result(request, minute_build_good)
    assert outcome(results, ROWS, output)[0] == "passed", f"{outcome(results, ROWS, output)}\n{output}"


def test_rows_test_never_passes_a_minute_build_losing_rows(request):
    """metrics_data_dropped_before_reply clears the rows of a request as it leaves: a fault's
    rows are gone. The test fails, or at worst is not covered (skipped as such), never passes."""
    results, output = background.result(request, minute_build_losing_rows)
    got, message = outcome(results, ROWS, output)
    assert got == "failed" or (got == "skipped" and "not covered" in message), f"{got}: {message}\n{output}"


def test_budget_fails_a_minute_build(request):
    """60 rows a session at the hourly period: well over the 750 KB a month."""
    results, output = background.result(request, minute_build_good)
    got, message = outcome(results, BUDGET, output)
    assert got == "failed" and "metrics_bytes_per_month" in message, f"{got}: {message}\n{output}"


def test_budget_passes_the_default_build(request):
    """The default virtual rig's build, a row every five minutes: 12 rows an hour, within budget
    on the same device and payload."""
    results, output = background.result(request, default_build_budget)
    assert outcome(results, BUDGET, output)[0] == "passed", f"{outcome(results, BUDGET, output)}\n{output}"


AUTH = "tests/device/test_metrics.py::test_metrics_auth_verifies"
NO_RESET_RIG = ROOT / "docs" / "rigs" / "no-reset-virtual.toml"


@background.scenario
def budget_after_another_metrics_test(tmp: Path):
    """On a DUT that is not rebooted between tests (no factory reset), another Metrics test first:
    its `sample=1` lasts until the next boot."""
    return run_device_suite(tmp, args=("--rig", str(NO_RESET_RIG)), paths=(AUTH, BUDGET))


def test_the_budget_is_the_builds_whatever_test_ran_before(request):
    """The build's sample interval is the one the DUT gave at its first Metrics test of the session
    (bring-up booted it): read again after another test's `sample=1`, with no boot between, it was
    the bench's own 1 s, and the good device failed the budget at about 85 MB a month."""
    results, output = background.result(request, budget_after_another_metrics_test)
    assert results[AUTH].outcome == "passed", output
    assert results[BUDGET].outcome == "passed", output
