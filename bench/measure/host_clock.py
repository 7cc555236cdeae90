"""The host clock's own state, where the OS exposes it: is it synchronised, how is it steered?

A drift measurement is only as good as the host clock it is timed on (docs/drift.md: the host
must be NTP-disciplined, and an undisciplined PC clock can be tens of ppm off). On Linux the
kernel's NTP state is read with a read-only `adjtimex` (modes = 0: no privileges needed, nothing
changes), and the clocksource from sysfs. Elsewhere, or if the call fails, there is no state:
`host_clock_state()` returns None and never raises.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from dataclasses import dataclass
from pathlib import Path

CLOCKSOURCE = Path("/sys/devices/system/clocksource/clocksource0/current_clocksource")
TIME_ERROR = 5  # adjtimex's return value when the clock is not synchronised
STA_UNSYNC = 0x0040  # status bit: the clock is not synchronised (set by the kernel, cleared by ntpd/chrony)
STA_NANO = 0x2000  # status bit: offset is in ns, not us
FREQ_SCALE = 65536.0  # timex.freq is ppm with a 16-bit fraction
STATES = {0: "TIME_OK", 1: "TIME_INS", 2: "TIME_DEL", 3: "TIME_OOP", 4: "TIME_WAIT", 5: "TIME_ERROR"}


class Timex(ctypes.Structure):
    """Linux `struct timex` (glibc's layout: longs are the kernel's on LP64 and ILP32)."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
        ("_slack", ctypes.c_char * 64),  # room to spare should a libc's struct be larger
    ]


@dataclass(frozen=True)
class HostClock:
    """The kernel's view of the host clock at one moment.

    freq_ppm is the frequency correction the kernel applies (positive: it speeds the clock up,
    i.e. the oscillator runs slow); a change between two readings means the clock was being
    steered meanwhile. est_error_us and max_error_us are the kernel's estimated and maximum error.
    """

    synchronised: bool
    state: str  # adjtimex's return value: TIME_OK, TIME_ERROR, ...
    status: int  # the STA_* bits
    freq_ppm: float
    offset_us: float  # the PLL's remaining offset (what ntpd is still slewing away)
    est_error_us: int
    max_error_us: int
    clocksource: str | None

    def describe(self) -> str:
        """One line for a log."""
        return (
            f"host clock {'synchronised' if self.synchronised else 'NOT synchronised'} ({self.state}, "
            f"status 0x{self.status:04x}), frequency {self.freq_ppm:+.3f} ppm, offset {self.offset_us:+.1f} us, "
            f"est. error {self.est_error_us} us, max. error {self.max_error_us} us, "
            f"clocksource {self.clocksource or 'unknown'}"
        )


def from_timex(ret: int, tx: Timex, clocksource: str | None) -> HostClock:
    """adjtimex's return value and struct, as a HostClock (pure: testable with made-up values)."""
    unsynced = ret == TIME_ERROR or bool(tx.status & STA_UNSYNC)
    offset_us = tx.offset / 1000.0 if tx.status & STA_NANO else float(tx.offset)
    return HostClock(
        synchronised=not unsynced,
        state=STATES.get(ret, f"state {ret}"),
        status=tx.status,
        freq_ppm=tx.freq / FREQ_SCALE,
        offset_us=offset_us,
        est_error_us=tx.esterror,
        max_error_us=tx.maxerror,
        clocksource=clocksource,
    )


def read_clocksource(path: Path = CLOCKSOURCE) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def host_clock_state() -> HostClock | None:
    """The host clock's state now, or None where the OS does not expose it (never raises)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = Timex()
        tx.modes = 0  # read only
        ret = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError, ValueError):
        return None
    if ret < 0:
        return None
    return from_timex(ret, tx, read_clocksource())
