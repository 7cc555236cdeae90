"""The simulated device's measurements: a solar home system's panel, battery and load.

Deterministic: a reading is a function of the RTC time and of whether the load is switched on
(the PAYG output is on while the device has credit), nothing else, so a test can predict it and
two runs give the same rows. Values are integers, mV and mA (scale_factor 0.001 in the device's
data format, bench.sim.metrics.device_format), as a firmware's ADC code would keep them.

The model, by time of day (UTC + `tz_offset_s`):
- panel: a half-sine sun from 06:00 to 18:00 (peak 3 A at noon), thinned by slow passing clouds;
  its voltage sits above the battery's while it charges, 0 at night;
- load: 1.2 A from 18:00 to 23:00 (lights, TV), 0.3 A otherwise, 0 when the output is off;
- battery: a state of charge following the day (lowest at 03:00, highest at 15:00), its voltage
  12.0 V + 1.4 V x charge + 30 mOhm x current; its current is charge minus load minus the
  controller's own 20 mA (positive while charging), tapering once it is nearly full.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DAY_S = 86400
HOUR_S = 3600
PANEL_PEAK_MA = 3000
LOAD_EVENING_MA = 1200
LOAD_BASE_MA = 300
CONTROLLER_MA = 20
BATTERY_EMPTY_MV = 12000
BATTERY_SPAN_MV = 1400
BATTERY_MOHM = 30
CHARGE_EFFICIENCY = 0.92
FULL_SOC = 0.95


@dataclass(frozen=True)
class Reading:
    """One sample, integer mV / mA (battery current signed: + charging, - discharging)."""

    panel_voltage: int
    panel_current: int
    battery_voltage: int
    battery_current: int
    load_current: int

    def as_dict(self) -> dict[str, int]:
        return {
            "panel_voltage": self.panel_voltage,
            "panel_current": self.panel_current,
            "battery_voltage": self.battery_voltage,
            "battery_current": self.battery_current,
            "load_current": self.load_current,
        }


def _jitter(t: int, amplitude: int) -> int:
    """A repeatable small disturbance in -amplitude..amplitude (ADC noise), from the time only."""
    h = (t * 2654435761) & 0xFFFFFFFF
    return (h % (2 * amplitude + 1)) - amplitude


def sun(t: float, tz_offset_s: int = 0) -> float:
    """Irradiance 0..1: a half sine over the day, with clouds drifting by (90-minute cycle)."""
    tod = (t + tz_offset_s) % DAY_S
    if not 6 * HOUR_S < tod < 18 * HOUR_S:
        return 0.0
    clear = math.sin(math.pi * (tod - 6 * HOUR_S) / (12 * HOUR_S))
    clouds = 0.85 + 0.15 * math.cos(2 * math.pi * t / 5400)
    return clear * clouds


def state_of_charge(t: float, tz_offset_s: int = 0) -> float:
    """0.3 at 03:00 to 0.9 at 15:00, following the day."""
    tod = (t + tz_offset_s) % DAY_S
    return 0.6 + 0.3 * math.sin(2 * math.pi * (tod - 9 * HOUR_S) / DAY_S)


def load_ma(t: float, load_on: bool, tz_offset_s: int = 0) -> int:
    if not load_on:
        return 0
    tod = (t + tz_offset_s) % DAY_S
    return LOAD_EVENING_MA if 18 * HOUR_S <= tod < 23 * HOUR_S else LOAD_BASE_MA


def sample(t: float, load_on: bool, tz_offset_s: int = 0) -> Reading:
    """The reading at RTC time t (seconds) with the load switched on or off."""
    ti = int(t)
    irradiance = sun(ti, tz_offset_s)
    soc = state_of_charge(ti, tz_offset_s)
    panel_ma = round(PANEL_PEAK_MA * irradiance)
    load = load_ma(ti, load_on, tz_offset_s)
    if soc < FULL_SOC:
        charge_ma = round(panel_ma * CHARGE_EFFICIENCY)
    else:  # nearly full: the controller only covers the load
        charge_ma = min(round(panel_ma * CHARGE_EFFICIENCY), load + CONTROLLER_MA)
    battery_ma = charge_ma - load - CONTROLLER_MA
    battery_mv = round(BATTERY_EMPTY_MV + BATTERY_SPAN_MV * soc + battery_ma * BATTERY_MOHM / 1000) + _jitter(ti, 3)
    panel_mv = round(battery_mv + 400 + 4500 * irradiance) + _jitter(ti + 1, 5) if panel_ma > 0 else 0
    return Reading(panel_mv, panel_ma, battery_mv, battery_ma, load)
