"""The supply's safe state, put whenever a run ends however it ends: a rig file says what safe
means for its DUT (`psu.safe_state`: off, on, or leave it)."""

from __future__ import annotations

import logging

from bench.power.driver import Psu
from bench.power.errors import InstrumentError

log = logging.getLogger("bench.power")


def apply_safe_state(psu: Psu, safe_state: str) -> None:
    try:
        if safe_state == "off":
            psu.output(False)
        elif safe_state == "on":
            psu.output(True)
    except InstrumentError as e:  # the run is ending anyway: say so, don't mask the real outcome
        log.error("could not put the PSU in its safe state (%s): %s", safe_state, e)
