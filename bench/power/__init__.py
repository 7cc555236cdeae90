"""Host side of the PSU: instrument profiles (data), the pyvisa driver and the power cycle."""

from bench.power.cycle import CycleReport, PowerOff, Step, power_cycle, power_off, power_on
from bench.power.driver import Psu
from bench.power.errors import InstrumentError, PowerCycleError
from bench.power.profiles import PROFILES, PsuProfile, get_profile

__all__ = [
    "PROFILES",
    "CycleReport",
    "InstrumentError",
    "PowerCycleError",
    "PowerOff",
    "Psu",
    "PsuProfile",
    "Step",
    "get_profile",
    "power_cycle",
    "power_off",
    "power_on",
]
