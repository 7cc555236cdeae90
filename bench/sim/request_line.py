"""One request line to the simulated firmware and its answer: the line limits, the `key=value`
arguments of the reference protocol, the reply the board sends (`Reply`) and the error the
command handlers raise (`CommandError`, answered `ERR <code> <reason>`)."""

from __future__ import annotations

from dataclasses import dataclass

MAX_LINE = 1024
MAX_IMPORT_LINE = 8192


@dataclass(frozen=True)
class Reply:
    """What the firmware sends for one request, and how (the board carries it out)."""

    line: str  # the reply ("" = none)
    reboot: bool = False  # the firmware restarts after sending this reply
    before: tuple[str, ...] = ()  # lines sent first (debug output interleaved with the reply)
    delay_s: float = 0.0  # the firmware is busy (blocking LED blinks, slow decode) before replying
    newline: bool = True  # False: the reply goes out without its terminating newline


class CommandError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def parse_kv(args: list[str]) -> dict[str, str]:
    kv: dict[str, str] = {}
    for position, arg in enumerate(args, start=1):
        if not arg:
            continue
        key, sep, value = arg.partition("=")
        if not sep or not key:
            # the word is not echoed: it may be the secret key sent without its name
            raise CommandError(400, f"argument {position} is not key=value")
        if not value:  # docs/protocol.md "Framing": a value is never empty ("-" where none is allowed)
            raise CommandError(400, f"{key[:32]}= has no value")
        kv[key] = value
    return kv


def int_arg(kv: dict[str, str], key: str, low: int, high: int, default: int | None = None) -> int:
    if key not in kv:
        if default is None:
            raise CommandError(400, f"missing {key}=")
        return default
    raw = kv[key]
    if not raw.isdigit() or not raw.isascii():
        raise CommandError(400, f"{key}= must be a whole number")
    value = int(raw)
    if not low <= value <= high:
        raise CommandError(400, f"{key}= out of range {low}..{high}")
    return value
