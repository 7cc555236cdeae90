"""The random walk finds what no scenario aimed at, shrinks it, and its replay command reproduces it
(tests/device/test_random_walk.py; docs/tests.md "The random walk").

The planted defect, `sync_keeps_stale_mask`, shows only after a particular sequence (an ADD that
leaves unused counts, a counter sync that lowers the count into them, an older ADD there): with
seed 4 the walk meets it after 152 steps (a seed, not a promise: a change to the walk's choices
moves where a seed leads, and this test then asks for a seed that finds it again). The failure
must come back shrunk to at most 10 steps, in record.json and the report, with one command that
replays it; that command fails the same way alone, and the same steps pass on the good device."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from tests.selftest import background
from tests.selftest.device_suite import run_device_suite
from tests.selftest.test_record import assert_valid

NODE = "tests/device/test_random_walk.py::test_random_walk"
FAULT = "sync_keeps_stale_mask"
SEED = "4"


def counterexample(out: Path) -> dict:
    record = json.loads((out / "run" / "record.json").read_text(encoding="utf-8"))
    assert_valid(record)  # schema 2.2: the counterexample's fields and types
    (test,) = [t for t in record["tests"] if t["nodeid"] == NODE]
    return test


@background.scenario
def walk_and_replay(tmp: Path) -> dict:
    seen = {"walk": run_device_suite(tmp / "walk", faults=[FAULT], args=("--walk-seed", SEED), paths=(NODE,))}
    found = counterexample(tmp / "walk")["counterexample"]
    if found:
        _, node, *args = shlex.split(found["replay"])
        seen["replay"] = run_device_suite(tmp / "replay", args=args, paths=(node,))
        seen["good"] = run_device_suite(tmp / "good", args=args[args.index("--walk-replay") :], paths=(node,))
    return {"tmp": tmp, **seen}


def test_walk_finds_a_defect_after_many_steps_and_shrinks_it(request):
    seen = background.result(request, walk_and_replay)
    results, output = seen["walk"]
    assert results[NODE].outcome == "failed", output
    test = counterexample(seen["tmp"] / "walk")
    found = test["counterexample"]
    assert found is not None, test
    assert found["seed"] == int(SEED) and found["walk_steps"] >= 20, found
    assert found["reproduced"] and 1 <= len(found["steps"]) <= 10, found
    last = found["steps"][-1]
    assert last["problems"] and last["model"] == "already_used" and last["dut"] == "accepted", last
    assert not any(s["problems"] for s in found["steps"][:-1])
    assert f"--sim-fault {FAULT}" in found["replay"] and "--walk-replay" in found["replay"]
    # the failure message carries the replay command; the report's table is attached
    assert found["replay"] in results[NODE].message + output
    titles = {a["title"]: a["path"] for a in test["attachments"]}
    table = next(p for t, p in titles.items() if t.startswith("random walk counterexample:"))
    html = (seen["tmp"] / "walk" / "run" / table).read_text(encoding="utf-8")
    assert all(s["step"] in html for s in found["steps"]) and "replay:" in html


def test_the_replay_command_reproduces_it_and_the_good_device_passes_it(request):
    seen = background.result(request, walk_and_replay)
    assert "replay" in seen, seen["walk"][1]
    results, output = seen["replay"]
    assert results[NODE].outcome == "failed", output
    again = counterexample(seen["tmp"] / "replay")["counterexample"]
    first = counterexample(seen["tmp"] / "walk")["counterexample"]
    assert again["seed"] is None and again["signature"] == first["signature"], (again, first)
    assert [s["step"] for s in again["steps"]] == [s["step"] for s in first["steps"]]
    assert re.search(r"replayed walk, step \d+: ADD_TIME", results[NODE].message), results[NODE].message
    good, output = seen["good"]
    assert good[NODE].outcome == "passed", output
