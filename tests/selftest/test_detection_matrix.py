"""The detection matrix (bench/detection/): how a fault × test cell is judged, how the matrix is
written, and `paygo-bench selftest` end to end on a small subset of the catalogue."""

from __future__ import annotations

import argparse
import dataclasses
import re
from datetime import UTC, datetime

import pytest

from bench.detection import catalogue as faults
from bench.detection import command
from bench.detection.catalogue import CATALOGUE, Fault
from bench.detection.matrix import (
    CAUGHT,
    FOUND,
    MISSED,
    NOT_RUN,
    PASSED,
    UNEXPECTED,
    SuiteRun,
    build_matrix,
    cell,
    good_summary,
)
from bench.detection.render import RunInfo, html_page, markdown, summary_line
from bench.detection.runner import GOOD, NO_RESET, longest_first, plan_no_reset_runs, plan_runs
from bench.report.junit import CaseResult

A = "tests/device/test_a.py::test_one"
A2 = "tests/device/test_a.py::test_two"
B = "tests/device/test_b.py::test_three"
C = "tests/device/test_c.py::test_four"

CAT = {
    "f_exact": Fault("f_exact", "firmware", "fails A only", (A,)),
    "f_missed": Fault("f_missed", "decoder", "should fail A2 <b>&</b> | pipe", (A2,)),
    "f_unexpected": Fault("f_unexpected", "board", "fails B and C", (B,)),
    "f_not_run": Fault("f_not_run", "firmware", "names a test that is skipped", (C,)),
}


def suite(**outcomes: str) -> SuiteRun:
    ids = {"a": A, "a2": A2, "b": B, "c": C}
    return SuiteRun({ids[k]: CaseResult(ids[k], o, f"{o} msg" if o != "passed" else "") for k, o in outcomes.items()})


ALL_PASS = dict(a="passed", a2="passed", b="passed", c="passed")
RUNS = {
    "f_exact": suite(**{**ALL_PASS, "a": "failed"}),
    "f_missed": suite(**ALL_PASS),
    "f_unexpected": suite(**{**ALL_PASS, "b": "failed", "c": "error"}),
    "f_not_run": suite(**{**ALL_PASS, "c": "skipped"}),
}
INFO = RunInfo(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "9.9.9", 125.0)


@pytest.fixture
def matrix():
    return build_matrix(RUNS, CAT, [suite(**ALL_PASS)] * 3)


@pytest.mark.parametrize(
    "outcome, expected, state",
    [
        ("failed", True, CAUGHT),
        ("error", True, CAUGHT),
        ("passed", True, MISSED),
        ("failed", False, UNEXPECTED),
        ("passed", False, PASSED),
        ("skipped", True, NOT_RUN),
        ("skipped", False, NOT_RUN),
    ],
)
def test_cell_states(outcome, expected, state):
    assert cell(CaseResult(A, outcome, "m"), expected).state == state


def test_a_test_not_collected_is_not_run():
    assert cell(None, True).state == NOT_RUN
    assert cell(None, True).message == "not collected"


def test_each_fault_gets_its_verdict(matrix):
    verdicts = {r.fault.name: r.verdict for r in matrix.rows}
    assert verdicts == {
        "f_exact": "caught exactly",
        "f_missed": "1 missed",
        "f_unexpected": "1 unexpected failure",  # B caught, C failed unnamed
        "f_not_run": "1 not run",
    }
    assert [r.fault.name for r in matrix.rows] == list(CAT)  # catalogue order
    assert matrix.caught_exactly == 1 and not matrix.ok


def test_the_cells_say_what_happened(matrix):
    rows = {r.fault.name: r for r in matrix.rows}
    assert rows["f_exact"].cells[A].state == CAUGHT and rows["f_exact"].cells[B].state == PASSED
    assert rows["f_missed"].cells[A2].state == MISSED
    assert rows["f_unexpected"].cells[B].state == CAUGHT
    assert rows["f_unexpected"].cells[C].state == UNEXPECTED
    assert rows["f_not_run"].cells[C].state == NOT_RUN and rows["f_not_run"].cells[C].expected


def test_an_explorer_may_fail_on_any_fault_but_must_on_its_own():
    """The random walk (marked `explores`): a failure where the catalogue does not name it is
    `found`, and the fault is still caught exactly; a fault it names must still make it fail; the
    reduced runs leave it out where it is not named."""
    from bench.detection.hooks import HookMap, select

    m = build_matrix({"f_unexpected": RUNS["f_unexpected"]}, CAT, explorers=frozenset({C}))
    (row,) = m.rows
    assert row.cells[C].state == FOUND and row.exact and row.verdict == "caught exactly"
    assert cell(CaseResult(C, "failed", "m"), False, explorer=True).state == FOUND
    assert cell(CaseResult(C, "passed", ""), True, explorer=True).state == MISSED
    assert "+" in markdown(m, INFO)
    (walk,) = faults.EXPLORERS  # the device suite's one explorer: the random walk
    hooks = HookMap({A: {"f"}, walk: {"f"}})
    assert walk not in select("f", (A,), hooks) and walk in select("f", (walk,), hooks)


def test_columns_are_grouped_by_file_and_include_named_tests_no_run_reported():
    ghost = "tests/device/test_a.py::test_ghost"
    cat = {"g": Fault("g", "firmware", "names a test that does not exist", (ghost,))}
    m = build_matrix({"g": suite(b="passed", a="failed")}, cat)
    assert m.tests == (A, ghost, B)
    assert m.rows[0].cells[ghost].state == NOT_RUN and m.rows[0].cells[A].state == UNEXPECTED


def test_per_test_counts_of_faults_caught(matrix):
    assert [matrix.catches(t) for t in (A, A2, B, C)] == [1, 0, 1, 0]


def test_a_run_that_failed_is_not_caught():
    m = build_matrix({"f_exact": SuiteRun({}, "the device suite did not run (exit 4)")}, CAT)
    assert m.rows[0].verdict == "run failed" and not m.ok
    assert all(c.state == NOT_RUN for c in m.rows[0].cells.values())


def test_all_caught_and_all_good_is_ok():
    m = build_matrix({"f_exact": RUNS["f_exact"]}, CAT, [suite(**ALL_PASS)] * 2)
    assert m.ok and summary_line(m) == "1/1 faults caught exactly; good device: 2/2 consecutive full runs passed"


def test_a_fault_outside_the_catalogue_is_refused():
    with pytest.raises(KeyError, match="nope"):
        build_matrix({"nope": suite(**ALL_PASS)}, CAT)


def test_good_runs_count_consecutive_full_passes():
    g = good_summary(
        [
            suite(**ALL_PASS),
            suite(**{**ALL_PASS, "b": "failed"}),
            suite(**ALL_PASS),
            suite(**ALL_PASS),
            SuiteRun({}, "TimeoutExpired: too slow"),
            SuiteRun({}),
        ]
    )
    assert (g.total, g.passed, g.consecutive, g.ok) == (6, 3, 2, False)
    assert set(g.problems) == {2, 5, 6}
    assert B in g.problems[2] and "TimeoutExpired" in g.problems[5] and g.problems[6] == "no tests ran"


def test_a_skipped_test_spoils_a_good_run():
    assert not good_summary([suite(**{**ALL_PASS, "c": "skipped"})]).ok


def test_summary_counts_and_run_info(matrix):
    md = markdown(matrix, INFO)
    assert "1/4 faults caught exactly; good device: 3/3 consecutive full runs passed" in md
    assert "2026-01-02 03:04:05 UTC" in md and "bench 9.9.9" in md and "2 min 5 s" in md
    assert "paygo-bench selftest --docs" in md  # how to regenerate it


def test_markdown_table_has_one_row_per_fault(matrix):
    md = markdown(matrix, INFO)
    table = md.split("## Matrix", 1)[1].split("## Tests", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [re.match(r"\| `(\w+)`", r).group(1) for r in rows] == list(CAT)
    header = [line for line in table.splitlines() if line.startswith("| fault")][0]
    assert header.count("|") == rows[0].count("|") - rows[0].count("\\|")  # the escaped pipe is no column
    assert "a/one | a/two | b/three | c/four" in header
    assert rows[0].endswith("| ✓ | · | · | · |")
    assert rows[1].endswith("| · | ✗ | · | · |")
    assert rows[2].endswith("| · | · | ✓ | ! |")
    assert rows[3].endswith("| · | · | · | – |")


def test_markdown_lists_what_was_not_caught(matrix):
    md = markdown(matrix, INFO)
    assert "## Not caught exactly" in md
    assert "- `f_missed`: 1 missed" in md and "missed: `test_a.py::test_two`" in md


def test_html_escapes_descriptions_and_groups_columns_by_file(matrix):
    page = html_page(matrix, INFO)
    assert "<b>&</b>" not in page and "&lt;b&gt;&amp;&lt;/b&gt;" in page
    assert page.count('<th colspan="2">a</th>') == 1 and page.count('<th colspan="1">') == 2
    assert page.count('<td class="missed"') == 1 and page.count('<td class="unexpected"') == 1
    assert "1/4 faults caught exactly" in page
    assert "<script" not in page and "http" not in page  # self-contained: nothing fetched


def test_plan_runs_puts_the_longest_first_then_the_good_runs():
    plan = plan_runs({"key_echoed", "slow_decode", "accepts_starting_code"}, 2)
    assert [s.key for s in plan] == ["slow_decode", "good-01", "good-02", "accepts_starting_code", "key_echoed"]
    assert plan[0].faults == ("slow_decode",) and plan[1].faults == ()
    assert [s.key for s in plan_runs(set(), 1)] == [GOOD]  # the fault-detection self-test's key


def test_both_columns_start_their_longest_runs_first():
    chosen = {"key_echoed", "slow_decode", "accepts_starting_code"}
    column = plan_no_reset_runs(chosen, CATALOGUE)
    plan = longest_first(column[:1] + plan_runs(chosen, 1) + column[1:])
    assert [s.key for s in plan] == [
        GOOD + NO_RESET,
        "slow_decode",
        "slow_decode" + NO_RESET,
        GOOD,
        "accepts_starting_code",
        "key_echoed",
        "accepts_starting_code" + NO_RESET,
        "key_echoed" + NO_RESET,
    ]


def test_the_subcommand_registers_on_the_cli_parser():
    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["selftest", "--fault", "key_echoed", "--good-runs", "3", "--jobs", "2", "--docs"])
    assert (args.func, args.fault, args.good_runs, args.jobs, args.docs) == (command.run, ["key_echoed"], 3, 2, True)


@pytest.mark.parametrize("argv", [["--fault", "no_such_fault"], ["--jobs", "0"], ["--good-runs", "-1"], ["--bogus"]])
def test_usage_errors_exit_2(argv, tmp_path, capsys):
    assert command.main([*argv, "--out", str(tmp_path)]) == 2
    assert not (tmp_path / command.MATRIX_MD).exists()


def run_selftest(tmp_path, capsys, *argv: str, exit_code: int = 0) -> tuple[str, str]:
    """`paygo-bench selftest argv --out tmp_path`, its exit code checked: what it printed, and the
    matrix it wrote (markdown)."""
    code = command.main([*argv, "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert code == exit_code, printed
    return printed, (tmp_path / command.MATRIX_MD).read_text(encoding="utf-8")


def test_selftest_on_a_subset_end_to_end(tmp_path, capsys):
    printed, md = run_selftest(
        tmp_path,
        capsys,
        "--fault",
        "key_echoed",
        "--fault",
        "wrong_protocol_major",
        "--good-runs",
        "2",
        "--jobs",
        "4",
        "-k",
        "identity",
        "--skip-no-reset",
    )
    page = (tmp_path / command.MATRIX_HTML).read_text(encoding="utf-8")
    assert "2/2 faults caught exactly; good device: 2/2 consecutive full runs passed" in md
    assert "2/2 faults caught exactly" in page
    assert re.search(r"^\| `key_echoed` .*\| caught exactly \|", md, re.M)
    assert re.search(r"^\| `wrong_protocol_major` .*\| caught exactly \|", md, re.M)
    assert "fault key_echoed: caught exactly (1 test)" in printed
    assert len(re.findall(r"^\[\d/4\] ", printed, re.M)) == 4
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "good-01",
        "good-02",
        "key_echoed",
        "wrong_protocol_major",
    ]


def test_selftest_judged_against_a_wrong_expectation_exits_1(tmp_path, capsys, monkeypatch):
    """The catalogue says key_echoed is caught by test_identity (it is not: the provisioning
    round trip catches it): the matrix must say missed and unexpected, and the command fail."""
    wrong = dataclasses.replace(
        faults.CATALOGUE["key_echoed"], caught_by=("tests/device/test_identity.py::test_identity",)
    )
    monkeypatch.setattr(faults, "CATALOGUE", {**faults.CATALOGUE, "key_echoed": wrong})
    _, md = run_selftest(
        tmp_path, capsys, "--fault", "key_echoed", "--good-runs", "1", "-k", "identity", "--skip-no-reset", exit_code=1
    )
    assert "0/1 faults caught exactly; good device: 1/1 consecutive full runs passed" in md
    assert re.search(r"^\| `key_echoed` .*\| 1 missed, 1 unexpected failure \| ✗ \| ! \|$", md, re.M), md


def test_selftest_writes_the_no_reset_column(tmp_path, capsys):
    """The same fault on the device without factory reset (docs/rigs/no-reset-virtual.toml), from
    its ledger: a column of the matrix, and its good run."""
    printed, md = run_selftest(
        tmp_path, capsys, "--fault", "add_relocks", "--good-runs", "1", "--jobs", "4", "-k", "g11b"
    )
    assert "without factory reset: 1/1 faults that apply caught, good device passed" in md
    assert re.search(r"^\| `add_relocks` .*\| caught exactly \| caught \(1 of 1\) \|", md, re.M), md
    assert "## Without factory reset" in md and "without reset" in (tmp_path / command.MATRIX_HTML).read_text()
    assert "fault add_relocks without reset: caught (1 of 1)" in printed
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "add_relocks",
        "add_relocks_no-reset",
        "good-01",
        "good_no-reset",
    ]


def test_the_no_reset_column_judges_caught_missed_and_not_applicable():
    from bench.detection.matrix import no_reset_cell

    fault = CAT["f_exact"]  # names A only
    assert no_reset_cell(fault, suite(a="failed")).text == "caught (1 of 1)"
    assert no_reset_cell(fault, suite(a="passed")).state == MISSED
    assert no_reset_cell(fault, suite(a="skipped")).state == "n/a"
    assert no_reset_cell(fault, SuiteRun({}, "the device suite did not run")).state == "run failed"
