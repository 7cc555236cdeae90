"""The per-test watchdog: past a test's time limit (bench/station/time_limit.py) it ends the test
with TestTimeLimit naming the limit and its derivation, in steps that never leave a run hanging:

1. at the limit, the serial link's current or next wait raises it: the bench waits on the DUT
   far more than on anything else, and ending there leaves every instrument between exchanges;
2. `grace_s` later, if the test still runs (it sleeps, or the supply answers slowly), SIGALRM
   raises it in the main thread (POSIX; pytest runs tests there);
3. another `grace_s` later, nothing could reach what the run is stuck in: every thread's stack
   goes to stderr and the process exits with 3 (a bench error), its run record as last written.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from bench.dut.errors import TestTimeLimit
from bench.dut.link import SerialLink

EXIT_STUCK = 3  # the verdict BENCH ERROR's exit code (README)


def grace_for(limit_s: float) -> float:
    """Time given to each further step: a tenth of the limit, 5 s to 60 s."""
    return min(60.0, max(5.0, 0.1 * limit_s))


class Watchdog:
    def __init__(
        self,
        limit_s: float,
        message: str,
        link: SerialLink | None,
        grace_s: float | None = None,
        before_exit: Callable[[], None] | None = None,
    ) -> None:
        """before_exit: called before the last step writes to stderr (pytest's capture undone)."""
        self.before_exit = before_exit
        self.limit_s = limit_s
        self.message = message
        self.link = link
        self.grace_s = grace_for(limit_s) if grace_s is None else grace_s
        self.fired = 0  # steps taken so far
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="paygo-test-watchdog", daemon=True)
        self._old_handler: Any = None
        self._alarm = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()

    def start(self) -> Watchdog:
        self._started = time.monotonic()
        if self._alarm:
            self._old_handler = signal.signal(signal.SIGALRM, self._on_alarm)
            signal.setitimer(signal.ITIMER_REAL, self.limit_s + self.grace_s)
        self._thread.start()
        return self

    def stop(self) -> None:
        """The test ended: cancel every step, and let the link wait again."""
        self._done.set()
        if self._alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old_handler)
        self._thread.join(5.0)
        if self.link is not None:
            self.link.expire(None)

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if self._done.is_set():
            return
        self.fired = 2
        raise TestTimeLimit(f"{self.message}; it was not waiting on the DUT, so it was interrupted")

    def _watch(self) -> None:
        if self._done.wait(self.limit_s):
            return
        self.fired = 1
        if self.link is not None:
            self.link.log.note(f"watchdog: {self.message}")
            self.link.expire(self.message)
        if self._done.wait(self.grace_s if self._alarm else 2 * self.grace_s):
            return
        if self._alarm and self._done.wait(self.grace_s):
            return
        self.fired = 3
        if self.before_exit is not None:
            try:
                self.before_exit()
            except Exception:  # noqa: BLE001 (the run stops either way)
                pass
        sys.stderr.write(
            f"\npaygo-bench: {self.message}; it did not stop {2 * self.grace_s:.0f} s after that: "
            "stopping the run (exit 3), every thread's stack follows\n"
        )
        faulthandler.dump_traceback(sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(EXIT_STUCK)
