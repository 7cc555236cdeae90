"""The simulator's firmware decoder (bench.sim.token_decoder): the scenario table against the
bench's model, each fault flag against its scenario, and a differential property test between
the two independent implementations (bit mask vs set)."""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.openpaygo.model import NO_LOCKOUT, DeviceModel
from bench.openpaygo.tokens import TokenGenerator, TokenKind, full_test_procedure
from bench.sim.token_decoder import FAULTS, DecodeResult, TokenState, apply_time, decode

KEY = "bc41ec9530f6dac86b1a29ab82edc5fb"
SC = 516959010
KEY_Q = "a29ab82edc5fbbc41ec9530f6dac86b1"
SC_Q = 123456789
ADD, SET, DIS, SYNC = TokenKind.ADD_TIME, TokenKind.SET_TIME, TokenKind.DISABLE_PAYG, TokenKind.COUNTER_SYNC
T0 = 1_700_000_000


@dataclass
class SimDevice:
    """What the simulated firmware does around the decoder (time, no lockout)."""

    key: str
    sc: int
    state: TokenState
    divider: int = 1
    faults: frozenset[str] = frozenset()
    active_until: int = 0
    disabled: bool = False

    def enter(self, code: str, now: int) -> DecodeResult:
        result, self.state = decode(code, bytes.fromhex(self.key), self.sc, self.state, faults=self.faults)
        if result.outcome == "accepted":
            self.active_until, self.disabled = apply_time(
                result.kind,
                result.value,
                now,
                self.active_until,
                self.disabled,
                self.divider,
                faults=self.faults,
            )
        return result

    def days_left(self, now: int) -> float:
        return math.inf if self.disabled else max(0, self.active_until - now) / 86400


@dataclass
class Scenario:
    name: str
    count: int
    entries: list[tuple[str, int]]  # (code, seconds to wait before entering)
    outcomes: list[str]  # what a correct device answers
    key: str = KEY
    sc: int = SC
    divider: int = 1


def _scenarios() -> dict[str, Scenario]:
    out: dict[str, Scenario] = {}

    def add(name, count, entries, outcomes, **kw):
        entries = [(e, 0) if isinstance(e, str) else e for e in entries]
        out[name] = Scenario(name, count, entries, outcomes.split(), **kw)

    add(
        "quick_test",
        0,
        "123456789 662486790 662486790 927706818 942433796 650975787 592185789".split(),
        "invalid accepted already_used accepted accepted accepted accepted",
        key=KEY_Q,
        sc=SC_Q,
    )
    steps = full_test_procedure(TokenGenerator(KEY, SC, 1))
    add("full_procedure", 1, [(s.code, s.wait_seconds) for s in steps], " ".join(s.expect for s in steps))
    g = TokenGenerator(KEY, SC, 1)
    t = g.add_days(1)
    add("reentry", 1, [t.code, t.code], "accepted already_used")
    add("starting_code", 1, [f"{SC:09d}"], "invalid")
    g = TokenGenerator(KEY, SC, 1)
    a, b, c = g.add_days(5), g.set_days(10), g.add_days(3)
    add("u2d", 1, [b.code, a.code, c.code, a.code], "accepted already_used accepted already_used")
    g = TokenGenerator(KEY, SC, 1)
    add("set_after_add", 1, [g.add_days(5).code, g.set_days(2).code], "accepted accepted")
    g = TokenGenerator(KEY, SC, 1)
    add("even_disable", 1, [g.add_days(1).code, g.at_count(DIS, None, 4).code], "accepted accepted")
    add("jump", 2, [g.at_count(ADD, 1, 66).code, g.at_count(SET, 1, 66 + 65).code], "accepted invalid")
    syncs = [g.at_count(SYNC, None, 101).code, g.at_count(SYNC, None, 202).code]
    add("sync_window", 1, syncs, "accepted invalid")
    g = TokenGenerator(KEY, SC, 1)
    gap = [g.at_count(ADD, 1, 6).code, g.at_count(SYNC, None, 4).code, g.at_count(ADD, 1, 2).code]
    add("sync_into_gap", 1, gap, "accepted accepted already_used")
    g = TokenGenerator(KEY, SC, 1)
    older = [g.at_count(ADD, 1, 40), g.at_count(ADD, 2, 24), g.at_count(ADD, 3, 26), g.at_count(ADD, 4, 38)]
    add("older_window", 1, [t.code for t in older], "accepted already_used accepted accepted")
    g = TokenGenerator(KEY, SC, 1, time_divider=4)
    add("divider", 1, [g.add_days(2.5).code, g.add_days(0.25).code], "accepted accepted", divider=4)
    return out


SCENARIOS = _scenarios()


def replay(device: SimDevice | DeviceModel, s: Scenario) -> list[tuple]:
    """Enter the scenario's codes, each after its wait, into the simulated device or the host's
    model (both answer enter() and days_left()): (outcome, kind, value, count, days left) each."""
    now, seen = T0, []
    for code, wait in s.entries:
        now += wait
        r = device.enter(code, now)
        seen.append((r.outcome, r.kind, r.value, r.count, device.days_left(now)))
    return seen


def run_decoder(s: Scenario, faults: frozenset[str] = frozenset()) -> list[tuple]:
    return replay(SimDevice(s.key, s.sc, TokenState(s.count, 0), s.divider, faults), s)


def run_model(s: Scenario) -> list[tuple]:
    return replay(DeviceModel(s.key, s.sc, s.count, time_divider=s.divider, lockout=NO_LOCKOUT), s)


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_table_on_decoder_matches_model(name):
    s = SCENARIOS[name]
    got = run_decoder(s)
    assert [g[0] for g in got] == s.outcomes
    assert got == run_model(s)


def test_full_procedure_days_on_decoder():
    steps = full_test_procedure(TokenGenerator(KEY, SC, 1))
    got = run_decoder(SCENARIOS["full_procedure"])
    assert [(g[0], g[4]) for g in got] == [(s.expect, s.days) for s in steps]


# -- faults -------------------------------------------------------------------------------------
# fault -> (its own scenario, every scenario of the table it changes)
FAULT_SCENARIOS = {
    "reused_token_accepted": ("reentry", {"reentry", "quick_test", "full_procedure", "u2d", "sync_into_gap"}),
    "accepts_starting_code": ("starting_code", {"starting_code", "quick_test"}),
    "u2d_accepted": ("u2d", {"u2d", "full_procedure"}),
    "set_as_add": ("set_after_add", {"set_after_add", "quick_test", "full_procedure", "u2d"}),
    "parity_before_special": ("even_disable", {"even_disable", "full_procedure", "sync_into_gap"}),
    "unbounded_jump": ("jump", {"jump", "sync_window"}),
    "time_divider_ignored": ("divider", {"divider"}),
    "sync_keeps_stale_mask": ("sync_into_gap", {"sync_into_gap"}),
}


@functools.cache
def good(name: str) -> list[tuple]:
    return run_decoder(SCENARIOS[name])


# At the top of the count (65535 hash steps a token): tests/selftest/test_sim_width_faults.py.
TESTED_APART = {"count_wraps_u16"}


def test_every_fault_has_a_scenario():
    assert set(FAULT_SCENARIOS) | TESTED_APART == set(FAULTS)


@pytest.mark.parametrize("fault", sorted(FAULT_SCENARIOS))
def test_fault_changes_exactly_its_scenarios(fault):
    own, expected = FAULT_SCENARIOS[fault]
    changed = {name for name, s in SCENARIOS.items() if run_decoder(s, frozenset({fault})) != good(name)}
    assert own in changed
    assert changed == expected


def test_fault_manifestations():
    """What each fault does in its own scenario (the good decoder refuses / does it right)."""
    f = lambda name: run_decoder(SCENARIOS[FAULT_SCENARIOS[name][0]], frozenset({name}))  # noqa: E731
    assert f("reused_token_accepted")[1][:4] == ("accepted", ADD, 1, 2)
    assert f("accepts_starting_code")[0][:4] == ("accepted", ADD, 0, 0)
    assert f("u2d_accepted")[3][:4] == ("accepted", ADD, 5, 2)  # U2D: the older ADD 5 comes back
    assert f("set_as_add")[1][0:2] == ("accepted", ADD) and f("set_as_add")[1][4] == 7  # 5 + 2 days
    assert f("parity_before_special")[1][:3] == ("accepted", ADD, 998)
    assert f("unbounded_jump")[1][:4] == ("accepted", SET, 1, 131)
    assert f("time_divider_ignored")[1][4] == 11.0  # 10 + 1 days instead of 2.75
    assert f("sync_keeps_stale_mask")[2][:4] == ("accepted", ADD, 1, 2)  # a count below the sync's
    assert good("divider")[1][4] == 2.75


def test_other_layers_faults_are_ignored():
    s = SCENARIOS["full_procedure"]
    assert run_decoder(s, frozenset({"count_not_persisted", "key_echoed"})) == good("full_procedure")


def test_u2d_ported_c_bug_keeps_the_procedure_passing():
    """The C reference passes the official procedure (docs/tokens.md "Used counts"): the fault only
    shows on U2D."""
    got = run_decoder(SCENARIOS["full_procedure"], frozenset({"u2d_accepted"}))
    diff = [i for i, (a, b) in enumerate(zip(got, good("full_procedure"))) if a != b]
    steps = full_test_procedure(TokenGenerator(KEY, SC, 1))
    assert [steps[i].step for i in diff][0] == "U2D"


# -- state representation -------------------------------------------------------------------
def test_mask_layout():
    """bit i = count last-1-i; SET marks all 16 bits; an ADD jump shifts the old last in."""
    g = TokenGenerator(KEY, SC, 1)
    key = bytes.fromhex(KEY)
    _, s = decode(g.set_days(1).code, key, SC, TokenState(1, 0))
    assert s == TokenState(3, 0xFFFF)
    _, s = decode(g.at_count(ADD, 1, 6).code, key, SC, s)
    assert s == TokenState(6, ((0xFFFF << 3) | 0b100) & 0xFFFF)
    _, s = decode(g.at_count(ADD, 1, 40).code, key, SC, s)
    assert s == TokenState(40, 0)
    r, s2 = decode(g.at_count(ADD, 1, 30).code, key, SC, s)
    assert r.outcome == "accepted" and s2 == TokenState(40, 1 << 9)


def test_invalid_input_leaves_state():
    s = TokenState(7, 0x1234)
    for code in ("", "12345678", "1234567890", "12345678x", "١٢٣٤٥٦٧٨٩"):
        r, s2 = decode(code, bytes.fromhex(KEY), SC, s)
        assert r.outcome == "invalid" and s2 is s


def test_apply_time_rules():
    assert apply_time(ADD, 1, 1000, 0, False, 1) == (1000 + 86400, False)  # expired: from now
    assert apply_time(ADD, 1, 1000, 5000, False, 1) == (5000 + 86400, False)  # extends
    assert apply_time(SET, 0, 1000, 5000, True, 1) == (1000, False)  # SET re-locks
    assert apply_time(ADD, 0, 1000, 5000, True, 1) == (5000, True)  # ADD does not (G11B)
    assert apply_time(DIS, None, 1000, 5000, False, 1) == (5000, True)
    assert apply_time(SYNC, None, 1000, 5000, False, 1) == (5000, False)
    assert apply_time(ADD, 10, 0, 0, False, 4) == (216000, False)
    assert apply_time(ADD, 10, 0, 0, False, 4, faults=frozenset({"time_divider_ignored"})) == (864000, False)


# -- differential property test ---------------------------------------------------------------
KINDS = [ADD, SET, DIS, SYNC]
older_add = st.tuples(st.just("craft"), st.just(ADD), st.integers(0, 995), st.integers(-18, 20))
action = st.one_of(
    older_add,
    older_add,  # weighted: unordered ADD entry is where the mask and the set differ most
    st.tuples(st.just("craft"), st.sampled_from(KINDS), st.integers(0, 995), st.integers(-20, 70)),
    st.tuples(st.just("sync"), st.integers(-70, 105)),
    st.tuples(st.just("server"), st.just(ADD), st.integers(0, 60)),
    st.tuples(st.just("server"), st.sampled_from(KINDS), st.integers(0, 60)),
    st.tuples(st.just("again"), st.integers(0, 100)),
    st.tuples(st.just("again"), st.integers(0, 100)),  # re-entries: the used-count bookkeeping
    st.tuples(st.just("junk"), st.integers(0, 2**32)),
    st.tuples(st.just("raw"), st.sampled_from([996, 997, 998, 999]), st.integers(-20, 70)),
)


def _count_for(kind: TokenKind, count: int) -> int:
    count = max(count, 0 if kind is ADD else 1)  # an ADD at count 0 is the starting code
    if kind is ADD and count % 2:
        count += 1
    if kind is SET and count % 2 == 0:
        count += 1
    return count


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.integers(0, 40), actions=st.lists(action, min_size=1, max_size=15))
def test_model_and_decoder_agree(start, actions):
    gen = TokenGenerator(KEY, SC, start)
    model = DeviceModel(KEY, SC, start, lockout=NO_LOCKOUT)
    dev = SimDevice(KEY, SC, TokenState(start, 0))
    entered: list[str] = []
    now = T0
    for i, act in enumerate(actions):
        last = model.last_count
        if act[0] == "craft":
            _, kind, value, offset = act
            count = _count_for(kind, last + offset)
            code = gen.at_count(kind, None if kind in (DIS, SYNC) else value, count).code
        elif act[0] == "sync":
            code = gen.at_count(SYNC, None, max(1, last + act[1])).code
        elif act[0] == "server":
            _, kind, days = act
            code = {ADD: lambda: gen.add_days(days), SET: lambda: gen.set_days(days),
                    DIS: gen.disable, SYNC: gen.counter_sync}[kind]().code  # fmt: skip
        elif act[0] == "again":
            if not entered:
                continue
            code = entered[act[1] % len(entered)]
        elif act[0] == "junk":
            code = f"{random.Random(act[1]).randrange(10**9):09d}"
        else:
            code = gen.craft(act[1], max(0, last + act[2]))
        entered.append(code)
        now += (i * 7919) % (3 * 86400)
        p = model.enter(code, now)
        r = dev.enter(code, now)
        assert (r.outcome, r.kind, r.value, r.count) == (p.outcome, p.kind, p.value, p.count), (i, act)
        assert dev.state.last_count == model.last_count, (i, act)
        assert (dev.active_until, dev.disabled) == (model.active_until, model.payg_disabled), (i, act)
