"""The simulated device's lasting parts in a directory: its NVM image and its battery-backed RTC.

A real device keeps its EEPROM and its RTC between two bench sessions; a virtual device given a
state directory does too. The NVM image (`eeprom.bin`) is written page by page as the firmware
programs it (bench/sim/eeprom.py), so whatever was programmed is in the file even if the
simulator process is killed. The RTC cannot run without the process, so its reading is saved
against the host's wall clock (`rtc.json`, replaced atomically) when the simulator starts, on
every setting of the clock and when the simulator stops; the next start restores it as a clock
that ran on, with its drift, while the simulator was not running. Its backup registers are saved
with it. A lock file keeps two simulators from being one device at the same time.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.sim.rtc import Rtc

try:
    import fcntl
except ImportError:  # no advisory locks on this platform: nothing keeps two simulators apart
    fcntl = None  # type: ignore[assignment]

EEPROM_FILE = "eeprom.bin"
RTC_FILE = "rtc.json"
LOCK_FILE = "lock"
RTC_FORMAT = 1
# How long a new simulator waits for the directory's lock: the previous one may still be saving
# and exiting (its bench was stopped a moment ago).
LOCK_WAIT_S = 3.0


@dataclass(frozen=True)
class RtcReading:
    """What is saved of the RTC: its reading at a host wall-clock time (UTC seconds)."""

    device_s: float
    host_utc_s: float
    drift_ppm: float
    running: bool = True  # False: the oscillator had stopped (no backup supply): it stays put
    backup: dict[str, float] = field(default_factory=dict)

    def now(self, host_utc_s: float) -> float:
        """The reading at another host time: the clock ran on at its drift (never backwards)."""
        if not self.running:
            return self.device_s
        elapsed = max(0.0, host_utc_s - self.host_utc_s)
        return self.device_s + elapsed * (1.0 + self.drift_ppm * 1e-6)


class StateDir:
    def __init__(
        self,
        path: str | Path,
        eeprom_size: int,
        wall: Callable[[], float] = time.time,
        lock_wait_s: float = LOCK_WAIT_S,
    ) -> None:
        self.path = Path(path)
        self.wall = wall
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"simulator state dir {self.path}: cannot create it: {e.strerror}") from None
        self._lock = self._acquire_lock(lock_wait_s)
        image = self.eeprom_path
        if image.exists() and image.stat().st_size != eeprom_size:
            self.close()
            raise ValueError(
                f"simulator state dir {self.path}: {EEPROM_FILE} is {image.stat().st_size} bytes, not the "
                f"{eeprom_size}-byte NVM image this simulator writes (remove it for a factory-blank device)"
            )

    @property
    def eeprom_path(self) -> Path:
        return self.path / EEPROM_FILE

    @property
    def rtc_path(self) -> Path:
        return self.path / RTC_FILE

    def _acquire_lock(self, wait_s: float):
        if fcntl is None:
            return None
        handle = open(self.path / LOCK_FILE, "a+")
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle
            except OSError:
                if time.monotonic() >= deadline:
                    handle.close()
                    raise ValueError(
                        f"simulator state dir {self.path} is in use by another simulator (still after {wait_s:g} s)"
                    ) from None
                time.sleep(0.05)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()  # releases the lock
            self._lock = None

    # -- the RTC --------------------------------------------------------------------------------
    def load_rtc(self) -> RtcReading | None:
        """The saved reading, None if there is none; ValueError naming the file if unreadable."""
        path = self.rtc_path
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or data.get("format") != RTC_FORMAT:
                raise ValueError(f"not format {RTC_FORMAT}")
            backup = data.get("backup", {})
            reading = RtcReading(
                device_s=_number(data, "device_s"),
                host_utc_s=_number(data, "host_utc_s"),
                drift_ppm=_number(data, "drift_ppm"),
                running=_bool(data, "running"),
                backup={str(k): _number(backup, k) for k in backup} if isinstance(backup, dict) else {},
            )
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise ValueError(
                f"simulator state dir {self.path}: {RTC_FILE} is unreadable ({e}); remove it to start the clock afresh"
            ) from None
        return reading

    def restore_rtc(self, drift_ppm: float, default_start: float) -> Rtc:
        """The device's RTC: as it was left, run on to now; or new at default_start."""
        saved = self.load_rtc()
        rtc = Rtc(start=saved.now(self.wall()) if saved else default_start, drift_ppm=drift_ppm)
        if saved:
            rtc.backup.update(saved.backup)
            if not saved.running:
                rtc.stop()
        return rtc

    def save_rtc(self, rtc: Rtc) -> None:
        """Write the RTC's reading now, atomically (a new file renamed over the old one): a killed
        process leaves the old reading or the new one. No fsync, as for the NVM image."""
        reading = {
            "format": RTC_FORMAT,
            "device_s": rtc.now(),
            "host_utc_s": self.wall(),
            "drift_ppm": rtc.drift_ppm,
            "running": rtc.running,
            "backup": dict(rtc.backup),
        }
        fd, tmp = tempfile.mkstemp(prefix=".rtc-", dir=self.path)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(reading, f)
            os.replace(tmp, self.rtc_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _number(data: dict, key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key} is not a finite number")
    return float(value)


def _bool(data: dict, key: str) -> bool:
    value = data.get(key)
    if not isinstance(value, bool):
        raise ValueError(f"{key} is not true or false")
    return value
