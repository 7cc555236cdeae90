"""The simulated PSU as a SCPI instrument: the command table, dispatch of `;`-separated lines,
channel lists, the error queue, and each command's effect on the supply. Its state (channel
selection, error queue) is instrument-wide, shared by all connections."""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable

from bench.sim.psu.scpi import (
    CHANNEL_LIST,
    DATA_OUT_OF_RANGE,
    DATA_TYPE_ERROR,
    MISSING_PARAMETER,
    NO_ERROR,
    PARAMETER_NOT_ALLOWED,
    QUEUE_OVERFLOW,
    UNDEFINED_HEADER,
    ScpiError,
    header_matches,
    header_pattern,
)
from bench.sim.psu.supply import SimulatedSupply

log = logging.getLogger("bench.sim.psu")

ERROR_QUEUE_SIZE = 20


class Instrument:
    """SCPI state shared by all connections (selection and error queue are instrument-wide)."""

    def __init__(self, supply: SimulatedSupply, idn: str):
        self.supply = supply
        self.idn = idn
        self.selected = 1
        self.errors: list[str] = []
        self.lock = threading.RLock()
        self._table: list[tuple[list[tuple[str, str, bool]], bool, Callable]] = []
        for spec, is_query, fn in (
            ("*IDN", True, lambda a, chs: self._no_args(a) or self.idn),
            ("*OPC", True, lambda a, chs: self._no_args(a) or "1"),
            ("*OPC", False, lambda a, chs: self._no_args(a)),
            ("*RST", False, self._rst),
            ("*CLS", False, self._cls),
            ("INSTrument:NSELect", False, self._select),
            ("INSTrument:NSELect", True, lambda a, chs: self._no_args(a) or str(self.selected)),
            ("INSTrument[:SELect]", False, self._select_name),
            ("INSTrument[:SELect]", True, lambda a, chs: self._no_args(a) or f"CH{self.selected}"),
            ("[SOURce:]VOLTage[:LEVel][:IMMediate][:AMPLitude]", False, self._set_volt),
            ("[SOURce:]VOLTage[:LEVel][:IMMediate][:AMPLitude]", True, self._get_volt),
            ("[SOURce:]CURRent[:LEVel][:IMMediate][:AMPLitude]", False, self._set_curr),
            ("[SOURce:]CURRent[:LEVel][:IMMediate][:AMPLitude]", True, self._get_curr),
            ("OUTPut[:STATe]", False, self._set_output),
            ("OUTPut[:STATe]", True, self._get_output),
            ("MEASure[:SCALar]:VOLTage[:DC]", True, self._meas_volt),
            ("MEASure[:SCALar]:CURRent[:DC]", True, self._meas_curr),
            ("SYSTem:ERRor[:NEXT]", True, self._next_error),
            ("SIMulation:TRIGger:NVM", False, self._arm_nvm),
            ("SIMulation:TRIGger:NVM", True, self._nvm_pending),
            ("SIMulation:TIME:SKIP", False, self._skip_time),
            ("SIMulation:TIME:SKIP", True, self._skipped_time),
        ):
            self._table.append((header_pattern(spec), is_query, fn))

    # -- dispatch -----------------------------------------------------------------------------

    def execute_line(self, line: str) -> str | None:
        """Run one `;`-separated line; the joined replies, or None when there are none."""
        replies = []
        with self.lock:
            for command in line.split(";"):
                command = command.strip()
                if not command:
                    continue
                try:
                    reply = self._execute(command)
                except ScpiError as exc:
                    self.push_error(exc)
                    continue
                except Exception:  # a simulator bug must not kill the connection
                    log.exception("simulated PSU failed on %r", command)
                    self.push_error(ScpiError(-300, "Device-specific error"))
                    continue
                if reply is not None:
                    replies.append(reply)
        return ";".join(replies) if replies else None

    def _execute(self, command: str) -> str | None:
        header, _, params = command.partition(" ")
        header = header.strip().upper()
        is_query = header.endswith("?")
        nodes = header.rstrip("?").lstrip(":").split(":")
        if not all(nodes) or any(not re.fullmatch(r"\*?[A-Z0-9]+", n) for n in nodes):
            raise ScpiError(*UNDEFINED_HEADER)
        for pattern, query, fn in self._table:
            if query == is_query and header_matches(nodes, pattern):
                args, channels = self._params(params)
                return fn(args, channels)
        raise ScpiError(*UNDEFINED_HEADER)

    def _params(self, text: str) -> tuple[list[str], list[int] | None]:
        """Split parameters; a `(@1)`, `(@1,2)` or `(@1:3)` channel list is returned apart."""
        channels = None
        m = CHANNEL_LIST.search(text)
        if m:
            channels = self._channel_list(m.group(1))
            text = text[: m.start()] + text[m.end() :]
        args = [a.strip() for a in text.split(",")]
        return [a for a in args if a], channels

    def _channel_list(self, text: str) -> list[int]:
        chans: list[int] = []
        for part in text.split(","):
            lo, _, hi = part.strip().partition(":")
            try:
                a, b = int(lo), int(hi or lo)
            except ValueError:
                raise ScpiError(*DATA_TYPE_ERROR) from None
            chans.extend(range(a, b + 1))
        for ch in chans:
            self._check_channel(ch)
        if not chans:
            raise ScpiError(*MISSING_PARAMETER)
        return chans

    def push_error(self, err: ScpiError) -> None:
        with self.lock:
            if len(self.errors) >= ERROR_QUEUE_SIZE:
                # SCPI: on overflow the newest entry is replaced by -350.
                self.errors[-1] = ScpiError(*QUEUE_OVERFLOW).entry
            else:
                self.errors.append(err.entry)

    # -- helpers ------------------------------------------------------------------------------

    def _check_channel(self, ch: int) -> None:
        if not 1 <= ch <= self.supply.channels:
            raise ScpiError(*DATA_OUT_OF_RANGE)

    def _targets(self, chs: list[int] | None) -> list[int]:
        return chs if chs is not None else [self.selected]

    @staticmethod
    def _one(args: list[str], allowed: int = 1) -> str:
        if not args:
            raise ScpiError(*MISSING_PARAMETER)
        if len(args) > allowed:
            raise ScpiError(*PARAMETER_NOT_ALLOWED)
        return args[0]

    @staticmethod
    def _no_args(args: list[str]) -> None:
        if args:
            raise ScpiError(*PARAMETER_NOT_ALLOWED)

    @staticmethod
    def _number(text: str, maximum: float) -> float:
        word = text.upper()
        if word in ("MIN", "MINIMUM"):
            return 0.0
        if word in ("MAX", "MAXIMUM"):
            return maximum
        try:
            value = float(text)
        except ValueError:
            raise ScpiError(*DATA_TYPE_ERROR) from None
        if not (math.isfinite(value) and 0 <= value <= maximum):
            raise ScpiError(*DATA_OUT_OF_RANGE)
        return value

    @staticmethod
    def _fmt(value: float) -> str:
        return f"{value:+.8E}"  # Keysight NR3 style: +5.00000000E+00

    # -- commands -----------------------------------------------------------------------------

    def _rst(self, args, chs):
        self._no_args(args)
        self.supply.reset()
        self.selected = 1

    def _cls(self, args, chs):
        self._no_args(args)
        self.errors.clear()

    def _select(self, args, chs):
        text = self._one(args)
        try:
            ch = int(text)
        except ValueError:
            raise ScpiError(*DATA_TYPE_ERROR) from None
        self._check_channel(ch)
        self.selected = ch

    def _select_name(self, args, chs):
        m = re.fullmatch(r"(?:CH|OUT|OUTP|OUTPUT)(\d+)", self._one(args).upper())
        if not m:
            raise ScpiError(*DATA_TYPE_ERROR)
        ch = int(m.group(1))
        self._check_channel(ch)
        self.selected = ch

    def _set_volt(self, args, chs):
        value = self._number(self._one(args), self.supply.max_voltage)
        for ch in self._targets(chs):
            self.supply.set_voltage(ch, value)

    def _get_volt(self, args, chs):
        self._no_args(args)
        return ",".join(self._fmt(self.supply.setpoint(ch)) for ch in self._targets(chs))

    def _set_curr(self, args, chs):
        value = self._number(self._one(args), self.supply.max_current)
        for ch in self._targets(chs):
            self.supply.set_current_limit(ch, value)

    def _get_curr(self, args, chs):
        self._no_args(args)
        return ",".join(self._fmt(self.supply.current_limit(ch)) for ch in self._targets(chs))

    def _set_output(self, args, chs):
        word = self._one(args).upper()
        if word not in ("ON", "OFF", "1", "0"):
            raise ScpiError(*DATA_TYPE_ERROR)
        for ch in self._targets(chs):
            self.supply.set_output(ch, word in ("ON", "1"))

    def _get_output(self, args, chs):
        self._no_args(args)
        return ",".join("1" if self.supply.output(ch) else "0" for ch in self._targets(chs))

    def _meas_volt(self, args, chs):
        self._no_args(args)
        return ",".join(self._fmt(self.supply.voltage(ch)) for ch in self._targets(chs))

    def _meas_curr(self, args, chs):
        self._no_args(args)
        return ",".join(self._fmt(self.supply.current(ch)) for ch in self._targets(chs))

    def _arm_nvm(self, args, chs):
        text = self._one(args)
        if not re.fullmatch(r"\+?\d+", text):
            raise ScpiError(*DATA_TYPE_ERROR)
        pages = int(text)
        if pages > 1_000_000:
            raise ScpiError(*DATA_OUT_OF_RANGE)
        for ch in self._targets(chs):
            self.supply.arm_nvm_cut(ch, pages)

    def _nvm_pending(self, args, chs):
        self._no_args(args)
        return ",".join(str(self.supply.nvm_cut_pending(ch)) for ch in self._targets(chs))

    def _skip_time(self, args, chs):
        seconds = self._number(self._one(args), 10 * 365 * 86400.0)
        for ch in self._targets(chs):
            if not self.supply.skip_off_time(ch, seconds):
                raise ScpiError(-221, "Settings conflict; the output is on or the DUT is not unpowered")

    def _skipped_time(self, args, chs):
        self._no_args(args)
        return ",".join(self._fmt(self.supply.skipped_off_time(ch)) for ch in self._targets(chs))

    def _next_error(self, args, chs):
        self._no_args(args)
        return self.errors.pop(0) if self.errors else NO_ERROR
