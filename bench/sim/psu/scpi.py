"""The SCPI vocabulary of the simulated PSU: the error an instrument queues for a command it
rejects, the standard error codes, and header matching in short or long form with optional
nodes (`[SOURce:]VOLTage[:LEVel]`)."""

from __future__ import annotations

import re


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


def header_pattern(spec: str) -> list[tuple[str, str, bool]]:
    """'[SOURce:]VOLTage[:LEVel]' -> [(short, long, optional), ...] (short = the capitals)."""
    nodes = []
    for m in re.finditer(r"(\[)?:?([A-Za-z*]+)\]?", spec):
        word = m.group(2)
        short = "".join(ch for ch in word if ch.isupper() or ch == "*") or word
        nodes.append((short.upper(), word.upper(), m.group(1) is not None))
    return nodes


def header_matches(nodes: list[str], pattern: list[tuple[str, str, bool]]) -> bool:
    """SCPI header match: each node in its short or long form; optional nodes may be left out."""
    if not pattern:
        return not nodes
    short, long_, optional = pattern[0]
    if nodes and nodes[0] in (short, long_) and header_matches(nodes[1:], pattern[1:]):
        return True
    return optional and header_matches(nodes, pattern[1:])


CHANNEL_LIST = re.compile(r"\(\s*@([^)]*)\)")
