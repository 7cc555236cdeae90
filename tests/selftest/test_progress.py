"""The live progress line of long measurements (fixtures/progress.py): rewritten in place on a
terminal, a line at most every LOG_EVERY_S into a log, nothing under -q; the drift test's line
comes from a thread of its own, so no write lands between a readout's two timestamps."""

from __future__ import annotations

import time

from bench.fixtures import progress as progress_module
from bench.fixtures.progress import Progress


class Writer:
    def __init__(self) -> None:
        self.out = ""

    def write(self, text: str, flush: bool = False) -> None:
        self.out += text

    def line(self, text: str = "") -> None:
        self.out += text + "\n"

    def flush(self) -> None:
        pass


class Reporter:
    def __init__(self, verbosity: int, isatty: bool) -> None:
        self._tw, self.verbosity, self.isatty = Writer(), verbosity, isatty


def test_into_a_log_a_line_at_most_every_interval():
    rep = Reporter(0, isatty=False)
    p = Progress(rep, "test_x")
    for n in range(100):
        p(f"cut {n} of 100")
    assert rep._tw.out == "\n  test_x: cut 0 of 100\n"  # below the -v name, then quiet until the interval passed
    p("cut 100 of 100", force=True)
    assert rep._tw.out.endswith("  test_x: cut 100 of 100\n") and p.lines == 2


def test_on_a_terminal_the_line_is_rewritten_in_place_and_cleared():
    rep = Reporter(1, isatty=True)
    p = Progress(rep, "t")
    p("first, longer text")
    p("second", force=True)
    assert rep._tw.out == "\n\r  t: first, longer text\r  t: second            "
    p.close()
    assert rep._tw.out.endswith("\r" + " " * len("  t: second") + "\r")


def test_quiet_runs_show_nothing():
    rep = Reporter(-1, isatty=False)
    p = Progress(rep, "t")
    p("anything", force=True)
    p.close()
    assert rep._tw.out == "" and p.lines == 0


def test_a_running_line_comes_from_its_own_thread(monkeypatch):
    monkeypatch.setattr(progress_module, "LOG_EVERY_S", 0.05)
    rep = Reporter(0, isatty=False)
    p = Progress(rep, "drift")
    seen = []
    with p.running(lambda: seen.append(1) or f"{len(seen)} readouts"):
        time.sleep(0.3)
    assert p.lines >= 2 and "drift: 1 readouts" in rep._tw.out
    shown = p.lines
    time.sleep(0.15)
    assert p.lines == shown, "the thread went on after the measurement"
