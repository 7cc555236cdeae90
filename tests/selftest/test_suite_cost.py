"""The suite-cost benchmark's own arithmetic (benchmarks/suite_cost.py, benchmarks/cost_plugin.py):
the rows it builds from the plugin's clock readings, the table, the matrix model, the reading of
/proc/<pid>/stat and the rewrite of docs/speed.md's figures. No suite runs here and nothing is
timed: the figures are the benchmark's to print, not a test's to assert."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.selftest.benchmark_modules import load_benchmark

ROOT = Path(__file__).resolve().parents[2]


sc = load_benchmark("suite_cost")
plugin = load_benchmark("cost_plugin")


def record(nodeid, t0, t1, cpu0, cpu1, ch0, ch1, outcome="passed"):
    return {
        "nodeid": nodeid,
        "outcome": outcome,
        "t0": t0,
        "t1": t1,
        "cpu0": cpu0,
        "cpu1": cpu1,
        "children0": ch0,
        "children1": ch1,
    }


# Started at 100.0, first test at 101.0, reaped at 115.0; CPU 4.0 s in all.
RECORDS = [
    record("tests/device/test_a.py::test_slow", 101.0, 111.0, 0.8, 1.3, 0.0, 0.5),  # busy 1.0 of 10
    record("tests/device/test_b.py::test_quick", 111.6, 112.0, 1.4, 1.6, 0.5, 1.0, "failed"),  # busy 0.7 of 0.4
]


def run():
    return sc.suite_run(RECORDS, spawn=100.0, end=115.0, cpu=4.0, exit_code=1)


def test_rows_from_the_plugin_s_cumulative_readings():
    r = run()
    slow = r.row("test_a.py::test_slow")
    assert (slow.wall, slow.busy, slow.bench_cpu) == pytest.approx((10.0, 1.0, 0.5))
    assert slow.sim_cpu == pytest.approx(0.5) and slow.waiting == pytest.approx(9.0)
    assert r.row("test_b.py::test_quick").waiting == pytest.approx(-0.3)  # threads at once: said, not hidden
    assert r.row("test_b.py::test_quick").outcome == "failed"
    startup = r.row(sc.STARTUP)
    assert (startup.wall, startup.busy, startup.bench_cpu) == pytest.approx((1.0, 0.8, 0.8))
    between = r.row(sc.BETWEEN)  # 101 -> 112 less the tests' 10.4 s; CPU 2.6 - 0.8 - 1.7
    assert (between.wall, between.busy, between.bench_cpu) == pytest.approx((0.6, 0.1, 0.1))
    winddown = r.row(sc.WINDDOWN)  # 112 -> 115; the whole 4.0 less the 2.6 used by then
    assert (winddown.wall, winddown.busy) == pytest.approx((3.0, 1.4)) and winddown.bench_cpu is None
    assert sum(x.wall for x in r.rows) == pytest.approx(r.wall) == 15.0
    assert sum(x.busy for x in r.rows) == pytest.approx(r.cpu) == 4.0
    assert [t.name for t in r.tests] == ["test_a.py::test_slow", "test_b.py::test_quick"]


def test_no_simulator_cpu_is_said_not_guessed():
    records = [dict(RECORDS[0], children1=None), RECORDS[1]]
    r = sc.suite_run(records, 100.0, 115.0, 4.0)
    slow = r.row("test_a.py::test_slow")
    assert slow.busy is None and slow.sim_cpu is None and slow.waiting is None and slow.bench_cpu == 0.5
    assert r.row(sc.BETWEEN).busy is None
    table = sc.cost_table(r)
    assert "n/a" in table.splitlines()[1]
    # the mean test's CPU then comes from the run: (4.0 - the start-up's 0.8) over 2 tests
    assert sc.mean_test(r) == pytest.approx((5.2, 1.6))


def test_no_test_ran_is_all_start_up():
    r = sc.suite_run([], 100.0, 103.0, 1.5)
    assert [(x.name, x.wall, x.busy) for x in r.rows] == [(sc.STARTUP, 3.0, 1.5)] and r.tests == []


def test_the_table_is_sorted_by_wall_with_the_whole_process_as_total():
    lines = sc.cost_table(run()).splitlines()
    names = [line.split("  ")[0] for line in lines[1:-2]]
    assert names == [
        "test_a.py::test_slow",
        sc.WINDDOWN,
        sc.STARTUP,
        sc.BETWEEN,
        "test_b.py::test_quick",
    ], names
    assert "(first: + session set-up)" in lines[1] and "FAILED" in lines[5] and "(last:" in lines[5]
    total = lines[-2].split()
    assert total[-4:] == ["15.00", "4.00", "11.00", "73"]  # 11 s of 15 waiting
    assert lines[-1].startswith("2 tests: 10.40 s wall") and "waits 73 %" in lines[-1] and "0.27 cores" in lines[-1]


def test_medians_over_runs():
    a = run()
    b = sc.suite_run([dict(RECORDS[0], t1=121.0), RECORDS[1]], 100.0, 125.0, 6.0)
    c = sc.suite_run([dict(RECORDS[0], t1=103.0), RECORDS[1]], 100.0, 105.0, 2.0)
    m = sc.median_run([a, b, c])
    assert m.row("test_a.py::test_slow").wall == pytest.approx(10.0)
    assert (m.wall, m.cpu, m.exit_code) == (15.0, 4.0, 1)
    assert sc.median_run([a]) is a


def test_the_model_takes_the_binding_bound():
    assert sc.predict_wall([(60.0, 6.0)] * 40, jobs=14, cores=2) == pytest.approx((40 * 60 / 14, "waiting"))
    assert sc.predict_wall([(60.0, 30.0)] * 40, jobs=14, cores=2) == pytest.approx((600.0, "CPU"))
    assert sc.predict_wall([(60.0, 6.0)] * 3, jobs=14, cores=2) == pytest.approx((60.0, "one run"))
    assert sc.predict_wall([(100.0, 1.0), (10.0, 1.0)], jobs=1, cores=2) == pytest.approx((110.0, "waiting"))
    assert sc.predict_wall([], 4, 2) == (0.0, "nothing")


def test_the_growth_table_adds_runs_and_tests():
    r = sc.suite_run(RECORDS, 100.0, 160.0, 10.0)  # one run: 60 s wall, 10 s CPU; mean test 5.2 s, 0.85 s
    lines = sc.growth_table(r, jobs=4, cores=2, current_faults=7, added=(0, 4)).splitlines()
    assert "+5.20 s wall, +0.85 s CPU" in lines[1]
    assert lines[3].split()[2:4] == ["1:00", "1:21"]  # the suite alone: 60 s, then 60 + 4 x 5.2
    rows = {int(line.split()[0]): line.split() for line in lines[4:]}
    assert sorted(rows) == [7, 10, 20, 40, 80]
    assert rows[7][1] == "8" and rows[7][2] == sc._mmss(8 * 60 / 4) and "(the catalogue now)" in lines[4]
    assert rows[80][1:3] == ["81", sc._mmss(81 * 60 / 4)] and rows[80][4] == "waiting"
    assert rows[80][3] == sc._mmss(81 * (60 + 4 * 5.2) / 4)


def test_a_subset_run_costs_its_tests_plus_the_session():
    wall, cpu = sc.subset_run(run(), ["tests/device/test_b.py::test_quick"])
    assert wall == pytest.approx(0.4 + 1.0 + 0.6 + 3.0) and cpu == pytest.approx(0.7 + 0.8 + 0.1 + 1.4)


def test_minutes_and_seconds():
    assert [sc._mmss(s) for s in (0, 59.6, 119.5, 3599.4)] == ["0:00", "1:00", "2:00", "59:59"]


def test_proc_stat_fields_are_counted_after_the_command_name():
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
    line = "4242 (py (x) y) S 1 4242 4242 0 -1 4194304 10 0 0 0 250 50 999 999 20 0 3 0 100 0\n"
    assert plugin.proc_stat_cpu(line, 100.0) == pytest.approx(3.0)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="no /proc here")
def test_proc_stat_reads_this_process_as_the_os_accounts_it():
    sum(i * i for i in range(200_000))  # some CPU of our own
    ticks = float(os.sysconf("SC_CLK_TCK"))
    mine = plugin.proc_stat_cpu(Path("/proc/self/stat").read_text(), ticks)
    times = os.times()
    assert mine > 0 and abs(mine - (times.user + times.system)) <= 2 / ticks + 0.02


def test_the_simulator_is_found_from_its_state_folder(tmp_path):
    me = os.getpid()
    (tmp_path / "paygo-sim-ours").mkdir()
    (tmp_path / "paygo-sim-ours" / "owners.pid").write_text(f"{me}\n4242\n")
    (tmp_path / "paygo-sim-other").mkdir()
    (tmp_path / "paygo-sim-other" / "owners.pid").write_text("777\n778\n")
    (tmp_path / "unrelated").mkdir()
    children = plugin.ChildrenCpu(me, tmp_path)
    assert children.simulator_pids() == [4242]
    children.simulator_pids = lambda: [2**22 + 12345]  # above pid_max: a process that ended
    children.ended = lambda: 1.5  # (this session's suite runs end in the background: a fixed figure)
    assert children() == (1.5 if children.proc else None)


DOC = "# Speed\n\nProse.\n\n<!-- suite_cost.py figures: before -->\nold\n<!-- end of suite_cost.py figures: before -->\n\nMore prose.\n"


def test_the_docs_section_is_rewritten_between_its_markers_only():
    new = sc.replace_section(DOC, "before", "new figures\n")
    assert new == DOC.replace("\nold\n", "\nnew figures\n")
    assert sc.replace_section(new, "before", "new figures") == new  # rerun: same text
    after = sc.replace_section(new, "after", "later figures")
    assert after.startswith(new.rstrip("\n")) and after.endswith(
        "<!-- suite_cost.py figures: after -->\nlater figures\n<!-- end of suite_cost.py figures: after -->\n"
    )
    assert sc.replace_section(after, "before", "x").count("later figures") == 1
    assert sc.replace_section(DOC, "before", r"a \1 \g<0> backslash").count(r"a \1 \g<0> backslash") == 1


def test_docs_speed_has_the_markers_the_benchmark_writes_between():
    doc = (ROOT / "docs" / "speed.md").read_text(encoding="utf-8")
    for marker in (sc.BEGIN, sc.END):
        assert doc.count(marker.format(label="before")) == 1, marker
    assert doc.index(sc.BEGIN.format(label="before")) < doc.index(sc.END.format(label="before"))


def test_the_matrix_runs_session_times_from_their_junit_files(tmp_path):
    for key, text in {
        "good-01": '<testsuites><testsuite name="pytest" tests="46" time="70.5"></testsuite></testsuites>',
        "slow_decode": '<testsuite name="pytest" time="190.0"/>',
        "crashed": "<testsuites",
    }.items():
        (tmp_path / key).mkdir()
        (tmp_path / key / "junit.xml").write_text(text)
    runs = sc.matrix_runs(tmp_path)
    assert runs == {"good-01": 70.5, "slow_decode": 190.0}
    lines = sc.matrix_lines(300.0, 20.0, 0, runs, (100.0, "waiting"), jobs=14, cores=2)
    assert "measured / model 3.00" in lines[0] and "longest: slow_decode 190, good-01 70" in lines[1]
    assert lines[2].endswith("3:10 (one run)")  # the longest run binds: 190 s
