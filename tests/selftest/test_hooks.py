"""The reduced detection matrix's parts (bench/detection/hooks.py, bench/sim/hook_trace.py):
which test a noted hook belongs to, which tests a fault's reduced run takes, the digest that says
when the full matrix must run again, and the firmware build keeping its faults traceable."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.detection.catalogue import CATALOGUE
from bench.detection.hook_windows import WINDOWS_FILE
from bench.detection.hooks import FullMatrixRecord, HookMap, read_trace, select, sources_digest
from bench.sim import hook_trace
from bench.sim.faults import Fault, FaultSet
from bench.sim.firmware_config import FirmwareConfig
from bench.sim.metrics.session import MetricsSession

A, B, C = "tests/device/test_a.py::test_a", "tests/device/test_a.py::test_b", "tests/device/test_c.py::test_c"


def traced(tmp_path: Path, windows: list[str], notes: list[str], widen: bool = True) -> HookMap:
    (tmp_path / WINDOWS_FILE).write_text("".join(w + "\n" for w in windows), encoding="utf-8")
    (tmp_path / "sim-1.trace").write_text("".join(n + "\n" for n in notes), encoding="ascii")
    return read_trace(tmp_path, widen=widen)


def test_a_note_belongs_to_the_test_it_falls_in_and_bring_up_to_none(tmp_path):
    hooks = traced(
        tmp_path,
        ["shared 0.5 1.5 rig", f"test 1.0 2.0 {A}", f"test 2.0001 3.0 {B}", f"test 3.0001 4.0 {C}"],
        ["0.100000 no_lockout", "1.600000 set_as_add", "2.500000 key_echoed", "3.500000 key_echoed", "9.0 slow_decode"],
    )
    assert hooks.tests == {A: {"set_as_add"}, B: {"key_echoed"}, C: {"key_echoed"}}
    assert hooks.bring_up == {"no_lockout", "slow_decode"}


def test_a_note_just_before_a_boundary_counts_for_both_tests(tmp_path):
    # a question asked at 1.998 may have been asked again, unnoted, up to TRACE_STEP_S later
    t = 2.0001 - hook_trace.TRACE_STEP_S / 2
    hooks = traced(tmp_path, [f"test 1.0 2.0 {A}", f"test 2.0001 3.0 {B}"], [f"{t:.6f} set_as_add"])
    assert hooks.tests == {A: {"set_as_add"}, B: {"set_as_add"}}
    assert not hooks.bring_up
    # what each test certainly reached: only the test the noted time falls in
    certain = traced(tmp_path, [f"test 1.0 2.0 {A}", f"test 2.0001 3.0 {B}"], [f"{t:.6f} set_as_add"], widen=False)
    assert certain.tests == {A: {"set_as_add"}, B: set()}


def test_a_note_inside_a_shared_fixture_set_up_during_a_test_counts_for_the_test_too(tmp_path):
    hooks = traced(tmp_path, [f"test 1.0 2.0 {A}", "shared 1.5 1.6 server"], ["1.550000 set_as_add"])
    assert hooks.tests[A] == {"set_as_add"} and hooks.bring_up == {"set_as_add"}


def test_a_reduced_run_takes_reaching_tests_catching_tests_and_a_fixed_sample_in_suite_order():
    tests = {f"tests/device/test_x.py::test_{i:02d}": set() for i in range(20)}
    names = list(tests)
    tests[names[7]] = {"no_lockout"}
    hooks = HookMap(tests)
    chosen = select("no_lockout", [names[3]], hooks, sample=2)
    assert names[7] in chosen and names[3] in chosen and len(chosen) == 4
    assert list(chosen) == sorted(chosen, key=names.index)
    assert chosen == select("no_lockout", [names[3]], hooks, sample=2)  # the same sample every time
    assert select("set_as_add", [], hooks, sample=2) != chosen  # each fault its own sample


def test_missing_from_names_only_pairs_a_reduced_run_would_leave_out():
    tests = {f"tests/device/test_x.py::test_{i:02d}": set() for i in range(10)}
    names = list(tests)
    record = HookMap({t: set(f) for t, f in tests.items()})
    caught = CATALOGUE["no_lockout"].caught_by
    now = HookMap({t: set(f) for t, f in tests.items()}, {"set_as_add"})
    outside = next(t for t in names if t not in select("no_lockout", caught, record))
    now.tests[outside].add("no_lockout")
    assert now.missing_from(record, CATALOGUE) == [f"no_lockout in {outside}"]
    record.tests[outside].add("no_lockout")
    assert now.missing_from(record, CATALOGUE) == []


def test_uncovered_names_a_failure_the_reduced_run_would_miss():
    names = [f"tests/device/test_x.py::test_{i:02d}" for i in range(30)]
    fault = "no_lockout"
    hooks = HookMap({t: set() for t in names})
    chosen = select(fault, CATALOGUE[fault].caught_by, hooks)
    outside = next(t for t in names if t not in chosen)
    record = FullMatrixRecord("d", "now", 1, hooks, {fault: [chosen[0]]})
    assert record.uncovered(CATALOGUE) == {}
    record.not_passed[fault] = [chosen[0], outside]
    assert record.uncovered(CATALOGUE) == {fault: [outside]}


def test_the_record_round_trips_and_a_foreign_one_is_none(tmp_path):
    record = FullMatrixRecord("abc", "2026-12-07T00:00:00+00:00", 20, HookMap({A: {"set_as_add"}}, {"x"}), {"f": [A]})
    path = tmp_path / "r.json"
    path.write_text(record.to_json(), encoding="utf-8")
    again = FullMatrixRecord.load(path)
    assert again is not None and again.to_json() == record.to_json()
    path.write_text('{"schema": 99}', encoding="utf-8")
    assert FullMatrixRecord.load(path) is None
    path.write_text("not json", encoding="utf-8")
    assert FullMatrixRecord.load(path) is None


def test_the_digest_follows_the_sources_and_nothing_else(tmp_path):
    for top in ("bench/sim", "tests/device", "fixtures", "docs"):
        (tmp_path / top).mkdir(parents=True)
        (tmp_path / top / "m.py").write_text("x = 1\n", encoding="utf-8")
    before = sources_digest(tmp_path)
    (tmp_path / "docs" / "m.py").write_text("x = 2\n", encoding="utf-8")
    assert sources_digest(tmp_path) == before
    (tmp_path / "tests/device" / "m.py").write_text("x = 2\n", encoding="utf-8")
    assert sources_digest(tmp_path) != before


@pytest.fixture
def trace_file(tmp_path, monkeypatch):
    path = tmp_path / "sim.trace"
    monkeypatch.setattr(hook_trace, "TRACE", hook_trace.HookTrace(path))
    return path


def test_a_builds_faults_stay_traced_through_the_firmware_config_and_metrics_session(trace_file):
    config = FirmwareConfig()  # the good device: every fault question is still asked
    assert isinstance(config.faults, FaultSet) and not config.faults
    assert Fault.NO_LOCKOUT not in config.faults
    session = MetricsSession(_Port(), config.metrics_settings(), {}, clock=lambda: 0.0)  # type: ignore[arg-type]
    assert isinstance(session.faults, FaultSet)
    assert Fault.METRICS_UNSIGNED not in session.faults
    noted = [line.split()[1] for line in trace_file.read_text(encoding="ascii").splitlines()]
    assert noted == ["no_lockout", "metrics_unsigned"]


class _Port:
    def rtc_now(self) -> float:
        return 0.0


def test_a_full_run_records_each_faults_failures_and_the_union_of_its_good_runs(tmp_path):
    from bench.detection.command import full_record
    from bench.detection.matrix import SuiteRun
    from bench.detection.runner import plan_runs
    from bench.report.junit import CaseResult

    specs = plan_runs(["no_lockout"], good_runs=2, numbered=True)
    for key, fault in (("good-01", "set_as_add"), ("good-02", "key_echoed")):
        hooks = tmp_path / key / "hooks"
        hooks.mkdir(parents=True)
        traced(hooks, [f"test 1.0 2.0 {A}", f"test 2.1 3.0 {B}"], [f"1.500000 {fault}"])
    results = {A: CaseResult(A, "passed", ""), B: CaseResult(B, "failed", "boom")}
    suites = {s.key: SuiteRun(results) for s in specs}
    record = full_record(specs, suites, tmp_path, tmp_path)
    assert record.good_runs == 2
    assert record.hooks.tests == {A: {"set_as_add", "key_echoed"}, B: set()}
    assert record.not_passed == {"no_lockout": [B]}
