"""The random walk (docs/tests.md "The random walk"): what nobody wrote a scenario for.

The scenario tests check what their authors thought of. A defect in used-token bookkeeping that
shows only after a long sequence, a value that breaks past a width boundary when a walk happens
to carry it there, a state lost in a power cycle at an unlucky moment: a seeded random sequence of
everything a customer, a server and a supply can do to a device finds them, each step checked
against the bench's model (bench/openpaygo/model.py). A difference is shrunk to the shortest
sequence that still fails the same way on the DUT, kept in record.json and the report, and
printed as one command that replays it.
"""

from __future__ import annotations

import pytest

from bench.fixtures.walk import keep_counterexample
from bench.timeout import Timeout
from bench.walk.steps import format_steps
from bench.walk.walk import Counterexample, minimise, replay, walk


@pytest.mark.catches(
    "reused_token_accepted",
    "count_not_persisted",
    "provisioning_not_persisted",
    "backfeed_from_uart",
    "set_as_add",
    "unbounded_jump",
)
@pytest.mark.explores
@pytest.mark.needs("token", "status")
@pytest.mark.time_limit(exchanges="walk_steps", cycles="walk_power_cycles", wait="walk_shrink_s")
def test_random_walk(request, walk_starts, walk_plan, measure, progress):
    """A seeded walk of `dut.walk_steps` steps (10x in the soak suite): ADD and SET of random values
    at the next counts, jumps inside and past the +64 window, older ADDs inside and past the -16
    window, DISABLE_PAYG, counter syncs inside and outside their window, wrong codes, re-entries of
    earlier codes (after every accepted token, a sample drawn from all codes entered before), power
    cycles (`dut.walk_power_cycles` of them, at random points) and clock jumps where the DUT's clock can be set. After
    every step the reply and the whole status must be the model's. A difference is replayed shorter
    from a fresh start until the shortest sequence that fails the same way is found (within
    `dut.walk_shrink_s`): record.json's `counterexample`, a table beside the log, and the replay
    command in the failure. Works from the device ledger on a DUT without factory reset.
    Measurements: walk_seed, walk_steps, walk_entries, walk_accepted, walk_power_cycles,
    walk_clock_jumps, walk_count_rise (on a DUT without factory reset the walk jumps at most 8
    counts up, so it uses few of the 65535)."""
    plan = walk_plan
    ex = walk_starts()
    first_count = ex.model.last_count
    if plan.replay is not None:
        results = replay(ex, plan.replay)
    else:
        measure("walk_seed", plan.seed)
        gen = walk_starts.generator(plan.seed, plan.steps, plan.power_cycles)
        results = walk(ex, gen, plan.steps, progress)
    entered = [r for r in results if r.code is not None]
    measure("walk_steps", len(results), low=plan.steps if not results[-1].failed else None)
    measure("walk_entries", len(entered))
    measure("walk_accepted", sum(r.got == "accepted" for r in entered))
    measure("walk_power_cycles", sum(r.step.op == "power" for r in results))
    measure("walk_clock_jumps", sum(r.step.op == "advance" for r in results))
    measure("walk_count_rise", ex.model.last_count - first_count)  # counts used (for good, without a reset)
    if not results[-1].failed:
        return
    if plan.replay is not None:
        found = Counterexample(
            None, len(results), [r.step for r in results], results, results[-1].signature(), True, 0, True, "a replay"
        )
    else:
        progress(f"random walk failed at step {len(results)}: shrinking", force=True)
        found = minimise(plan.seed, results, walk_starts, Timeout(plan.shrink_s))
    command = keep_counterexample(request, found)
    failed = found.results[-1]
    walked = "replayed walk" if found.seed is None else f"random walk (seed {found.seed})"
    pytest.fail(
        f"{walked}, step {found.walk_steps}: {failed.step.describe()}: "
        f"{found.problem}\n{found.account()}: {format_steps(found.steps)}\nreplay: {command}",
        pytrace=False,
    )
