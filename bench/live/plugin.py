"""Feeds the live station page from the run: a pytest plugin that `paygo-bench run --ui` adds.

It only watches: pytest's hooks for the test running and each outcome, the test's `measure`
values as they are appended, the serial traffic log's lines (already masked), the open Metrics
servers' files, and the PSU through `Psu.try_reading` every `station.ui_psu_poll_s` seconds,
which sends nothing while a test's exchange is under way."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bench.fixtures.keys import (
    LIVE_PSU_KEY,
    MEASUREMENTS_KEY,
    METRICS_STORES_KEY,
    TRAFFIC_KEY,
)
from bench.live.metrics_view import device_summaries
from bench.live.state import LiveState, utc_now
from bench.power.errors import InstrumentError


def measurement_rows(item: pytest.Item | None) -> list[dict]:
    measurements = item.stash.get(MEASUREMENTS_KEY, None) if item is not None else None
    if measurements is None:
        return []
    return [
        {
            "name": m.name,
            "value": m.value_text(),
            "limits": m.limits_text(),
            "outcome": m.verdict if m.judged else "RECORDED",
        }
        for m in list(measurements.items)
    ]


class LivePlugin:
    def __init__(self, state: LiveState, psu_poll_s: float) -> None:
        self.state = state
        self.psu_poll_s = psu_poll_s
        self.config: pytest.Config | None = None
        self._item: pytest.Item | None = None
        self._t_start = time.monotonic()
        self._failed: dict[str, str] = {}
        self._watching = None
        self._stores: list[Path] = []
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        state.current_measurements = lambda: measurement_rows(self._item)
        state.metrics = self._metrics

    # -- pytest hooks ------------------------------------------------------------------------------
    def pytest_configure(self, config: pytest.Config) -> None:
        self.config = config  # the station, rig, DUT and suite are the page's from the start (run.py)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.state.update(total=len(session.items))
        if self.psu_poll_s > 0 and self._reader is None:
            self._reader = threading.Thread(target=self._read_psu, name="live-psu", daemon=True)
            self._reader.start()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self._item = item
        self._t_start = time.monotonic()
        self.state.update(current=_short(item.nodeid))
        self._watch_traffic()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self._failed[report.nodeid] = "failed"
        elif report.skipped and report.when == "setup":
            self._failed.setdefault(report.nodeid, "skipped")
        if report.when != "teardown":
            return
        outcome = self._failed.pop(report.nodeid, "passed")
        rows = measurement_rows(self._item) if self._item is not None and self._item.nodeid == report.nodeid else []
        self.state.test_done(_short(report.nodeid), outcome, time.monotonic() - self._t_start, rows)
        self._item = None
        self.state.update(current=None)

    def pytest_sessionfinish(self) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()

    # -- sources -----------------------------------------------------------------------------------
    def _watch_traffic(self) -> None:
        log = self.config.stash.get(TRAFFIC_KEY, None) if self.config is not None else None
        if log is not None and log is not self._watching:
            log.watchers.append(self.state.serial_line)
            self._watching = log

    def _metrics(self) -> list[dict]:
        if self.config is not None:
            for store in list(self.config.stash.get(METRICS_STORES_KEY, [])):
                if store.path not in self._stores:
                    self._stores.append(store.path)
        return [d for path in list(self._stores) if path.exists() for d in device_summaries(path)]

    def _read_psu(self) -> None:
        while not self._stop.wait(self.psu_poll_s):
            psu = self.config.stash.get(LIVE_PSU_KEY, None) if self.config is not None else None
            if psu is None:
                continue
            try:
                reading = psu.try_reading()
            except InstrumentError as e:
                self.state.update(psu={"error": f"PSU reading failed: {e}", "at": utc_now()})
                continue
            except Exception as e:  # noqa: BLE001 - the supply closed under the reader at the run's end
                self.state.update(psu={"error": f"PSU not readable now ({type(e).__name__})", "at": utc_now()})
                continue
            if reading is not None:
                self.state.update(
                    psu={"output_on": reading.output_on, "volts": reading.volts, "amps": reading.amps, "at": utc_now()}
                )


def _short(nodeid: str) -> str:
    return nodeid.rsplit("/", 1)[-1]
