"""The rule the reduced detection matrix rests on (bench/sim/hook_trace.py): the simulated firmware
asks `Fault.X in faults` wherever that defect would change what it does, so a run of the good
build that never asks about a fault is a run the faulty build would make alike. The questions are
asked last, after the conditions under which the defect matters, so that they name few tests; a
condition written too narrowly would silently drop a test that the fault changes from its
reduced run. This checks the rule itself, differentially: command sequences on the good firmware
with its questions recorded, then the same sequence on each faulty build it never asked about,
whose replies, reply delays and NVM bytes must be the same. The sequences are a table, one for
each defect asked about only under a condition (each shown to change its own build's run), and
random ones. The board's faults (supply,
RTC) are outside the firmware and are left to the full matrix, which checks every fault's
reduced run against its whole suite (docs/detection-matrix.md "Reduced matrix")."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.openpaygo.tokens import TokenGenerator
from bench.sim import hook_trace
from bench.sim.eeprom import Eeprom
from bench.sim.faults import Fault, FaultSet
from bench.sim.firmware import Firmware
from bench.sim.firmware_config import FirmwareConfig
from bench.sim.nvstate import RecordStore
from bench.sim.rtc import Rtc

KEY = "a29ab82edc5fbbc41ec9530f6dac86b1"
SC = 123456789
T0 = 1_700_000_000
# The firmware's own faults, less those of its Metrics sessions (the sequences below run none).
FIRMWARE_FAULTS = tuple(f for f in Fault if f.layer in ("firmware", "decoder") and not f.value.startswith("metrics_"))


@contextlib.contextmanager
def recording() -> Iterator[Recorder]:
    """Every fault question asked meanwhile, in place of the hook trace."""
    recorder, saved = Recorder(), hook_trace.TRACE
    hook_trace.TRACE = recorder  # type: ignore[assignment]
    try:
        yield recorder
    finally:
        hook_trace.TRACE = saved


class Recorder:
    """hook_trace.TRACE's stand-in: every question, none thinned out."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def note(self, fault: str) -> None:
        self.asked.add(fault)


@functools.cache
def config_of(faults: frozenset[Fault]) -> FirmwareConfig:
    """One build's settings, made once (each makes a TLS context for its Metrics uplink, 30 ms)."""
    return FirmwareConfig(faults=FaultSet(faults))


def run(folder: Path, faults: frozenset[Fault], prov: str, steps: list[tuple]) -> list[object]:
    """The replies (line, delay) to `steps` on one build, then its NVM bytes."""
    folder.mkdir()
    t = [5000.0]
    store = RecordStore(Eeprom(folder / "e.bin", page_write_s=0))
    rtc = Rtc(start=T0, clock=lambda: t[0])
    config = config_of(faults)
    fw = Firmware(store, rtc, config, "power", clock=lambda: t[0])
    seen: list[object] = []

    def send(line: str) -> None:
        reply = fw.handle(line)
        seen.append((line, reply.line, round(reply.delay_s, 9)))

    send(prov)
    for step in steps:
        kind = step[0]
        if kind == "code":
            send(f"TOKEN {step[1]}")
        elif kind == "wait":
            t[0] += step[1]
            seen.append(("tick", fw.tick()))
        elif kind == "rtc":
            send(f"RTC SET {step[1]}")
        elif kind == "id":
            send("ID")
        elif kind == "reboot":
            fw.tick()
            t[0] += 1.0
            fw = Firmware(store, rtc, config, "power", clock=lambda: t[0])
            seen.append(("boot", fw.banner()))
        send("STATUS")
    seen.append(("nvm", (folder / "e.bin").read_bytes()))
    return seen


def last_count(prov: str) -> int:
    return int(prov.rsplit("count=", 1)[1].split()[0])


# A count a token is crafted at, relative to the provisioned one: mostly just above it (accepted),
# else at the windows' edges and beyond; values mostly the special ones and small days.
OFFSETS = st.one_of(st.integers(1, 8), st.integers(-20, 70), st.sampled_from([-1, 0, 63, 64, 65, 99, 100, 101, 200]))
RAW = st.one_of(st.sampled_from([0, 1, 2, 7, 995, 996, 997, 998, 999]), st.integers(0, 999))
KINDS = ("token",) * 5 + ("code", "wait", "rtc", "reboot", "id")  # a token most often
CODES = ("000000001", "012345678", "999999999", "123456789")
WAITS = (0.5, 1.5, 3600.0, 86400.0, 70000.0, 200000.0)
CLOCKS = (T0, 2**31 - 3600, 2**31 + 10, 100)


def _step(kind: str, raw: int, offset: int, code: str, wait: float, clock: int) -> tuple:
    return {
        "token": ("token", raw, offset),
        "code": ("code", code),
        "wait": ("wait", wait),
        "rtc": ("rtc", clock),
        "reboot": ("reboot",),
        "id": ("id",),
    }[kind]


STEP = st.builds(
    _step,
    st.sampled_from(KINDS),
    RAW,
    OFFSETS,
    st.sampled_from(CODES),
    st.sampled_from(WAITS),
    st.sampled_from(CLOCKS),
)
PROV = st.builds(
    lambda count, td, sn: f"PROV sn={sn} key={KEY} sc={SC} count={count} td={td}",
    st.one_of(st.sampled_from([1, 250, 255, 256]), st.integers(1, 400)),
    st.sampled_from([1, 1, 4]),
    st.sampled_from(["SIM1", "SIM000001"]),
)


def crafted(prov: str, steps: list[tuple]) -> list[tuple]:
    """Token steps as codes, each crafted once for every build; a token's count is relative to the
    highest count crafted before it (so that most are accepted in turn), none below 0."""
    top, out = last_count(prov), []
    for step in steps:
        if step[0] == "token":
            count = top + step[2]
            if count < 0:
                continue
            top = max(top, count)
            step = ("token", step[1], count)
        out.append(step)
    return scenario(prov, out)


def differs_only_where_asked(root: Path, prov: str, steps: list[tuple]) -> set[str]:
    """Run the good build traced and every firmware fault's build; fail on a fault never asked
    about that changed the run. The faults asked about that did change it, by name."""
    with recording() as recorder:
        good = run(root / "good", frozenset(), prov, steps)
    changed = set()
    for fault in FIRMWARE_FAULTS:
        if run(root / fault.value, frozenset({fault}), prov, steps) != good:
            assert fault.value in recorder.asked, (
                f"{fault.value} changed a run that never asked about it: {prov!r} then {steps!r}"
            )
            changed.add(fault.value)
    return changed


def prov(count: int = 1, td: int = 1) -> str:
    return f"PROV sn=SIM1 key={KEY} sc={SC} count={count} td={td}"


def tok(raw: int, count: int) -> tuple:
    return ("token", raw, count)  # an absolute count here (crafted by scenario())


BAD = ("code", "123456789")
DAY = 86400.0
# One sequence per defect whose question is asked only under a condition: each must change the
# run on its fault's build (else the scenario does not reach what it is for).
SCENARIOS = {
    "count_stored_u8": (prov(250), [tok(0, 256), ("reboot",)]),
    "used_mask_stored_u8": (prov(), [tok(0, 40), tok(0, 26), ("reboot",), tok(0, 26)]),
    "credit_end_int32": (prov(), [("rtc", 2**31 - 3600), tok(1, 2), ("reboot",)]),
    "credit_compare_int32": (prov(), [("rtc", 2**31 + 10), tok(1, 2), ("rtc", 100)]),
    "streak_stored_3_bits": (prov(), [step for _ in range(9) for step in (BAD, ("wait", 40000.0))] + [("reboot",)]),
    "lockout_not_persisted": (prov(), [BAD, ("reboot",)]),
    "time_divider_ignored": (prov(td=4), [tok(1, 2)]),
    "add_counts_expired_days": (prov(), [tok(1, 2), ("wait", 200000.0), tok(1, 4)]),
    "set_does_not_relock": (prov(), [tok(998, 2), tok(1, 3)]),
    "add_relocks": (prov(), [tok(998, 3), tok(1, 4)]),
    "parity_before_special": (prov(), [tok(998, 2)]),
    "accepts_starting_code": (prov(), [tok(0, 0)]),
    "reused_token_accepted": (prov(), [tok(0, 4), tok(0, 2), tok(0, 2)]),
    "unbounded_jump": (prov(), [tok(0, 200)]),
    "sync_keeps_stale_mask": (prov(), [tok(1, 6), tok(999, 4), tok(1, 2)]),
    "leading_zero_dropped": (prov(), [("token0",)]),
    "expiry_timer_u16": (prov(td=4), [tok(1, 2), ("wait", 3600.0), ("reboot",), ("wait", 3600.0)]),
    "no_lockout": (prov(), [BAD, BAD, BAD, BAD]),
    "key_echoed_decimal": (prov(), [("id",)]),
}


def scenario(prov_line: str, steps: list[tuple]) -> list[tuple]:
    """Token steps (an absolute count) as codes, each crafted once for every build; ("token0",): an
    ADD within the window above count 1 whose code starts with 0."""
    gen = TokenGenerator(KEY, SC, 1)
    out = []
    for step in steps:
        if step[0] == "token":
            step = ("code", gen.craft(step[1], step[2]))
        elif step[0] == "token0":
            codes = (gen.craft(raw, n) for raw in range(50) for n in range(2, 64, 2))  # within the window
            step = ("code", next(c for c in codes if c.startswith("0")))
        out.append(step)
    return out


@pytest.mark.parametrize("fault", sorted(SCENARIOS))
def test_a_scenario_changes_its_faults_build_and_no_fault_unasked(tmp_path, fault):
    prov_line, steps = SCENARIOS[fault]
    changed = differs_only_where_asked(tmp_path, prov_line, scenario(prov_line, steps))
    assert fault in changed, f"the {fault} scenario does not change that build's run: it tests nothing"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prov=PROV, steps=st.lists(STEP, min_size=2, max_size=10))
def test_a_fault_the_good_build_never_asks_about_changes_nothing(tmp_path_factory, prov, steps):
    differs_only_where_asked(tmp_path_factory.mktemp("exact"), prov, crafted(prov, steps))


def test_the_questions_are_asked_where_the_defect_matters(tmp_path):
    """The narrowing is real: a plain provisioning asks about none of the narrow-field defects;
    a count past 255 then asks about count_stored_u8 (and a fault's build is then not alike)."""
    with recording() as recorder:
        gen = TokenGenerator(KEY, SC, 1)
        run(tmp_path / "small", frozenset(), f"PROV sn=SIM1 key={KEY} sc={SC} count=1", [("code", gen.craft(0, 2))])
        assert (
            not {"count_stored_u8", "credit_end_int32", "streak_stored_3_bits", "time_divider_ignored"} & recorder.asked
        )
        run(tmp_path / "big", frozenset(), f"PROV sn=SIM1 key={KEY} sc={SC} count=300", [("code", gen.craft(0, 302))])
        assert "count_stored_u8" in recorder.asked
    steps = [("code", TokenGenerator(KEY, SC, 1).craft(0, 302)), ("reboot",)]
    good = run(tmp_path / "g", frozenset(), prov(300), steps)
    assert run(tmp_path / "f", frozenset({Fault.COUNT_STORED_U8}), prov(300), steps) != good
