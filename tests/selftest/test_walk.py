"""The random walk's parts that need no device: its step text (what a replay command carries)
and its shrinking (bench/walk/). The walk on a device is tests/selftest/test_walk_finds.py."""

from __future__ import annotations

import pytest

from bench.openpaygo.tokens import TokenKind
from bench.timeout import Timeout
from bench.walk.shrink import shrink
from bench.walk.steps import Step, StepSyntaxError, format_steps, parse_steps

EVERY_KIND = [
    Step(0, "token", TokenKind.ADD_TIME, 3, 2),
    Step(1, "token", TokenKind.SET_TIME, 995, -17),
    Step(2, "token", TokenKind.DISABLE_PAYG, None, 1),
    Step(3, "token", TokenKind.COUNTER_SYNC, None, -63),
    Step(4, "code", code="012345678"),
    Step(5, "reenter", ref=0),
    Step(6, "power"),
    Step(7, "advance", seconds=86400),
    Step(8, "wait"),
    Step(9, "token", TokenKind.ADD_TIME, 999999, 3, extended=True),
    Step(10, "token", TokenKind.COUNTER_SYNC, None, -2, extended=True),
]


def test_every_step_reads_back_as_written():
    text = format_steps(EVERY_KIND)
    assert text == "0:a3@+2 1:s995@-17 2:d@+1 3:y@-63 4:c012345678 5:r0 6:p 7:t86400 8:w 9:xa999999@+3 10:xy@-2"
    assert parse_steps(text) == EVERY_KIND
    assert all(s.describe() for s in EVERY_KIND)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("", "empty"),
        ("0:a3@2", "word 1 of the walk, '0:a3@2'"),  # the offset needs its sign
        ("0:p 1:x", "word 2 of the walk, '1:x'"),
        ("0:p 0:p", "step id 0 is used twice"),
        ("0:c12ab", "word 1"),
        ("p", "expected <id>:<step>"),
        ("0:xp", "only a token step can be extended"),
    ],
)
def test_a_replay_text_that_is_not_a_walk_is_refused_naming_the_word(text, names):
    with pytest.raises(StepSyntaxError) as e:
        parse_steps(text)
    assert names in str(e.value)


def steps(n: int) -> list[Step]:
    return [Step(i, "power") for i in range(n)]


def failing_when(*needed: int):
    """A predicate like a replay's: fails (returning the steps up to the failure) once every
    `needed` id has been seen, in any order; counts its calls."""

    def fails(candidate: list[Step]) -> list[Step] | None:
        fails.calls += 1
        seen: set[int] = set()
        for i, s in enumerate(candidate):
            seen.add(s.id)
            if set(needed) <= seen:
                return candidate[: i + 1]
        return None

    fails.calls = 0
    return fails


def test_shrinking_finds_the_steps_the_failure_needs():
    fails = failing_when(3, 17, 40)
    got = shrink(steps(60), fails, Timeout(60))
    assert [s.id for s in got.steps] == [3, 17, 40]
    assert got.complete and got.replays == fails.calls


def test_shrinking_keeps_a_failure_that_needs_everything():
    fails = failing_when(0, 1, 2, 3)
    got = shrink(steps(4), fails, Timeout(60))
    assert [s.id for s in got.steps] == [0, 1, 2, 3] and got.complete


def test_shrinking_stops_at_its_deadline_with_the_shortest_so_far():
    got = shrink(steps(60), failing_when(3, 17), Timeout(0))
    assert not got.complete and len(got.steps) == 60 and got.replays == 0


def test_every_walk_draws_every_move_the_dut_can_take():
    """From the walk's half on a move not drawn yet comes first: a seeded walk can no longer
    leave out a rare move (seen: a 300-step walk that never entered a token past the +64 window,
    so a DUT with no upper bound on its window passed it)."""
    from bench.walk.generate import WEIGHTS, Abilities, WalkGenerator

    abilities = Abilities(can_advance=True, code_length=9, restricted_digits=False, max_value=995, lock_wait_s=60)
    left_out_before_half = 0
    for seed in range(300):
        gen = WalkGenerator(seed, abilities, steps=300, power_cycles=0)
        for _ in range(100):  # about a third of a walk's steps are drawn moves, the rest re-entries
            left_out_before_half += gen.next_id == 150 and gen.drawn != set(WEIGHTS)
            gen._pick_move(dict(WEIGHTS))
            gen.next_id += 3
        assert gen.drawn == set(WEIGHTS), f"seed {seed}: never drew {sorted(set(WEIGHTS) - gen.drawn)}"
    assert left_out_before_half > 0  # the rule is what covers them, not luck
