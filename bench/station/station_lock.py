"""One run at a time on a station's instruments: a lock per resource (the DUT's serial port, the
PSU's VISA resource), held for the whole run.

Two runs driving one PSU or one UART would each judge a device the other is changing. The lock
is an advisory `flock` on a file named for the resource in a folder every run on this host uses
($PAYGO_BENCH_LOCKS, else `paygo-bench-locks` in the system's temporary folder): the kernel
releases it when the holder exits, however it ends (a killed run leaves no stale lock), and the
file says who holds it, so the run refused can name the holder. A virtual rig's instruments are
its own (a fresh pty and SCPI port per run) and need none. Where `fcntl` does not exist
(Windows) no lock is taken, and the run says so in its log.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

ENV = "PAYGO_BENCH_LOCKS"


class StationBusy(Exception):
    """Another run holds one of the station's resources: one line naming it and the holder."""


def lock_folder() -> Path:
    return Path(os.environ.get(ENV) or Path(tempfile.gettempdir()) / "paygo-bench-locks")


def resource_key(resource: str) -> str:
    """The name a resource is locked under: a local device path resolved (two names of one
    /dev/ttyUSB0 are one port), a VISA resource upper-cased (VISA names are case-insensitive)."""
    if resource.startswith("/") and "://" not in resource:
        return os.path.realpath(resource)
    return resource.upper() if "::" in resource else resource


def _file_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("_")[:120] + ".lock"


@dataclass
class StationLock:
    """Locks for `resources`, taken in a fixed order by acquire() and let go by release()."""

    resources: tuple[str, ...]
    holder: str  # who takes it: pid, run id, station
    folder: Path = field(default_factory=lock_folder)
    _held: list[int] = field(default_factory=list)

    @property
    def supported(self) -> bool:
        return fcntl is not None

    def acquire(self) -> None:
        """Take every resource's lock, or none: StationBusy names the first one held elsewhere."""
        if fcntl is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            for key in sorted({resource_key(r) for r in self.resources}):
                fd = os.open(self.folder / _file_name(key), os.O_RDWR | os.O_CREAT, 0o666)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    other = os.read(fd, 512).decode("utf-8", "replace").strip() or "an unknown run"
                    os.close(fd)
                    raise StationBusy(f"{key} is in use by {other}; wait for that run to end") from None
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{self.holder} since {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}".encode(), 0)
                self._held.append(fd)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        while self._held:
            fd = self._held.pop()
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            os.close(fd)  # closing the last descriptor lets the flock go
