"""Delta debugging (Zeller and Hildebrandt, "Simplifying and Isolating Failure-Inducing Input",
IEEE TSE 2002) over the steps of a failing walk: the shortest sequence found that still fails the
same way on the same DUT.

Each candidate is replayed from a fresh start on the DUT itself, so the cost is in device time:
the search stops at its deadline with the shortest sequence found so far. Steps are relative to
the state they meet (bench/walk/steps.py), so a sequence with steps taken out still means
something; a re-entry of a step taken out does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.timeout import Timeout
from bench.walk.steps import Step


@dataclass
class Shrunk:
    steps: list[Step]
    replays: int  # candidates replayed on the DUT
    complete: bool  # False: the deadline stopped the search (the sequence may shrink further)


def shrink(steps: Sequence[Step], fails: Callable[[list[Step]], list[Step] | None], deadline: Timeout) -> Shrunk:
    """ddmin: remove chunks of halving size while the rest still fails, then single steps until
    none can go. `fails(candidate)` replays a candidate: the steps up to the one that failed the
    same way (a candidate may fail sooner than its end), or None."""
    current = list(steps)
    replays = 0
    n = 2
    while len(current) >= 2:
        if deadline.expired:
            return Shrunk(current, replays, False)
        chunk = max(1, len(current) // n)
        removed_any = False
        start = 0
        while start < len(current):
            if deadline.expired:
                return Shrunk(current, replays, False)
            candidate = current[:start] + current[start + chunk :]
            replays += 1
            failed = fails(candidate) if candidate else None
            if failed:
                current = failed
                removed_any = True
                n = max(n - 1, 2)
            else:
                start += chunk
        if not removed_any:
            if chunk == 1:
                break
            n = min(len(current), n * 2)
    return Shrunk(current, replays, True)
