"""What can go wrong talking to a DUT, each naming the port and what was last seen."""

from __future__ import annotations


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
    """No reply (or no boot banner) before the deadline."""

    def __init__(self, port: str, waiting_for: str, timeout_s: float, last_lines: list[str]) -> None:
        self.port = port
        self.waiting_for = waiting_for
        self.timeout_s = timeout_s
        self.last_lines = list(last_lines)
        super().__init__(
            f"no {waiting_for} from the DUT on {port} within {timeout_s:.1f} s: the device is silent "
            f"(unpowered, hung, wrong port or wrong baud rate?)" + _tail(last_lines)
        )


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
        super().__init__(f"{port}: reply to '{request}' {problem}: {line!r}")


class DeviceRefused(DutError):
    """The DUT answered ERR <code> <reason>."""

    def __init__(self, port: str, request: str, code: int, reason: str) -> None:
        self.port = port
        self.request = request
        self.code = code
        self.reason = reason
        super().__init__(f"{port}: the DUT refused '{request}': ERR {code} {reason}")


def _tail(lines: list[str]) -> str:
    if not lines:
        return "; nothing received yet"
    return "; last lines seen: " + " | ".join(lines[-5:])
