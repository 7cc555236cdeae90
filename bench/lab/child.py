"""One station's run as a child process (`python -m bench.cli run --rig ... --report-dir ...`):
its own interpreter, serial port, PSU, run directory and record, so nothing of one station's run
(a crash, a hung instrument, a BENCH ERROR) reaches another's. Its output goes to a console log
and is read for progress (pytest's `[done/total]` lines) and for its verdict, its last line."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.lab.plan import Station
from bench.record.verdict import BENCH_ERROR, EXIT_CODES, INCOMPLETE, VERDICTS

_PROGRESS = re.compile(r"^(\S+::\S+)\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b.*\[\s*(\d+)/(\d+)\]\s*$")
_VERDICT = re.compile(rf"^paygo-bench: ({'|'.join(VERDICTS)}): ")


@dataclass
class ChildRun:
    station: Station
    argv: list[str]
    run_dir: Path
    log_path: Path
    events: queue.Queue
    done: int = 0
    total: int = 0
    failed: set[str] = field(default_factory=set)
    started: float = 0.0  # time.monotonic()
    ended: float | None = None
    verdict: str | None = None
    line: str = ""  # the verdict line, "FAILED: ..."
    exit_status: int | None = None
    stop_sent: bool = False
    killed: bool = False
    _proc: subprocess.Popen | None = None
    _verdict_line: str | None = None
    _last_line: str = ""

    def start(self) -> None:
        """Start the child; a reader thread follows its output and posts self to `events` on
        every change, and once more when it has ended and been judged."""
        if self.finished:
            return
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # its own session: a Ctrl-C at the terminal reaches the lab, which stops each run once
        # (a second signal could cut a run's safe-state teardown short)
        spawn: dict = {"start_new_session": True} if os.name == "posix" else {}
        self.started = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                encoding="utf-8",
                errors="replace",
                env=env,
                **spawn,
            )
        except OSError as e:
            self._finish(BENCH_ERROR, f"{BENCH_ERROR}: cannot start the station's run: {e}", None)
            return
        threading.Thread(target=self._follow, name=f"lab-{self.station.id}", daemon=True).start()

    @property
    def finished(self) -> bool:
        return self.verdict is not None

    @property
    def wall_s(self) -> float:
        return ((self.ended if self.ended is not None else time.monotonic()) - self.started) if self.started else 0.0

    def stop(self) -> None:
        """Stop the run as Ctrl-C does (SIGTERM, which a run takes as Ctrl-C: its record says
        interrupted and its supply goes to its safe state, fixtures/signals.py)."""
        if self.finished or self.stop_sent:
            return
        self.stop_sent = True
        if self._proc is None:  # the lab was stopped before this one started
            self._finish(INCOMPLETE, f"{INCOMPLETE}: not started: the lab was stopped first", None)
            return
        try:
            self._proc.send_signal(signal.SIGTERM) if os.name == "posix" else self._proc.terminate()
        except OSError:
            pass

    def kill(self) -> None:
        """The run did not stop when asked: end it (its supply's state is then not known)."""
        if self._proc is not None and not self.finished:
            self.killed = True
            self._proc.kill()

    def _follow(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            with open(self.log_path, "w", encoding="utf-8") as log:
                for text in self._proc.stdout:
                    log.write(text)
                    log.flush()
                    if self._read(text.rstrip("\r\n")):
                        self.events.put(self)
        except OSError as e:  # the console log cannot be written: keep reading, say so at the end
            self._last_line = f"console log {self.log_path} not written: {e}"
            for text in self._proc.stdout:
                self._read(text.rstrip("\r\n"))
        code = self._proc.wait()
        self._finish(*self._judge(code), code)

    def _read(self, text: str) -> bool:
        """Take one output line; True when the station's progress changed."""
        if text.strip():
            self._last_line = text.strip()
        if _VERDICT.match(text):
            self._verdict_line = text[len("paygo-bench: ") :]
        m = _PROGRESS.match(text)
        if not m:
            return False
        nodeid, outcome, done, total = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
        if outcome in ("FAILED", "ERROR"):
            self.failed.add(nodeid)
        self.done, self.total = max(self.done, done), total
        return True

    def _judge(self, code: int) -> tuple[str, str]:
        """The station's verdict: its run's own last verdict line when the exit status agrees
        with it; else the run broke (killed, crashed, refused its command line): BENCH ERROR,
        or INCOMPLETE when the lab stopped it before it said anything."""
        said = self._verdict_line
        if said is not None:
            verdict = said.split(":", 1)[0]
            if EXIT_CODES.get(verdict) == code:
                return verdict, said
        if self.killed:
            return BENCH_ERROR, (
                f"{BENCH_ERROR}: the run did not stop when asked and was killed; its supply's state is not "
                f"known: check the PSU (console log {self.log_path})"
            )
        if self.stop_sent and code != 0 and said is None:
            return INCOMPLETE, f"{INCOMPLETE}: interrupted before the run gave a verdict (console log {self.log_path})"
        how = f"was killed by signal {-code}" if code < 0 else f"ended with exit status {code}"
        seen = f"; it said {said!r}" if said else f"; its last line: {self._last_line!r}" if self._last_line else ""
        return (
            BENCH_ERROR,
            f"{BENCH_ERROR}: the station's run {how} without a verdict{seen} (console log {self.log_path})",
        )

    def _finish(self, verdict: str, line: str, code: int | None) -> None:
        self.ended = time.monotonic()
        self.exit_status = code
        self.line = line
        self.verdict = verdict  # last: `finished` is read from the lab's thread
        self.events.put(self)


def child_argv(
    station: Station, run_dir: Path, suite: str | None, operator: str | None, k: str | None, extra: list[str]
) -> list[str]:
    """`paygo-bench run` for one station, in a fresh interpreter."""
    argv = [sys.executable, "-m", "bench.cli", "run", "--rig", station.rig_file, "--report-dir", str(run_dir)]
    for option, value in (("--suite", suite or station.suite), ("--operator", operator or station.operator), ("-k", k)):
        if value:
            argv += [option, value]
    return argv + (["--", *extra] if extra else [])
