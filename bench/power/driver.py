"""PSU driver: one channel of a programmable supply, reached through pyvisa.

All model differences come from a `PsuProfile`. Every reply is parsed here, at the edge, and
every failure (no answer, lost connection, unparseable reply) becomes an `InstrumentError` that
names the resource, the command and the reply, so a failed bench run says what went wrong.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

import pyvisa
import pyvisa.errors
from pyvisa import constants
from pyvisa.constants import ResourceAttribute

from bench.power.errors import InstrumentError
from bench.power.profiles import PsuProfile, get_profile

log = logging.getLogger("bench.power")

TrafficCallback = Callable[[str, str], None]
"""Called with ("TX" | "RX", text) for every command sent and reply received."""

TRAFFIC_LOG_MAX = 10_000
_REPLY_STRIP = " \t\r\n\x00"  # CR from CRLF instruments, NUL padding from some USB serial links
_TRANSPORT_ERRORS = (pyvisa.errors.Error, OSError, EOFError)


class Instrument(Protocol):
    """What the driver needs from a VISA resource (a replay fake satisfies it too)."""

    def write(self, message: str) -> object: ...

    def query(self, message: str) -> str: ...

    def close(self) -> None: ...


class Psu:
    """One output channel of a PSU, speaking the dialect described by its profile."""

    def __init__(
        self,
        instrument: Instrument,
        profile: PsuProfile | str,
        channel: int,
        *,
        resource: str | None = None,
        timeout_s: float | None = None,
        on_traffic: TrafficCallback | None = None,
    ) -> None:
        _check_channel(channel)
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.channel = channel
        self.resource = resource or getattr(instrument, "resource_name", None) or repr(instrument)
        self.timeout_s = timeout_s
        self.on_traffic = on_traffic
        self.traffic: deque[tuple[float, str, str]] = deque(maxlen=TRAFFIC_LOG_MAX)
        self._inst = instrument
        self._next_cmd_at = 0.0
        self._closed = False

    @classmethod
    def open(
        cls,
        resource: str,
        profile: PsuProfile | str,
        channel: int,
        *,
        timeout_s: float = 2.0,
        visa_library: str = "@py",
        on_traffic: TrafficCallback | None = None,
    ) -> Psu:
        """Open `resource` through pyvisa with the profile's terminators and a timeout.

        Terminators are always set: pyvisa-py SOCKET resources default to no read terminator,
        and a query then waits for the timeout instead of returning at the line end.
        """
        prof = get_profile(profile) if isinstance(profile, str) else profile
        _check_channel(channel)
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a positive number, got {timeout_s!r}")
        try:
            rm = pyvisa.ResourceManager(visa_library)
            inst: Instrument = rm.open_resource(  # type: ignore[assignment]  # a message-based resource
                resource,
                read_termination=prof.read_termination,
                write_termination=prof.write_termination,
                timeout=round(timeout_s * 1000),
            )
        except Exception as exc:  # noqa: BLE001 - backends raise plain Exception (pyvisa-py DNS)
            raise InstrumentError(f"could not open PSU at {resource} ({prof.name} profile): {exc}") from exc
        if resource.upper().endswith("::SOCKET"):
            _disable_nagle(inst, resource)
        log.info("opened PSU %s, profile %s, channel %d", resource, prof.name, channel)
        return cls(inst, prof, channel, resource=resource, timeout_s=timeout_s, on_traffic=on_traffic)

    # -- public API ---------------------------------------------------------------------------

    def idn(self) -> str:
        reply = self._query(self.profile.idn)
        if not reply:
            raise self._bad_reply(self.profile.idn, reply, "empty identity string")
        return reply

    def set_voltage(self, volts: float) -> None:
        self._send_for_channel(self.profile.set_voltage, _setpoint(volts, "voltage"))

    def set_current_limit(self, amps: float) -> None:
        self._send_for_channel(self.profile.set_current_limit, _setpoint(amps, "current limit"))

    def output(self, on: bool) -> None:
        self._send_for_channel(self.profile.output_on if on else self.profile.output_off)

    def output_state(self) -> bool:
        cmd = self._for_channel(self.profile.output_query)
        reply = self._query(cmd)
        try:
            return self.profile.output_state.parse(reply, self.channel)
        except ValueError as exc:
            raise self._bad_reply(cmd, reply, str(exc)) from None

    def measure_voltage(self) -> float:
        return self._query_number(self.profile.measure_voltage)

    def measure_current(self) -> float:
        return self._query_number(self.profile.measure_current)

    @property
    def can_cut_on_nvm_write(self) -> bool:
        """Whether the profile has a trigger that cuts the output on the DUT's NVM writes."""
        return self.profile.nvm_cut_trigger is not None

    def cut_on_nvm_write(self, pages: int) -> None:
        """Arm the PSU to cut the output once the DUT completes its `pages`-th NVM page write from
        now (0 disarms), and read the setting back where the profile can, so the trigger is known
        to be armed before the DUT is asked to write."""
        template = self.profile.nvm_cut_trigger
        if template is None:
            raise InstrumentError(f"PSU at {self.resource} ({self.profile.name} profile) has no NVM-write trigger")
        if isinstance(pages, bool) or not isinstance(pages, int) or not 0 <= pages <= 999_999:
            raise ValueError(f"page count must be a whole number 0..999999, got {pages!r}")
        self._send_for_channel(template, pages)
        query = self.profile.nvm_cut_query
        if query is not None:
            cmd = self._for_channel(query)
            reply = self._query(cmd)
            try:
                armed = self.profile.parse_number(reply)
            except ValueError as exc:
                raise self._bad_reply(cmd, reply, str(exc)) from None
            if armed != pages:
                raise self._bad_reply(cmd, reply, f"the trigger was set to {pages} page writes")

    def operation_complete(self) -> None:
        """Block until the PSU has processed earlier commands (`*OPC?` -> 1), if it supports it."""
        if self.profile.opc is None:
            return
        reply = self._query(self.profile.opc)
        if reply.strip() != "1":
            raise self._bad_reply(self.profile.opc, reply, "expected 1")

    def check_errors(self, max_reads: int = 32) -> list[str]:
        """Drain the error queue; the entries read before "no error" (raw reply text).

        Bounded: a queue that never reports "no error" after `max_reads` reads raises.
        """
        cmd = self.profile.error_query
        if cmd is None:
            return []
        errors: list[str] = []
        for _ in range(max_reads):
            reply = self._query(cmd)
            try:
                code, _message = self.profile.error_reply.parse(reply)
            except ValueError as exc:
                raise self._bad_reply(cmd, reply, str(exc)) from None
            if not self.profile.error_reply.is_error(code):
                if errors:
                    log.warning("PSU %s reported errors: %s", self.resource, errors)
                return errors
            errors.append(reply)
        raise InstrumentError(
            f"PSU at {self.resource}: error queue not empty after {max_reads} '{cmd}' reads "
            f"(first: {errors[0]!r}, last: {errors[-1]!r})"
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._inst.close()
        except _TRANSPORT_ERRORS as exc:
            log.warning("closing PSU %s failed: %s", self.resource, exc)

    def __enter__(self) -> Psu:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Psu({self.resource!r}, {self.profile.name!r}, channel={self.channel})"

    # -- edges --------------------------------------------------------------------------------

    def _for_channel(self, template: str, value: float | None = None) -> str:
        """Select the channel first when the profile needs it; return the filled command."""
        if self.profile.select_channel is not None:
            self._write(self.profile.command(self.profile.select_channel, self.channel))
        return self.profile.command(template, self.channel, value)

    def _send_for_channel(self, template: str, value: float | None = None) -> None:
        self._write(self._for_channel(template, value))

    def _query_number(self, template: str) -> float:
        cmd = self._for_channel(template)
        reply = self._query(cmd)
        try:
            value = self.profile.parse_number(reply)
        except ValueError as exc:
            raise self._bad_reply(cmd, reply, str(exc)) from None
        if not math.isfinite(value):
            raise self._bad_reply(cmd, reply, "not a finite number")
        return value

    def _write(self, cmd: str) -> None:
        self._pace()
        self._record("TX", cmd)
        try:
            self._inst.write(cmd)
        except _TRANSPORT_ERRORS as exc:
            raise InstrumentError(f"PSU at {self.resource} did not accept '{cmd}': {exc}") from exc
        finally:
            self._next_cmd_at = time.monotonic() + self.profile.interval_after(cmd)

    def _query(self, cmd: str) -> str:
        self._pace()
        self._record("TX", cmd)
        try:
            raw = self._inst.query(cmd)
        except _TRANSPORT_ERRORS as exc:
            within = f" within {self.timeout_s} s" if self.timeout_s is not None else ""
            raise InstrumentError(f"PSU at {self.resource} did not answer '{cmd}'{within}: {exc}") from exc
        finally:
            self._next_cmd_at = time.monotonic() + self.profile.interval_after(cmd)
        if not isinstance(raw, str):
            raise self._bad_reply(cmd, repr(raw), "reply is not text")
        reply = raw.strip(_REPLY_STRIP)
        self._record("RX", reply)
        return reply

    def _pace(self) -> None:
        """Wait out the profile's inter-command gap (a sleep until a monotonic deadline)."""
        if self._closed:
            raise InstrumentError(f"PSU at {self.resource} is closed")
        remaining = self._next_cmd_at - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)

    def _record(self, direction: str, text: str) -> None:
        self.traffic.append((time.monotonic(), direction, text))
        log.debug("%s %s %s", self.resource, direction, text)
        if self.on_traffic is not None:
            self.on_traffic(direction, text)

    def _bad_reply(self, cmd: str, reply: str, why: str) -> InstrumentError:
        return InstrumentError(f"PSU at {self.resource} ({self.profile.name}) answered '{cmd}' with {reply!r}: {why}")


def _check_channel(channel: int) -> None:
    if isinstance(channel, bool) or not isinstance(channel, int) or channel < 1:
        raise ValueError(f"PSU channel must be an integer >= 1, got {channel!r}")


def _disable_nagle(inst: object, resource: str) -> None:
    """Set TCP_NODELAY on a raw-socket session, as NI-VISA does by default.

    With Nagle on, a channel-select write followed by a query waits for the instrument's delayed
    ACK (~40 ms on Linux), which skews off-voltage polling; some LAN firmwares also choke on the
    coalesced segments. pyvisa-py 0.8 leaves Nagle on and its VI_ATTR_TCPIP_NODELAY setter raises
    UnknownAttribute, so fall back to the session's socket (pyvisa-py internals, guarded).
    """
    try:
        inst.set_visa_attribute(  # type: ignore[attr-defined]
            ResourceAttribute.tcpip_nodelay, constants.VI_TRUE
        )
        return
    except Exception:  # noqa: BLE001 - backend-specific: UnknownAttribute, VisaIOError, ...
        pass
    try:
        session = inst.visalib.sessions[inst.session]  # type: ignore[attr-defined]
        sock = session.interface
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return
    except Exception:  # noqa: BLE001 - another backend: leave its defaults alone
        pass
    log.debug("PSU %s: could not disable Nagle; commands may be delayed", resource)


def _setpoint(value: float, what: str) -> float:
    """A setpoint must be a finite, non-negative real number (bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} setpoint must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} setpoint must be finite and >= 0, got {value!r}")
    return value
