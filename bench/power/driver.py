"""PSU driver: one channel of a programmable supply, reached through pyvisa.

All model differences come from a `PsuProfile`. Every reply is parsed here, at the edge, and
every failure (no answer, lost connection, unparseable reply) becomes an `InstrumentError` that
names the resource, the command and the reply, so a failed bench run says what went wrong.

A connection the PSU closed (a LAN instrument rebooting, a switch port flapping) is reopened
once and the command retried once: one dropped socket must not end a night's run, and a PSU
that stays unreachable still fails at once, naming both attempts. Writes have no reply, so the
ones sent since the PSU last answered a query may have gone down with the connection: they are
sent again on the new one first (setpoints and output switching are idempotent).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import pyvisa
import pyvisa.errors

from bench.power.errors import InstrumentError
from bench.power.profiles import PsuProfile, get_profile
from bench.power.transport import connection_lost, disable_nagle, drain, peer_closed

log = logging.getLogger("bench.power")

TrafficCallback = Callable[[str, str], None]
"""Called with ("TX" | "RX", text) for every command sent and reply received, and ("--", text)
for a note (a lost connection reopened)."""

SLOW_ANSWER_FRACTION = 0.5  # an answer slower than this part of the timeout is said at the end of the run
TRAFFIC_LOG_MAX = 10_000
UNCONFIRMED_MAX = 64  # writes kept for re-sending after a reconnect (a query answered confirms them all)
_REPLY_STRIP = " \t\r\n\x00"  # CR from CRLF instruments, NUL padding from some USB serial links
_TRANSPORT_ERRORS = (pyvisa.errors.Error, OSError, EOFError)
T = TypeVar("T")


class Instrument(Protocol):
    """What the driver needs from a VISA resource (a replay fake satisfies it too)."""

    def write(self, message: str) -> object: ...

    def query(self, message: str) -> str: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class PsuReading:
    """What the supply's output is doing, read at one moment."""

    output_on: bool
    volts: float
    amps: float


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
        reopen: Callable[[], Instrument] | None = None,
    ) -> None:
        _check_channel(channel)
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.channel = channel
        self.resource = resource or getattr(instrument, "resource_name", None) or repr(instrument)
        self.timeout_s = timeout_s
        self.on_traffic = on_traffic
        self.traffic: deque[tuple[float, str, str]] = deque(maxlen=TRAFFIC_LOG_MAX)
        self._inst = instrument
        self._reopen = reopen  # opens the resource again after a lost connection (None: never)
        self.reconnects = 0
        self.slowest_query: tuple[float, str] = (0.0, "")  # (seconds, command): the longest answer so far
        self._unconfirmed: deque[str] = deque(maxlen=UNCONFIRMED_MAX)  # writes since the last answered query
        self._next_cmd_at = 0.0
        self._closed = False
        self._unsettled = False  # an exchange was cut short: its reply may still arrive
        # one exchange at a time on the wire: the live page's reading (try_reading) comes from
        # another thread than the tests' commands
        self._lock = threading.RLock()

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
        except Exception as exc:  # noqa: BLE001 - backends raise plain Exception
            raise InstrumentError(f"could not open PSU at {resource} ({prof.name} profile): {exc}") from exc

        def opener() -> Instrument:
            inst: Instrument = rm.open_resource(  # type: ignore[assignment]  # a message-based resource
                resource,
                read_termination=prof.read_termination,
                write_termination=prof.write_termination,
                timeout=round(timeout_s * 1000),
            )
            if resource.upper().endswith("::SOCKET"):
                disable_nagle(inst, resource)
            return inst

        try:
            inst = opener()
        except Exception as exc:  # noqa: BLE001 - backends raise plain Exception (pyvisa-py DNS)
            raise InstrumentError(f"could not open PSU at {resource} ({prof.name} profile): {exc}") from exc
        log.info("opened PSU %s, profile %s, channel %d", resource, prof.name, channel)
        return cls(inst, prof, channel, resource=resource, timeout_s=timeout_s, on_traffic=on_traffic, reopen=opener)

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

    def try_reading(self) -> PsuReading | None:
        """Output state, voltage and current, read now for an operator's display; None while
        another thread has an exchange under way. Each of the three queries is taken only when the
        wire is free, so a test's command waits behind at most one display query."""
        values = []
        for read in (self.output_state, self.measure_voltage, self.measure_current):
            if not self._lock.acquire(blocking=False):
                return None
            try:
                values.append(read())
            finally:
                self._lock.release()
        on, volts, amps = values
        return PsuReading(bool(on), float(volts), float(amps))

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

    @property
    def can_skip_off_time(self) -> bool:
        """Whether the PSU can let time pass at once for the unpowered DUT (the simulated one)."""
        return self.profile.off_time_skip is not None and self.profile.off_time_skip_query is not None

    def skip_off_time(self, seconds: float) -> float:
        """While the output is off, let `seconds` pass at once for the DUT; the seconds skipped
        since the switch-off, read back (less than asked: the DUT was not unpowered)."""
        template, query = self.profile.off_time_skip, self.profile.off_time_skip_query
        if template is None or query is None:
            raise InstrumentError(f"PSU at {self.resource} ({self.profile.name} profile) cannot skip off time")
        self._send_for_channel(template, seconds)
        return self._query_number(query)

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

    def slow_answer(self, fraction: float = SLOW_ANSWER_FRACTION) -> str | None:
        """A line for people if the PSU's slowest answer took more than `fraction` of its timeout:
        every test that talks to it then runs that much longer, within its timeout and so without
        an error; the bench says so rather than let a run stretch silently."""
        took, cmd = self.slowest_query
        if self.timeout_s is None or took <= fraction * self.timeout_s:
            return None
        return (
            f"the PSU at {self.resource} answered '{cmd}' in {took:.2f} s, {took / self.timeout_s:.0%} of its "
            f"{self.timeout_s:g} s timeout (psu.timeout_s): tests that talk to it run that much slower"
        )

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
        def failed(exc: BaseException) -> InstrumentError:
            return InstrumentError(f"PSU at {self.resource} did not accept '{cmd}': {exc}")

        self._exchange(cmd, lambda inst: inst.write(cmd), failed)
        self._unconfirmed.append(cmd)

    def _query(self, cmd: str) -> str:
        def failed(exc: BaseException) -> InstrumentError:
            within = f" within {self.timeout_s} s" if self.timeout_s is not None else ""
            return InstrumentError(f"PSU at {self.resource} did not answer '{cmd}'{within}: {exc}")

        started = time.monotonic()
        raw = self._exchange(cmd, lambda inst: inst.query(cmd), failed)
        self.slowest_query = max(self.slowest_query, (time.monotonic() - started, cmd))
        self._unconfirmed.clear()  # instruments work in order: every earlier write was taken
        if not isinstance(raw, str):
            raise self._bad_reply(cmd, repr(raw), "reply is not text")
        reply = raw.strip(_REPLY_STRIP)
        self._record("RX", reply)
        return reply

    def _exchange(
        self, cmd: str, op: Callable[[Instrument], T], failed: Callable[[BaseException], InstrumentError]
    ) -> T:
        """Send one command (op) paced; a connection found lost is reopened once and the command
        retried once. Failures are InstrumentErrors naming the resource and the command."""
        with self._lock:
            return self._exchange_locked(cmd, op, failed)

    def _exchange_locked(
        self, cmd: str, op: Callable[[Instrument], T], failed: Callable[[BaseException], InstrumentError]
    ) -> T:
        self._pace()
        try:
            lost = self._settle()
            if lost is None:
                self._record("TX", cmd)
                try:
                    return self._attempt(op)
                except _TRANSPORT_ERRORS as exc:
                    lost = connection_lost(self._inst, exc) if self._reopen is not None else None
                    if lost is None:
                        raise failed(exc) from exc
            self._reconnect(cmd, lost)
            self._record("TX", cmd)
            try:
                return self._attempt(op)
            except _TRANSPORT_ERRORS as exc:
                raise InstrumentError(
                    f"PSU at {self.resource}: {lost} at '{cmd}'; reconnected once, and '{cmd}' failed again: {exc}"
                ) from exc
        finally:
            self._next_cmd_at = time.monotonic() + self.profile.interval_after(cmd)

    def _attempt(self, op: Callable[[Instrument], T]) -> T:
        self._unsettled = True  # stays set if the exchange is cut short (a timeout, a signal)
        result = op(self._inst)
        self._unsettled = False
        return result

    def _settle(self) -> str | None:
        """Before a command: read off the reply of one cut short, and say if the PSU closed the
        connection meanwhile (then the command goes out on a new one)."""
        if self._unsettled:
            drain(self._inst)
            self._unsettled = False
        return peer_closed(self._inst) if self._reopen is not None else None

    def _reconnect(self, cmd: str, why: str) -> None:
        """Reopen the resource once, select the channel again and re-send the writes the PSU may
        not have taken before the connection went."""
        assert self._reopen is not None  # only called when the driver can reopen
        log.warning("PSU %s: %s at '%s': reconnecting once", self.resource, why, cmd)
        self._record("--", f"PSU connection: {why} at '{cmd}': reconnecting once")
        try:
            self._inst.close()
        except _TRANSPORT_ERRORS:
            pass
        try:
            self._inst = self._reopen()
            self.reconnects += 1
            resend = list(self._unconfirmed)
            if self.profile.select_channel is not None:
                select = self.profile.command(self.profile.select_channel, self.channel)
                if resend[:1] != [select]:
                    resend.insert(0, select)
            for write in resend:
                self._record("TX", write)
                self._inst.write(write)
                time.sleep(self.profile.interval_after(write))  # a slow parser's pacing, as for any write
        except Exception as exc:  # noqa: BLE001 - backends raise plain Exception when they cannot connect
            raise InstrumentError(f"PSU at {self.resource}: {why} at '{cmd}', and reconnecting failed: {exc}") from exc

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


def _setpoint(value: float, what: str) -> float:
    """A setpoint must be a finite, non-negative real number (bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} setpoint must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} setpoint must be finite and >= 0, got {value!r}")
    return value
