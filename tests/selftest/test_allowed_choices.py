"""The bench never fails a correct device where the token rules leave a choice (docs/tokens.md
"Where a device may choose"): the simulator built to make the other choice passes the affected
device tests with a profile that declares it, fails them with one that does not (the choice is
real), and still fails them with the defects they catch."""

from __future__ import annotations

from pathlib import Path

import pytest
from openpaygo.token_shared import OpenPAYGOTokenShared

from bench.openpaygo.model import DeviceModel
from bench.openpaygo.tokens import KEYPAD_DIGITS, TokenGenerator, keypad_aliases, outside_digit_probe
from bench.rig import RigError, load_rig
from bench.rig.model import VIRTUAL_DUT_KEY, VIRTUAL_DUT_STARTING_CODE
from tests.selftest import background
from tests.selftest.device_suite import run_device_suite

WINDOWS = "tests/device/test_token_windows.py::"
SYNC_TEST = WINDOWS + "test_counter_sync_window_edges"
EXTENDED_TEST = WINDOWS + "test_extended_tokens"
WALK_TEST = "tests/device/test_random_walk.py::test_random_walk"
RESTRICTED_TEST = WINDOWS + "test_restricted_digit_tokens"
INVALID_TEST = "tests/device/test_tokens.py::test_invalid_tokens_refused"
SELECTED = "counter_sync_window_edges or extended_tokens or restricted_digit_tokens or invalid_tokens_refused"
# Simulated builds making the other choices: a sync below the count keeps the higher one
# (reference C) and extended 996-999 are time values (openpaygo 0.6.3); only extended tokens
# (not with time values: such a device has no sync to re-base it with, the rig refuses it).
OTHER_BUILD = "[sim]\nsync_keeps_higher_count = true\nextended_as_time = true\n"
DECLARED = '[dut]\nextended_tokens = true\nextended_998_999 = "time"\nsync_lowers_count = false\n'
EXTENDED_ONLY = "[dut]\nextended_tokens = true\nextended_only = true\n[sim]\nextended_only = true\n"


def _rig(tmp_path, name: str, text: str):
    path = tmp_path / f"{name}.toml"
    path.write_text(f'[station]\nid = "{name}"\n\n{text}')
    return path


def test_restricted_probe_is_another_token():
    """The probe of test_restricted_digit_tokens has a digit outside 1-4 that no 2-bit reading
    turns back into the original: whichever way a decoder reads it, it is another token than the
    used one (openpaygo's own reading made "5..." out of "1..." the same token)."""
    gen = TokenGenerator(VIRTUAL_DUT_KEY, VIRTUAL_DUT_STARTING_CODE, 1, restricted_digits=True)
    tokens = [gen.add_days(days) for days in range(1, 40)]
    assert {t.code[0] for t in tokens} == set(KEYPAD_DIGITS), "the sample should start with every keypad digit"
    for token in tokens:
        code = token.code
        probe = outside_digit_probe(code)
        assert probe[0] not in KEYPAD_DIGITS and probe[1:] == code[1:]
        original = OpenPAYGOTokenShared.convert_from_4_digit_token(int(code))
        for alias in keypad_aliases(probe[0]):
            assert OpenPAYGOTokenShared.convert_from_4_digit_token(int(alias + code[1:])) != original, (code, alias)
        model = DeviceModel(VIRTUAL_DUT_KEY, VIRTUAL_DUT_STARTING_CODE, token.count - 1, restricted_digits=True)
        assert model.enter(code, 0).outcome == "accepted"
        assert model.enter(probe, 0).outcome == "invalid"


def test_extended_only_needs_extended_tokens_and_a_sync(tmp_path):
    with pytest.raises(RigError, match="dut.extended_only"):
        load_rig(_rig(tmp_path, "x", "[dut]\nextended_only = true\n"))
    with pytest.raises(RigError, match="dut.extended_998_999"):
        load_rig(
            _rig(tmp_path, "y", '[dut]\nextended_tokens = true\nextended_only = true\nextended_998_999 = "time"\n')
        )


@background.scenario
def choice_runs(tmp: Path) -> dict:
    """The four suite runs, on the session's pool beside the other self-tests."""
    declared = _rig(tmp, "declared", DECLARED + OTHER_BUILD)
    walking = f"{SELECTED} or random_walk"  # the walk, too, must follow the profile's choices
    only = _rig(tmp, "extended-only", EXTENDED_ONLY)
    undeclared = _rig(tmp, "undeclared", "[dut]\nextended_tokens = true\n" + OTHER_BUILD)
    return {
        "declared": run_device_suite(tmp / "declared", args=["--rig", str(declared), "-k", walking]),
        "only": run_device_suite(tmp / "only", args=["--rig", str(only), "-k", walking]),
        "undeclared": run_device_suite(
            tmp / "undeclared", args=["--rig", str(undeclared), "-k", "counter_sync_window_edges or extended_tokens"]
        ),
        "faults": run_device_suite(
            tmp / "faults", faults=("unbounded_jump", "set_as_add"), args=["--rig", str(declared), "-k", SELECTED]
        ),
    }


def test_other_choices_pass_and_defects_still_fail(request):
    """Declared, the other choices pass; undeclared they fail, naming the choice; with the
    defects the tests catch they still fail."""
    seen = background.result(request, choice_runs)
    chosen = (SYNC_TEST, EXTENDED_TEST, RESTRICTED_TEST, INVALID_TEST, WALK_TEST)
    for run in ("declared", "only"):
        results, output = seen[run]
        assert {t: results[t].outcome for t in chosen} == dict.fromkeys(chosen, "passed"), output

    results, output = seen["undeclared"]
    assert results[SYNC_TEST].outcome == "failed", output
    assert "keeps its higher count" in results[SYNC_TEST].message, results[SYNC_TEST].message
    assert results[EXTENDED_TEST].outcome == "failed", output
    assert "'type': 'SET_TIME', 'value': 998" in results[EXTENDED_TEST].message, results[EXTENDED_TEST].message

    results, output = seen["faults"]
    for test in (SYNC_TEST, EXTENDED_TEST, RESTRICTED_TEST):
        assert results[test].outcome == "failed", f"{test} passed on unbounded_jump + set_as_add:\n{output}"
