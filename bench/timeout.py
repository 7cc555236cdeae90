"""A deadline on time.monotonic(), the one way the bench waits (labgrid's `Timeout` is the model):
how long is left, whether it has passed, and a sleep that ends at it. A wait is a deadline, never
a bare sleep standing in for synchronisation: where the bench waits for something to happen, it
polls until it happens or the deadline passes; where time itself is what is tested (a device held
unpowered, a lockout run out on the real clock), it sleeps until the deadline, re-checked after
every wake-up (a sleep may end early)."""

from __future__ import annotations

import time


class Timeout:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + max(0.0, float(seconds))

    @classmethod
    def until(cls, deadline: float) -> Timeout:
        """A Timeout ending at a time.monotonic() value."""
        t = cls(0.0)
        t.deadline = deadline
        return t

    @property
    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def sleep(self) -> None:
        """Sleep until the deadline."""
        while (left := self.deadline - time.monotonic()) > 0:
            time.sleep(left)


def sleep_until(deadline: float) -> None:
    """Sleep until time.monotonic() reaches deadline."""
    Timeout.until(deadline).sleep()


def sleep_for(seconds: float) -> None:
    """Sleep `seconds` on the monotonic clock (the off time of a power test, say)."""
    Timeout(seconds).sleep()
