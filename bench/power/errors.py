"""Errors raised by the PSU layer.

One exception type for everything an instrument can do wrong (no answer, a reply that does not
parse, an error queue that never drains), so callers catch one thing and the message says which
instrument, which command and which reply.
"""

from __future__ import annotations


class InstrumentError(Exception):
    """A PSU did not answer, answered something unparseable, or reported a failure."""


class PowerCycleError(InstrumentError):
    """A power cycle step did not reach its goal (e.g. the rail never fell below the threshold).

    `trace` holds the (t_rel_s, volts, amps) samples taken so far, for the report;
    `reported_on` the output state the PSU reported at the end (None: not asked, or unreadable).
    """

    def __init__(
        self,
        message: str,
        trace: list[tuple[float, float, float]] | None = None,
        *,
        reported_on: bool | None = None,
    ):
        super().__init__(message)
        self.trace: list[tuple[float, float, float]] = list(trace or [])
        self.reported_on = reported_on


class OutputStateMismatch(PowerCycleError):
    """The output state the PSU reports disagrees with the rail it measures: on with no voltage,
    or off with the voltage still there. One of the two readings is wrong, so neither can be
    trusted: an instrument fault, never the DUT's."""

    def __init__(
        self,
        message: str,
        *,
        reported_on: bool,
        volts: float,
        trace: list[tuple[float, float, float]] | None = None,
    ):
        super().__init__(message, trace, reported_on=reported_on)
        self.volts = volts
