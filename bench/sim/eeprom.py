"""An EEPROM image file with page writes, write latency and torn writes on power loss.

Modelled on a 24C-series serial EEPROM: data is programmed one page at a time, each page takes
`page_write_s`, and a page being programmed when the supply collapses is left torn (a prefix of
the new bytes, the rest unchanged). Like littlefs's emulated block device, a harness can also
cut power after the k-th page write (`cut_after_pages`) to reach every point of a write.

`on_page_written` is the board's "NVM write" marker (a GPIO pulse after each completed page):
the virtual rig wires it to the simulated PSU's trigger input, so the bench can have the supply
cut after the k-th page write from the outside, as a lab triggers its PSU from such a marker.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

EEPROM_SIZE = 4096  # bytes: a 24C32


class PowerLost(Exception):
    """The supply fell below the brown-out threshold during a write."""


class Eeprom:
    def __init__(
        self,
        path: Path,
        size: int = EEPROM_SIZE,
        page_size: int = 32,
        page_write_s: float = 0.001,
        power_ok: Callable[[], bool] = lambda: True,
    ) -> None:
        self.path = Path(path)
        self.size = size
        self.page_size = page_size
        self.page_write_s = page_write_s
        self.power_ok = power_ok
        self.cut_after_pages: int | None = None  # harness hook: power dies after this many more pages
        self.on_page_written: Callable[[], None] | None = None  # marker after each completed page
        # The supply is high enough to program reliably; below it a page programs wrong bits.
        self.write_ok: Callable[[], bool] = lambda: True
        self.pages_written = 0
        self._lock = threading.Lock()
        if not self.path.exists() or self.path.stat().st_size != size:
            self._write_blank()

    def _write_blank(self) -> None:
        """The erased image, in place at once (a new file renamed over the old): a process killed
        meanwhile leaves the old image or the new one, never a short file."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(b"\xff" * self.size)
        os.replace(tmp, self.path)

    def read(self, addr: int, length: int) -> bytes:
        self._check_range(addr, length)
        with self.path.open("rb") as f:
            f.seek(addr)
            return f.read(length)

    def erase(self) -> None:
        with self._lock:
            self._write_blank()

    def write(self, addr: int, data: bytes) -> None:
        """Program data page by page; raise PowerLost (leaving a torn page) if power fails."""
        self._check_range(addr, len(data))
        with self._lock, self.path.open("r+b") as f:
            pos = 0
            while pos < len(data):
                page_end = (addr + pos) // self.page_size * self.page_size + self.page_size
                chunk = data[pos : min(len(data), page_end - addr)]
                if not self.power_ok():
                    raise PowerLost(f"supply lost before page at {addr + pos:#06x}")
                if self.cut_after_pages is not None:
                    if self.cut_after_pages <= 0:
                        self._program(f, addr + pos, chunk[: len(chunk) // 2])  # torn page
                        raise PowerLost(f"power cut during page at {addr + pos:#06x}")
                    self.cut_after_pages -= 1
                old = self._old(f, addr + pos, len(chunk))
                deadline = time.monotonic() + self.page_write_s
                self._program(f, addr + pos, chunk if self.write_ok() else _garbled(chunk))
                self.pages_written += 1
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    time.sleep(remaining)  # the part is busy programming until its deadline
                if not self.power_ok():
                    # the supply collapsed while the cells were programmed: the page is torn
                    half = len(chunk) // 2
                    self._program(f, addr + pos + half, old[half:])
                    raise PowerLost(f"supply lost while programming page at {addr + pos:#06x}")
                pos += len(chunk)
                if self.on_page_written is not None:
                    self.on_page_written()  # the page is complete: pulse the marker

    @staticmethod
    def _program(f, addr: int, chunk: bytes) -> None:
        f.seek(addr)
        f.write(chunk)
        # flushed to the OS at once: a programmed page survives the simulator process being
        # killed (no fsync: only a host crash could lose it, and that is no device event)
        f.flush()

    @staticmethod
    def _old(f, addr: int, length: int) -> bytes:
        f.seek(addr)
        return f.read(length)

    def _check_range(self, addr: int, length: int) -> None:
        if addr < 0 or length < 0 or addr + length > self.size:
            raise ValueError(f"EEPROM access {addr:#06x}+{length} outside 0..{self.size:#06x}")


def _garbled(chunk: bytes) -> bytes:
    """What a page programmed below the part's minimum write voltage holds: the high bits of
    each byte fail to program."""
    return bytes(b & 0x0F for b in chunk)
