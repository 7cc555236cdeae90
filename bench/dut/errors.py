"""What can go wrong talking to a DUT, each naming the port and what was last seen.

Lines from the device reach these messages through bench.secret.shown(): one printable line each,
cut with its length noted, so a device that sends a megabyte or escape sequences cannot flood or
garble a terminal, junit.xml or the report. Callers mask secrets first.
"""

from __future__ import annotations

from bench.secret import shown


class DutError(Exception):
    """Base class: a failure attributable to the DUT or its link."""


class RigBroken(DutError):
    """The rig itself is unusable (port gone, instrument dead): later tests are skipped, not failed."""


class PortVanished(RigBroken):
    def __init__(self, port: str, action: str, cause: BaseException | str, last_lines: list[str]) -> None:
        self.port = port
        self.last_lines = list(last_lines)
        super().__init__(f"serial port {port} vanished while {action}: {cause}" + _tail(last_lines))


class PortOpenError(RigBroken):
    def __init__(self, port: str, cause: BaseException | str) -> None:
        self.port = port
        super().__init__(f"cannot open serial port {port}: {cause}")


class LinkSilent(DutError):
    """No reply (or no boot banner) before the deadline. unterminated: bytes that came after the
    last newline, pending: the first of them (a link at the wrong baud rate sends bytes but never
    a line; a reply cut off by a reset leaves its start); too_long: lines dropped meanwhile for
    being over the link's line limit (the reply may have been one)."""

    def __init__(
        self,
        port: str,
        waiting_for: str,
        timeout_s: float,
        last_lines: list[str],
        unterminated: int = 0,
        pending: str = "",
        too_long: int = 0,
    ) -> None:
        self.port = port
        self.waiting_for = waiting_for
        self.timeout_s = timeout_s
        self.last_lines = list(last_lines)
        self.unterminated = unterminated
        self.pending = pending
        reasons = []
        if too_long:
            reasons.append(f"{too_long} line(s) over the link's line limit came and were dropped")
        if unterminated:
            reasons.append(
                f"{unterminated} bytes came without a newline, starting '{shown(pending, 32)}' (a reply cut "
                "off, a wrong baud rate, or not a line protocol?)"
            )
        if reasons:
            why = "; ".join(reasons) + _tail(last_lines, "; no complete line received")
        else:
            why = "the device is silent (unpowered, hung, wrong port or wrong baud rate?)" + _tail(last_lines)
        super().__init__(f"no {waiting_for} from the DUT on {port} within {timeout_s:.1f} s: {why}")


class WaitAborted(LinkSilent):
    """A wait for the DUT given up early because the bench knows no answer can come (the supply
    was cut): the same as silence, said at once instead of at the deadline."""

    def __init__(self, port: str, waiting_for: str, why: str, last_lines: list[str]) -> None:
        self.why = why
        LinkSilent.__init__(self, port, waiting_for, 0.0, last_lines)
        self.args = (f"stopped waiting for the {waiting_for} from the DUT on {port}: {why}" + _tail(last_lines),)

    def __str__(self) -> str:
        return self.args[0]


class ProtocolError(DutError):
    """The DUT answered, but not in a form the adapter understands."""

    def __init__(self, port: str, request: str, line: str, problem: str) -> None:
        self.port = port
        self.request = request
        self.line = line
        super().__init__(f"{port}: reply to '{shown(request)}' {problem}: '{shown(line)}'")


class DeviceRefused(DutError):
    """The DUT answered ERR <code> <reason>."""

    def __init__(self, port: str, request: str, code: int, reason: str) -> None:
        self.port = port
        self.request = request
        self.code = code
        self.reason = reason
        super().__init__(f"{port}: the DUT refused '{shown(request)}': ERR {code} {shown(reason)}")


class TestTimeLimit(BaseException):  # noqa: N818 (not an Exception: no `except Exception` may swallow it)
    """The test ran past its time limit (bench/station/time_limit.py): raised from the link's
    current wait, or by the watchdog, so a test that would run on for an hour fails now, naming
    its limit and how it was derived."""

    __test__ = False  # not a pytest test class, whatever its name


def _tail(lines: list[str], empty: str = "; nothing received yet") -> str:
    if not lines:
        return empty
    return "; last lines seen: " + " | ".join(shown(line) for line in lines[-5:])
