"""The random walk and what it found: walk until the budget or the first difference, then replay
shorter versions from a fresh start until the shortest that fails the same way is found.

`start()` gives a WalkExecutor on the DUT in a known state (a factory reset and provisioning, or
the ledger's state re-based), so a failure is reproduced from the same kind of beginning the walk
had; the replay command a person gets runs exactly the shrunk steps from there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.timeout import Timeout
from bench.walk.execute import StepResult, WalkExecutor
from bench.walk.generate import WalkGenerator
from bench.walk.shrink import shrink
from bench.walk.steps import Step


class ReplayUnavailable(Exception):
    """The DUT cannot be brought back to a known state for a replay (re-basing it failed, say):
    the walk is reported as it failed, unshrunk."""


@dataclass
class Counterexample:
    """A failing walk, shrunk: what record.json and the report keep of it."""

    seed: int | None  # None: it came from a replay text
    walk_steps: int  # steps the walk had taken when it failed
    steps: list[Step]  # the shortest failing sequence found
    results: list[StepResult]  # its replay, step by step
    signature: str
    reproduced: bool  # it failed again from a fresh start (else `steps` is the walk as it failed)
    replays: int  # sequences replayed while shrinking
    complete: bool  # the shrinking ended by itself, not at its deadline
    note: str = ""  # why it was not shrunk (or not further), when something stopped it

    def account(self) -> str:
        """How `steps` came to be, in words."""
        if self.seed is None:
            return f"the {len(self.steps)} steps given, replayed"
        if not self.reproduced:
            return f"the walk as it failed after {self.walk_steps} steps, not shrunk: {self.note}"
        text = f"shrunk from {self.walk_steps} steps to {len(self.steps)} in {self.replays} replays"
        if not self.complete:
            text += f" ({self.note or 'dut.walk_shrink_s ran out'}: it may shrink further)"
        return text

    @property
    def problem(self) -> str:
        return "; ".join(self.results[-1].problems)

    def as_dict(self, replay: str) -> dict:
        return {
            "seed": self.seed,
            "walk_steps": self.walk_steps,
            "steps": [
                {
                    "step": r.step.text(),
                    "does": r.step.describe(),
                    "code": r.code,
                    "model": r.predicted,
                    "dut": r.got,
                    "problems": list(r.problems),
                    "skipped": r.skipped,
                }
                for r in self.results
            ],
            "signature": self.signature,
            "reproduced": self.reproduced,
            "replays": self.replays,
            "shrinking_complete": self.complete,
            "note": self.note or None,
            "replay": replay,
        }


def walk(
    ex: WalkExecutor, gen: WalkGenerator, steps: int, progress: Callable[[str], None] | None = None
) -> list[StepResult]:
    """Up to `steps` steps (re-entries after an accepted token included), stopping at the first
    that differs from the model."""
    results: list[StepResult] = []
    while len(results) < steps:
        if progress is not None and len(results) % 10 == 0:
            progress(f"random walk step {len(results)} of {steps}")
        batch = [gen.next(ex)]
        first = True
        while batch and len(results) < steps:
            step = batch.pop(0)
            if not first and (ex.lock_left() > 0 or not gen.allowed(ex, step)):
                continue  # a follow-up the state now rules out (locked, or a lock too long to wait)
            first = False
            r = ex.run(step)
            results.append(r)
            if r.failed:
                return results
            if r.code is not None:
                gen.entered_code(step)
                if r.predicted == "accepted" and step.op != "reenter":
                    batch += gen.reentries()
    return results


def replay(ex: WalkExecutor, steps: list[Step]) -> list[StepResult]:
    """Exactly these steps, stopping at the first difference."""
    results = []
    for step in steps:
        r = ex.run(step)
        results.append(r)
        if r.failed:
            break
    return results


def minimise(
    seed: int | None, walked: list[StepResult], start: Callable[[], WalkExecutor], deadline: Timeout
) -> Counterexample:
    """The failing walk `walked` (its last step failed), shrunk within the deadline."""
    failing = walked[-1]
    signature = failing.signature()
    original = [r.step for r in walked]
    best: list[list[StepResult]] = []

    stopped: list[str] = []

    def fails(candidate: list[Step]) -> list[Step] | None:
        if stopped:
            return None
        try:
            results = replay(start(), candidate)
        except ReplayUnavailable as e:
            stopped.append(f"shrinking stopped: {e}")
            return None
        if results and results[-1].failed and results[-1].signature() == signature:
            best.append(results)
            return [r.step for r in results]
        return None

    if deadline.expired:
        return Counterexample(seed, len(walked), original, walked, signature, False, 0, False, "no time to shrink")
    if fails(original) is None:
        note = stopped[0] if stopped else "the walk did not fail the same way again from a fresh start"
        return Counterexample(seed, len(walked), original, walked, signature, False, 1, False, note)
    shrunk = shrink([r.step for r in best[-1]], fails, deadline)
    results = best[-1]  # the last candidate that failed is the one shrink kept
    return Counterexample(
        seed,
        len(walked),
        shrunk.steps,
        results,
        signature,
        True,
        shrunk.replays + 1,
        shrunk.complete and not stopped,
        stopped[0] if stopped else "",
    )
