"""Simulated programmable PSU: an electrical model plus a Keysight-style SCPI server on TCP.

It stands where a LAN PSU stands: the bench reaches it through pyvisa-py
(`TCPIP0::127.0.0.1::<port>::SOCKET`), and the simulated device subscribes to its output changes
to lose power. Stdlib only: it must not import the host side (bench.power, pyvisa).

Model choices (documented in docs/power.md):
- switching ON sets the output to the setpoint at once (no rise time);
- after OFF the voltage falls *linearly* from its value at switch-off to 0 V over `decay_s`
  (0 = instant), standing in for the output capacitance discharging into a light load;
- current = min(load(volts), limit) while the voltage is above 0, else 0; CC-mode voltage
  fold-back is not modelled.

Simulator extension (no real PSU has it; docs/power.md): a trigger input counting the DUT's
"NVM page written" markers. `SIM:TRIGger:NVM <k>` arms it: when the DUT on the channel completes
its k-th NVM page write from now, the output is cut and the rail collapses at once (a MOSFET or
crowbar in the supply line, not the output capacitor's decay), as a lab cuts its PSU from a
DUT's "NVM write" GPIO. `0` disarms; `SIM:TRIGger:NVM?` answers the page writes still to go
(0: not armed, or fired).
"""

from __future__ import annotations

import logging
import math
import re
import socket
import socketserver
import threading
import time
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger("bench.sim.psu")

Load = Callable[[float], float]
"""volts -> amps the device draws at that voltage."""
OutputObserver = Callable[[int, bool], None]


@dataclass
class _Channel:
    setpoint_v: float = 0.0
    limit_a: float = 0.1
    on: bool = False
    off_at: float = -math.inf  # monotonic time the output was last switched off
    v_at_off: float = 0.0  # output voltage at that moment, start of the decay
    load: Load | None = None
    nvm_cut_after: int = 0  # armed NVM trigger: page writes to go before a cut (0 = not armed)


class SimulatedSupply:
    """A multi-channel bench supply: setpoints, outputs, decay after OFF, a load per channel."""

    def __init__(
        self,
        channels: int = 3,
        decay_s: float = 0.3,
        max_voltage: float = 30.0,
        max_current: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if channels < 1:
            raise ValueError("a supply needs at least one channel")
        if not (decay_s >= 0 and math.isfinite(decay_s)):
            raise ValueError(f"decay_s must be finite and >= 0, got {decay_s!r}")
        self.channels = channels
        self.decay_s = decay_s
        self.max_voltage = max_voltage
        self.max_current = max_current
        self.clock = clock
        self._lock = threading.RLock()
        self._ch = {n: _Channel() for n in range(1, channels + 1)}
        self._observers: list[OutputObserver] = []

    # -- settings -----------------------------------------------------------------------------

    def set_voltage(self, ch: int, volts: float) -> None:
        volts = self._in_range(volts, self.max_voltage, "voltage")
        with self._lock:
            self._chan(ch).setpoint_v = volts

    def set_current_limit(self, ch: int, amps: float) -> None:
        amps = self._in_range(amps, self.max_current, "current")
        with self._lock:
            self._chan(ch).limit_a = amps

    def setpoint(self, ch: int) -> float:
        with self._lock:
            return self._chan(ch).setpoint_v

    def current_limit(self, ch: int) -> float:
        with self._lock:
            return self._chan(ch).limit_a

    def set_output(self, ch: int, on: bool) -> None:
        """Switch an output; observers hear about real changes only, outside the lock."""
        self._switch(ch, on, collapse=False)

    def cut(self, ch: int) -> None:
        """Switch an output off with the rail collapsing at once instead of decaying."""
        self._switch(ch, False, collapse=True)

    def _switch(self, ch: int, on: bool, collapse: bool) -> None:
        with self._lock:
            c = self._chan(ch)
            if c.on == on:
                return
            now = self.clock()
            if not on:
                c.v_at_off = 0.0 if collapse else c.setpoint_v
                c.off_at = now
            c.on = on
            observers = list(self._observers)
        for fn in observers:
            try:
                fn(ch, on)
            except Exception:  # an observer bug must not break the PSU
                log.exception("PSU output observer %r failed", fn)

    def output(self, ch: int) -> bool:
        with self._lock:
            return self._chan(ch).on

    # -- NVM trigger (simulator extension) ------------------------------------------------------

    def arm_nvm_cut(self, ch: int, pages: int) -> None:
        """Cut the output when the DUT completes its `pages`-th NVM page write from now (0 disarms)."""
        if isinstance(pages, bool) or not isinstance(pages, int) or pages < 0:
            raise ValueError(f"page count must be a whole number >= 0, got {pages!r}")
        with self._lock:
            self._chan(ch).nvm_cut_after = pages

    def nvm_cut_pending(self, ch: int) -> int:
        with self._lock:
            return self._chan(ch).nvm_cut_after

    def nvm_page_written(self, ch: int) -> None:
        """The trigger input: the DUT powered by `ch` completed one NVM page write."""
        with self._lock:
            c = self._chan(ch)
            if c.nvm_cut_after <= 0:
                return
            c.nvm_cut_after -= 1
            fire = c.nvm_cut_after == 0
        if fire:
            log.info("NVM trigger: cutting output %d", ch)
            self.cut(ch)

    def reset(self) -> None:
        """*RST: all outputs off, setpoints to defaults (observers notified of OFF)."""
        for ch in self._ch:
            self.set_output(ch, False)
        with self._lock:
            for c in self._ch.values():
                c.setpoint_v, c.limit_a = 0.0, 0.1

    # -- electrical model ---------------------------------------------------------------------

    def voltage(self, ch: int, now: float | None = None) -> float:
        """Output voltage now: setpoint while on, linear decay to 0 over decay_s after OFF."""
        with self._lock:
            c = self._chan(ch)
            if c.on:
                return c.setpoint_v
            t = (self.clock() if now is None else now) - c.off_at
            if self.decay_s == 0 or t >= self.decay_s:
                return 0.0
            return c.v_at_off * (1.0 - max(t, 0.0) / self.decay_s)

    def set_load(self, ch: int, fn: Load | None) -> None:
        """Register what the device draws (volts -> amps); None removes it."""
        with self._lock:
            self._chan(ch).load = fn

    def current(self, ch: int, now: float | None = None) -> float:
        """min(load(volts), limit) while the output voltage is above 0; else 0."""
        with self._lock:
            volts = self.voltage(ch, now)
            c = self._chan(ch)
            load, limit = c.load, c.limit_a
        if volts <= 0 or load is None:
            return 0.0
        amps = float(load(volts))  # called outside the lock: the load may query the supply
        if not math.isfinite(amps) or amps <= 0:
            return 0.0
        return min(amps, limit)

    def subscribe(self, fn: OutputObserver) -> Callable[[], None]:
        """Call fn(ch, on) on every output change; returns an unsubscribe function."""
        with self._lock:
            self._observers.append(fn)

        def unsubscribe() -> None:
            with self._lock:
                if fn in self._observers:
                    self._observers.remove(fn)

        return unsubscribe

    # -- helpers ------------------------------------------------------------------------------

    def _chan(self, ch: int) -> _Channel:
        try:
            return self._ch[ch]
        except KeyError:
            raise ValueError(f"no channel {ch} (1..{self.channels})") from None

    @staticmethod
    def _in_range(value: float, maximum: float, what: str) -> float:
        value = float(value)
        if not (math.isfinite(value) and 0 <= value <= maximum):
            raise ValueError(f"{what} {value} outside 0..{maximum}")
        return value


# ------------------------------------------------------------------------------------------------
# SCPI


class ScpiError(Exception):
    """A command the instrument rejects: pushed on the error queue, no reply."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{code},{message}")
        self.code, self.message = code, message

    @property
    def entry(self) -> str:
        return f'{self.code:+d},"{self.message}"'


UNDEFINED_HEADER = (-113, "Undefined header")
DATA_OUT_OF_RANGE = (-222, "Data out of range")
MISSING_PARAMETER = (-109, "Missing parameter")
DATA_TYPE_ERROR = (-104, "Data type error")
PARAMETER_NOT_ALLOWED = (-108, "Parameter not allowed")
QUEUE_OVERFLOW = (-350, "Queue overflow")
NO_ERROR = '+0,"No error"'
ERROR_QUEUE_SIZE = 20
MAX_LINE = 4096


def _pattern(spec: str) -> list[tuple[str, str, bool]]:
    """'[SOURce:]VOLTage[:LEVel]' -> [(short, long, optional), ...] (short = the capitals)."""
    nodes = []
    for m in re.finditer(r"(\[)?:?([A-Za-z*]+)\]?", spec):
        word = m.group(2)
        short = "".join(ch for ch in word if ch.isupper() or ch == "*") or word
        nodes.append((short.upper(), word.upper(), m.group(1) is not None))
    return nodes


def _match(nodes: list[str], pattern: list[tuple[str, str, bool]]) -> bool:
    """SCPI header match: each node in its short or long form; optional nodes may be left out."""
    if not pattern:
        return not nodes
    short, long_, optional = pattern[0]
    if nodes and nodes[0] in (short, long_) and _match(nodes[1:], pattern[1:]):
        return True
    return optional and _match(nodes, pattern[1:])


_CHANNEL_LIST = re.compile(r"\(\s*@([^)]*)\)")


class _Instrument:
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
        ):
            self._table.append((_pattern(spec), is_query, fn))

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
            if query == is_query and _match(nodes, pattern):
                args, channels = self._params(params)
                return fn(args, channels)
        raise ScpiError(*UNDEFINED_HEADER)

    def _params(self, text: str) -> tuple[list[str], list[int] | None]:
        """Split parameters; a `(@1)`, `(@1,2)` or `(@1:3)` channel list is returned apart."""
        channels = None
        m = _CHANNEL_LIST.search(text)
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

    def _next_error(self, args, chs):
        self._no_args(args)
        return self.errors.pop(0) if self.errors else NO_ERROR


class _Handler(socketserver.StreamRequestHandler):
    """One client connection: LF-terminated lines in, one reply line per line with queries."""

    server: "_TcpServer"

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.request, True)

    def finish(self) -> None:
        self.server.track(self.request, False)
        try:
            super().finish()
        except OSError:
            pass

    def handle(self) -> None:
        inst = self.server.instrument
        while True:
            try:
                raw = self.rfile.readline(MAX_LINE + 1)
            except OSError:
                return  # client vanished or server closing
            if not raw:
                return
            if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                inst.push_error(ScpiError(-223, "Too much data"))
                self._discard_rest_of_line()
                continue
            line = raw.decode("ascii", errors="replace").strip("\r\n\x00 ")
            reply = inst.execute_line(line)
            if reply is None:
                continue
            try:
                self.wfile.write(reply.encode("ascii", errors="replace") + b"\n")
                self.wfile.flush()
            except OSError:
                return

    def _discard_rest_of_line(self) -> None:
        while True:
            try:
                chunk = self.rfile.readline(MAX_LINE)
            except OSError:
                return
            if not chunk or chunk.endswith(b"\n"):
                return


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], instrument: _Instrument):
        self.instrument = instrument
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, sock: socket.socket, alive: bool) -> None:
        with self._clients_lock:
            (self._clients.add if alive else self._clients.discard)(sock)

    def drop_clients(self) -> None:
        with self._clients_lock:
            clients, self._clients = list(self._clients), set()
        for sock in clients:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        log.exception("simulated PSU: error serving %s", client_address)


class ScpiServer:
    """Keysight-style SCPI over raw TCP for a SimulatedSupply (what a LAN PSU offers on 5025)."""

    def __init__(
        self,
        supply: SimulatedSupply,
        host: str = "127.0.0.1",
        port: int = 0,
        idn: str = "PAYGO-BENCH,SIM-PSU3,0001,1.0",
    ) -> None:
        self.supply = supply
        self.instrument = _Instrument(supply, idn)
        self._server = _TcpServer((host, port), self.instrument)
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def visa_resource(self) -> str:
        return f"TCPIP0::{self.host}::{self.port}::SOCKET"

    def start(self) -> "ScpiServer":
        """Serve in a background daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"sim-psu:{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop accepting, drop every open connection (clients see the link go), free the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=2.0)
            self._thread = None
        self._server.drop_clients()
        self._server.server_close()

    def __enter__(self) -> "ScpiServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
