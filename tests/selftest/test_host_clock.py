"""The host clock's state (bench/measure/host_clock.py): read where the OS exposes it, never raising,
and synchronised only when the kernel says so."""

from __future__ import annotations

import sys

import pytest

from bench.measure import host_clock
from bench.measure.host_clock import STA_NANO, STA_UNSYNC, TIME_ERROR, HostClock, Timex, from_timex, host_clock_state


def timex(**fields) -> Timex:
    tx = Timex()
    for name, value in fields.items():
        setattr(tx, name, value)
    return tx


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="adjtimex is Linux's")
def test_the_real_call_gives_plausible_fields():
    state = host_clock_state()
    assert isinstance(state, HostClock)
    assert state.state in host_clock.STATES.values()
    assert state.synchronised == (state.state != "TIME_ERROR" and not state.status & STA_UNSYNC)
    assert -500.0 <= state.freq_ppm <= 500.0  # the kernel caps its correction at 500 ppm
    assert state.est_error_us >= 0 and state.max_error_us >= 0
    assert state.clocksource is None or (state.clocksource and " " not in state.clocksource)
    line = state.describe()
    assert "\n" not in line and "ppm" in line and "clocksource" in line


def test_synchronised_clock():
    state = from_timex(0, timex(status=0x2001, freq=-655360, offset=-12345, esterror=12, maxerror=345), "tsc")
    assert state == HostClock(True, "TIME_OK", 0x2001, -10.0, -12.345, 12, 345, "tsc")
    assert state.describe().startswith("host clock synchronised (TIME_OK, status 0x2001), frequency -10.000 ppm")


def test_unsync_status_bit_means_not_synchronised():
    state = from_timex(0, timex(status=STA_UNSYNC, freq=3 * 65536 + 32768), None)
    assert not state.synchronised and state.freq_ppm == 3.5
    assert "NOT synchronised" in state.describe() and "clocksource unknown" in state.describe()


def test_time_error_return_means_not_synchronised():
    state = from_timex(TIME_ERROR, timex(status=0), "hpet")
    assert not state.synchronised and state.state == "TIME_ERROR"


def test_offset_units_follow_sta_nano():
    assert from_timex(0, timex(offset=1500), None).offset_us == 1500.0
    assert from_timex(0, timex(status=STA_NANO, offset=1500), None).offset_us == 1.5


def test_unavailable_is_none_never_an_exception(monkeypatch):
    monkeypatch.setattr(host_clock.sys, "platform", "win32")
    assert host_clock_state() is None
    monkeypatch.setattr(host_clock.sys, "platform", "linux")

    def no_libc(*args, **kwargs):
        raise OSError("no libc here")

    monkeypatch.setattr(host_clock.ctypes, "CDLL", no_libc)
    assert host_clock_state() is None


def test_a_failed_call_is_none(monkeypatch):
    class Libc:
        @staticmethod
        def adjtimex(_):
            return -1

    monkeypatch.setattr(host_clock.sys, "platform", "linux")
    monkeypatch.setattr(host_clock.ctypes, "CDLL", lambda *a, **k: Libc())
    assert host_clock_state() is None


def test_missing_clocksource_is_none(tmp_path):
    assert host_clock.read_clocksource(tmp_path / "absent") is None
    (tmp_path / "cs").write_text("tsc\n")
    assert host_clock.read_clocksource(tmp_path / "cs") == "tsc"
