"""Small waits the self-tests share: a free loopback port, whether a port is listening, and a
condition polled until it holds (on time.monotonic), failing with what was awaited."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(host: str, port: int) -> bool:
    """Something accepts connections on host:port now."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_until(condition: Callable[[], T], timeout: float, what: str, poll_s: float = 0.1) -> T:
    """The condition's first true value; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = condition()
        if got:
            return got
        time.sleep(poll_s)
    raise AssertionError(f"not within {timeout} s: {what}")
