"""Which fault hooks the simulated firmware reaches, and when: the data behind the reduced
detection matrix (bench/detection/hooks.py).

Code asks `Fault.X in faults` wherever a defect would change what it does. On a good device that
question is still asked, and the answer is no; a test during which it is never asked cannot behave
differently with that fault switched on, as long as it starts from the same state. The question is
asked last, after the conditions under which the defect's branch would give another result than
the good one (`if count > 0xFF and Fault.COUNT_STORED_U8 in faults: count &= 0xFF`): with `and`
the two orders compute the same thing, but only this one leaves a test that never meets the
condition out of the fault's runs (bench/detection/hooks.py). Only `in` is noted: a set
operation on the faults (`{A, B} & faults`) would ask unseen. With
PAYGO_HOOK_TRACE_DIR set (the detection runner sets it for good runs), every question is noted in
`<dir>/sim-<pid>.trace` as "<time.monotonic()> <fault>", at most one line per fault per
TRACE_STEP_S: a question asked between two noted ones is less than TRACE_STEP_S after the first.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import IO

ENV = "PAYGO_HOOK_TRACE_DIR"
TRACE_STEP_S = 0.005  # the readers widen each noted time by this much (bench/detection/hooks.py)


class HookTrace:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: IO[str] | None = None  # opened at the first question: a process that asks none leaves no file
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def note(self, fault: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(fault, -1.0) < TRACE_STEP_S:
                return
            self._last[fault] = now
            if self._file is None:
                self._file = self._path.open("a", encoding="ascii", buffering=1)  # a line each: a kill loses none
            self._file.write(f"{now:.6f} {fault}\n")


def _from_env() -> HookTrace | None:
    folder = os.environ.get(ENV)
    if not folder:
        return None
    return HookTrace(Path(folder) / f"sim-{os.getpid()}.trace")


TRACE: HookTrace | None = _from_env()
