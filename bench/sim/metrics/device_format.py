"""The simulated device's compiled-in OpenPAYGO Metrics Data Format (spec "Data Format object").

A real firmware is built with one data format: the order of its current data (`data_order`), of
its historical rows (`historical_data_order`), the interval between rows and the variables' types
and units. The manufacturer registers it once per model (`POST /data_format`) and the server's id
is given to each device at provisioning (`PROV df=`, `METRICS CONFIG df=`); a device with no id
(df=0) embeds the format in every request instead (`dfo`). `METRICS FORMAT` hands it to the
bench over the UART, so the bench can register it without importing the simulator.

Rows are integers (mV, mA) with `scale_factor` 0.001 to volts and amperes: in CBOR an integer of
up to 65535 takes 3 bytes where a float takes 9 (docs/server.md, Benchmarks).

Row times: `timestamp` is the last column of `historical_data_order` (as in the spec's own
example, which ends with "relative_time"). The first row of a request carries its absolute RTC
time; a row `historical_data_interval` seconds after the previous one leaves it out (a trailing
null, stripped); a row after a gap (power cycle, RTC set, a sample skipped) carries it again. An
absolute time, not `relative_time`: the spec's text makes `relative_time` relative to the request
time while openpaygo and the bench add it to the previous row, and a retried row must keep its
time whatever the new request's `ts`.
"""

from __future__ import annotations

import copy
from typing import Any

SCALE_MILLI = 0.001

# current data (`d`), in this order
DATA_ORDER: tuple[str, ...] = (
    "token_count",
    "firmware_version",
    "tampered",
    "payg_active_until",
    "payg_disabled",
    "rows_dropped",
    "active_until_timestamp_requested",
)

# historical rows (`hd`), in this order; the readings come from bench.sim.metrics.sensors
READINGS: tuple[str, ...] = ("panel_voltage", "panel_current", "battery_voltage", "battery_current", "load_current")
ROW_TIME = "timestamp"
HISTORICAL_ORDER: tuple[str, ...] = READINGS + (ROW_TIME,)

_VARIABLES: dict[str, dict[str, Any]] = {
    "token_count": {"name": "Token count", "type": "integer", "aggregation_method": "latest"},
    "firmware_version": {"name": "Firmware version", "type": "text"},
    "tampered": {"name": "Enclosure opened", "type": "bool", "aggregation_method": "max"},
    "payg_active_until": {
        "name": "Active until (device view)",
        "type": "integer",
        "unit": "s",
        "aggregation_method": "latest",
        "description": "the device's own active-until time, RTC seconds (0: never activated)",
    },
    "payg_disabled": {"name": "PAYG disabled", "type": "bool", "aggregation_method": "latest"},
    "rows_dropped": {
        "name": "Rows dropped",
        "type": "integer",
        "aggregation_method": "max",
        "description": "historical rows dropped since boot because the buffer was full",
    },
    "active_until_timestamp_requested": {"name": "Active-until requested", "type": "bool"},
    "panel_voltage": {"name": "Panel voltage", "type": "integer", "unit": "V", "scale_factor": SCALE_MILLI},
    "panel_current": {"name": "Panel current", "type": "integer", "unit": "A", "scale_factor": SCALE_MILLI},
    "battery_voltage": {"name": "Battery voltage", "type": "integer", "unit": "V", "scale_factor": SCALE_MILLI},
    "battery_current": {
        "name": "Battery current",
        "type": "integer",
        "unit": "A",
        "scale_factor": SCALE_MILLI,
        "description": "positive while charging, negative while discharging",
    },
    "load_current": {"name": "Load current", "type": "integer", "unit": "A", "scale_factor": SCALE_MILLI},
    ROW_TIME: {"name": "Sample time", "type": "integer", "unit": "s"},
}


def device_format(interval_s: int) -> dict[str, Any]:
    """The Data Format object (JSON-able) of a build that samples every `interval_s` seconds."""
    if not isinstance(interval_s, int) or isinstance(interval_s, bool) or interval_s < 1:
        raise ValueError("the historical data interval is a whole number of seconds >= 1")
    return {
        "data_order": list(DATA_ORDER),
        "historical_data_order": list(HISTORICAL_ORDER),
        "historical_data_interval": interval_s,
        "variables": copy.deepcopy(_VARIABLES),
    }
