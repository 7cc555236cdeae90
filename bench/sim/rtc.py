"""The simulated device's real-time clock: battery-backed, drifting, settable.

It runs on the host's monotonic clock scaled by (1 + drift), so it keeps counting while the
device is unpowered (backup battery) and its drift is exact and repeatable. Faults make it
reset or stop while unpowered, as a missing or flat backup battery would.

Like the RTC peripheral of most MCUs it has a few battery-backed backup registers, kept through
power loss with the clock (`backup`). `on_set` is told of every setting of the clock, so that a
device living across simulator runs can save it (bench/sim/state_dir.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Rtc:
    def __init__(self, start: float, drift_ppm: float = 0.0, clock=time.monotonic) -> None:
        self._clock = clock
        self._rate = 1.0 + drift_ppm * 1e-6
        self._lock = threading.Lock()
        self._base_device = float(start)
        self._base_host = clock()
        self._stopped_at: float | None = None
        self.drift_ppm = drift_ppm
        self.backup: dict[str, float] = {}  # backup registers: name -> value
        self.on_set: Callable[[], None] | None = None

    def now(self) -> float:
        """Device seconds, with the full fraction (the firmware decides the readout resolution)."""
        with self._lock:
            if self._stopped_at is not None:
                return self._stopped_at
            return self._base_device + (self._clock() - self._base_host) * self._rate

    def set(self, t: float) -> None:
        with self._lock:
            self._base_device = float(t)
            self._base_host = self._clock()
            if self._stopped_at is not None:
                self._stopped_at = float(t)
        if self.on_set is not None:
            self.on_set()

    def skip(self, seconds: float) -> None:
        """Let `seconds` of the world's time pass at once (the simulated device is off): a running
        clock advances by them at its rate, a stopped one does not."""
        with self._lock:
            if self._stopped_at is None:
                self._base_device += seconds * self._rate

    def turn_back(self, seconds: float) -> None:
        """Take back time the clock counted but should not have (a backup supply that ran out)."""
        with self._lock:
            if self._stopped_at is not None:
                self._stopped_at -= seconds
            else:
                self._base_device -= seconds * self._rate

    @property
    def running(self) -> bool:
        """False while the oscillator is stopped (no backup supply)."""
        return self._stopped_at is None

    def stop(self) -> None:
        """Freeze (oscillator stopped: no backup supply)."""
        t = self.now()
        with self._lock:
            self._stopped_at = t

    def start(self) -> None:
        with self._lock:
            if self._stopped_at is None:
                return
            self._base_device = self._stopped_at
            self._base_host = self._clock()
            self._stopped_at = None
