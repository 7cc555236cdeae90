"""What the live station page shows, kept as the run goes: one object, written by the run's
thread (pytest's hooks), the traffic log and the PSU reader, read by the page's server threads.

Everything in it is already safe to show: serial lines arrive masked (bench/dut/traffic.py
masks every secret before anyone sees a line), and nothing else here carries a key."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SERIAL_LINES_KEPT = 80
MEASUREMENTS_KEPT = 400


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class LiveState:
    """The run as the page sees it. `snapshot()` is a plain dict (the page's JSON)."""

    station: str = ""
    rig: str = ""
    dut_serial: str = ""
    suite: str = ""
    run_dir: str = ""
    started_at: str = field(default_factory=utc_now)
    total: int = 0
    outcomes: list[dict] = field(default_factory=list)  # {test, outcome, duration_s}
    current: str | None = None
    verdict: str | None = None
    verdict_line: str = ""
    serving: bool = False  # `paygo-bench serve --ui-port`: no run, the Metrics server's devices only
    psu: dict | None = None  # {output_on, volts, amps, at} or {error, at}
    # measurements of finished tests; the running test's come from `current_measurements`
    measurements: deque[dict] = field(default_factory=lambda: deque(maxlen=MEASUREMENTS_KEPT))
    serial: deque[str] = field(default_factory=lambda: deque(maxlen=SERIAL_LINES_KEPT))
    current_measurements: Callable[[], list[dict]] = field(default=lambda: [], repr=False)
    metrics: Callable[[], list[dict]] = field(default=lambda: [], repr=False)
    _t0: float = field(default_factory=time.monotonic, repr=False)
    _current_t0: float = field(default_factory=time.monotonic, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _seq: int = 0

    def update(self, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self, name, value)
            if "current" in changes:
                self._current_t0 = time.monotonic()
            self._seq += 1

    def test_done(self, test: str, outcome: str, duration_s: float, measurements: list[dict]) -> None:
        with self._lock:
            self.outcomes.append({"test": test, "outcome": outcome, "duration_s": round(duration_s, 2)})
            self.measurements.extend(dict(m, test=test) for m in measurements)
            self._seq += 1

    def serial_line(self, direction: str, text: str) -> None:
        with self._lock:
            self.serial.append(f"{datetime.now(UTC).strftime('%H:%M:%S')} {direction:3} {text}")
            self._seq += 1

    def snapshot(self) -> dict:
        """One consistent view for the page (JSON-ready)."""
        running = self.current_measurements()  # read outside the lock: the test thread appends to it
        metrics = self.metrics()
        with self._lock:
            done = len(self.outcomes)
            counts: dict[str, int] = {}
            for o in self.outcomes:
                counts[o["outcome"]] = counts.get(o["outcome"], 0) + 1
            return {
                "seq": self._seq,
                "station": self.station,
                "rig": self.rig,
                "dut_serial": self.dut_serial,
                "suite": self.suite,
                "run_dir": self.run_dir,
                "started_at": self.started_at,
                "elapsed_s": round(time.monotonic() - self._t0, 1),
                "total": self.total,
                "done": done,
                "counts": counts,
                "current": self.current,
                "current_elapsed_s": round(time.monotonic() - self._current_t0, 1) if self.current else None,
                "verdict": self.verdict,
                "verdict_line": self.verdict_line,
                "serving": self.serving,
                "psu": self.psu,
                "measurements": [dict(m, test=self.current) for m in running] + list(reversed(self.measurements)),
                "serial": list(self.serial),
                "outcomes": list(self.outcomes),
                "metrics": metrics,
            }
