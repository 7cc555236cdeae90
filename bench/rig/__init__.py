"""The rig file: one test station (UART, PSU, DUT profile, local server, simulator) as TOML,
parsed once, before anything starts, into frozen typed dataclasses (docs/rig.md). Every mistake is
a `RigError` naming the file, the dotted key, what was found and what was expected, on one line;
device keys never appear in an error, a repr or `describe()`.

model.py holds the types, schema.py the keys (the single source of truth), values.py the reading
of values and keys, device_list.py the OpenPAYGO device-list CSV (parsed once for the rig and the
Metrics server), load.py the entry points re-exported here."""

from bench.rig.device_list import DEVICE_LIST_COLUMNS, DeviceListError, DeviceListRow, read_device_list
from bench.rig.load import load_rig, resolve_rig, virtual_rig
from bench.rig.model import (
    RIG_ENV_VAR,
    VIRTUAL,
    VIRTUAL_DUT_KEY,
    VIRTUAL_DUT_SERIAL,
    VIRTUAL_DUT_STARTING_CODE,
    DutProfile,
    LinkConfig,
    PsuConfig,
    Rig,
    RigError,
    ServerConfig,
    SimConfig,
    StationConfig,
)
from bench.rig.schema import KNOWN_ADAPTERS, KNOWN_PSU_PROFILES

__all__ = [
    "DEVICE_LIST_COLUMNS",
    "KNOWN_ADAPTERS",
    "KNOWN_PSU_PROFILES",
    "RIG_ENV_VAR",
    "VIRTUAL",
    "VIRTUAL_DUT_KEY",
    "VIRTUAL_DUT_SERIAL",
    "VIRTUAL_DUT_STARTING_CODE",
    "DeviceListError",
    "DeviceListRow",
    "DutProfile",
    "LinkConfig",
    "PsuConfig",
    "Rig",
    "RigError",
    "ServerConfig",
    "SimConfig",
    "StationConfig",
    "load_rig",
    "read_device_list",
    "resolve_rig",
    "virtual_rig",
]
