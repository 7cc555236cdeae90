"""A pytest plugin of benchmarks/suite_cost.py: each device test's wall time and CPU, as JSON lines.

Loaded with `-p cost_plugin` (benchmarks/ on PYTHONPATH) and `--cost-out FILE`; without
--cost-out it records nothing. It only reads clocks: it requests no fixture, changes no outcome
and no order, so the suite it watches is the suite that runs.

Each test is timed over its whole protocol (setup, call, teardown: the session's fixtures are set
up in the first test and torn down in the last, so those two carry the rig's start and stop):

- wall: time.monotonic();
- bench CPU: time.process_time() of this process (every thread: the Metrics server, readers);
- children CPU: the CPU of this process's children, which on the virtual rig is the simulator (a
  separate process, bench/station/virtual_rig.py): the live ones read from /proc/<pid>/stat
  (utime + stime), their pids from the owners file of the run's simulator state folder
  (bench/station/sim_state.py); the ended ones from getrusage(RUSAGE_CHILDREN). Without /proc
  (not Linux) a live simulator's CPU cannot be read: it is written as null, never guessed.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pytest

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

from bench.station.sim_state import PREFIX, owners

OPTION = "--cost-out"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("suite-cost").addoption(
        OPTION, default=None, help="write each test's wall time and CPU here as JSON lines (benchmarks/suite_cost.py)"
    )


def proc_stat_cpu(text: str, ticks_per_s: float) -> float:
    """utime + stime in seconds from the text of /proc/<pid>/stat (proc(5): fields 14 and 15).
    The command name (field 2) is in parentheses and may hold spaces or parentheses: the fields
    are counted after the last ')'."""
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks_per_s


def _ticks() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):
        return 100.0


class ChildrenCpu:
    """CPU seconds of this process's ended children plus its live simulator(s); None when a live
    simulator's CPU cannot be read."""

    def __init__(self, pid: int | None = None, tmp: Path | None = None) -> None:
        self.pid = pid or os.getpid()
        self.tmp = Path(tmp or tempfile.gettempdir())
        self.ticks = _ticks()
        self.proc = Path("/proc/self/stat").exists()

    def simulator_pids(self) -> list[int]:
        """The other pids named beside ours in a simulator state folder's owners file."""
        found: list[int] = []
        for folder in self.tmp.glob(f"{PREFIX}*"):
            pids = owners(folder)
            if self.pid in pids:
                found += [p for p in pids if p != self.pid]
        return found

    def ended(self) -> float:
        if resource is None:
            return 0.0
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def __call__(self) -> float | None:
        total = self.ended()
        for pid in self.simulator_pids():
            if not self.proc:
                return None
            try:
                total += proc_stat_cpu(Path(f"/proc/{pid}/stat").read_text(encoding="ascii"), self.ticks)
            except (OSError, IndexError, ValueError):
                continue  # ended between the listing and the read: counted by ended() once reaped
        return total


class CostRecorder:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.children = ChildrenCpu()
        self.outcomes: dict[str, str] = {}
        out.write_text("")

    def sample(self) -> tuple[float, float, float | None]:
        return time.monotonic(), time.process_time(), self.children()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem):
        t0, cpu0, child0 = self.sample()
        yield
        t1, cpu1, child1 = self.sample()
        row = {
            "nodeid": item.nodeid,
            "outcome": self.outcomes.get(item.nodeid, "passed"),
            "t0": t0,
            "t1": t1,
            "cpu0": cpu0,
            "cpu1": cpu1,
            "children0": child0,
            "children1": child1,
        }
        with self.out.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.outcomes[report.nodeid] = "failed"
        elif report.skipped and report.when != "teardown":
            self.outcomes.setdefault(report.nodeid, "skipped")


def pytest_configure(config: pytest.Config) -> None:
    out = config.getoption(OPTION)
    if out:
        config.pluginmanager.register(CostRecorder(Path(out)), "suite-cost-recorder")
