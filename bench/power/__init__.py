"""Host side of the PSU: instrument profiles (data), the pyvisa driver and the power cycle."""

from bench.power.cycle import CycleReport, PowerOff, Step, checked_output_state, power_cycle, power_off, power_on
from bench.power.driver import Psu
from bench.power.errors import InstrumentError, OutputStateMismatch, PowerCycleError
from bench.power.profiles import PROFILES, PsuProfile, get_profile

__all__ = [
    "PROFILES",
    "CycleReport",
    "InstrumentError",
    "OutputStateMismatch",
    "PowerCycleError",
    "PowerOff",
    "Psu",
    "PsuProfile",
    "Step",
    "checked_output_state",
    "get_profile",
    "power_cycle",
    "power_off",
    "power_on",
]
