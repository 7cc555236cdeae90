"""The supply's safe state, put whenever a run ends however it ends: a rig file says what safe
means for its DUT (`psu.safe_state`: off, on, or leave it unchanged).

A command is not a state: `OUTP OFF` can be ignored by a stuck relay, lost with a dropped
connection, or reported done by a PSU whose output-state query lies. So the state is confirmed by
measurement (the rail, and the PSU's reported state agreeing with it) and the outcome, confirmed
or not and why, goes to the run record: an unattended bench must never leave a DUT powered
without saying so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bench.power.cycle import SwitchedSupply, checked_output_state, power_off
from bench.power.errors import InstrumentError, OutputStateMismatch, PowerCycleError
from bench.rig import PsuConfig

log = logging.getLogger("bench.power")


@dataclass(frozen=True)
class SafeStateOutcome:
    """Where the supply was left, as measured."""

    wanted: str  # the rig's psu.safe_state
    confirmed: bool | None  # measured in that state; None: nothing to confirm (unchanged)
    volts: float | None  # the rail as last measured (None: not measured)
    output_on: bool | None  # the output state the PSU reported (None: not read)
    detail: str  # one line: how it was confirmed, or why it was not


def apply_safe_state(psu: SwitchedSupply, cfg: PsuConfig) -> SafeStateOutcome:
    """Put the supply in the rig's safe state and confirm it by measurement; never raises an
    InstrumentError (the run is ending anyway: what happened is the outcome)."""
    if cfg.safe_state == "off":
        outcome = _off(psu, cfg)
    elif cfg.safe_state == "on":
        outcome = _on(psu, cfg)
    else:
        outcome = SafeStateOutcome(
            cfg.safe_state, None, None, None, "left as the run left it (psu.safe_state = unchanged): nothing to confirm"
        )
    if outcome.confirmed is False:
        log.error("safe state %s NOT confirmed: %s", outcome.wanted, outcome.detail)
    else:
        log.info("safe state %s: %s", outcome.wanted, outcome.detail)
    return outcome


def not_reached(cfg: PsuConfig, why: str) -> SafeStateOutcome:
    """The outcome when the safe state could not even be tried (the PSU never opened, the run
    stopped while it was being put)."""
    confirmed = None if cfg.safe_state == "unchanged" else False
    return SafeStateOutcome(cfg.safe_state, confirmed, None, None, why)


def gone_with_simulator(cfg: PsuConfig) -> SafeStateOutcome:
    """The outcome on a virtual rig whose simulator process has exited: its simulated supply is
    gone with it, so nothing is powered (observed: the process is gone), and nothing is on."""
    if cfg.safe_state == "unchanged":
        return SafeStateOutcome("unchanged", None, None, None, "left as the run left it: the simulator has exited")
    off = cfg.safe_state == "off"
    return SafeStateOutcome(
        cfg.safe_state,
        off,
        None,
        None,
        "the virtual rig's simulator process has exited: its simulated supply went with it, nothing is powered",
    )


def _off(psu: SwitchedSupply, cfg: PsuConfig) -> SafeStateOutcome:
    try:
        off = power_off(psu, off_threshold_v=cfg.off_threshold_v, settle_timeout_s=cfg.settle_timeout_s)
    except OutputStateMismatch as e:
        return SafeStateOutcome("off", False, e.volts, e.reported_on, str(e))
    except PowerCycleError as e:
        return SafeStateOutcome("off", False, e.trace[-1][1] if e.trace else None, e.reported_on, str(e))
    except InstrumentError as e:
        return SafeStateOutcome("off", False, None, None, str(e))
    t, volts, _amps = off.trace[-1]
    return SafeStateOutcome(
        "off",
        True,
        volts,
        False,
        f"rail measured at {volts:.3f} V, below the {cfg.off_threshold_v} V off threshold, {t:.2f} s after "
        f"switch-off; PSU at {psu.resource} reports its output off",
    )


def _on(psu: SwitchedSupply, cfg: PsuConfig) -> SafeStateOutcome:
    try:
        psu.output(True)
        on = checked_output_state(psu, off_threshold_v=cfg.off_threshold_v, settle_timeout_s=cfg.settle_timeout_s)
        volts = psu.measure_voltage()
    except OutputStateMismatch as e:
        return SafeStateOutcome("on", False, e.volts, e.reported_on, str(e))
    except InstrumentError as e:
        return SafeStateOutcome("on", False, None, None, str(e))
    if not on:
        return SafeStateOutcome(
            "on", False, volts, False, f"PSU at {psu.resource} reports its output off after switching it on"
        )
    return SafeStateOutcome(
        "on",
        True,
        volts,
        True,
        f"rail measured at {volts:.3f} V, above the {cfg.off_threshold_v} V off threshold; PSU at "
        f"{psu.resource} reports its output on",
    )
