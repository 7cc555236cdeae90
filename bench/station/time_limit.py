"""How long one device test may run on this rig: the worst case its steps can take, from the rig's
own timeouts, times a margin. Past it the test fails naming this limit and its derivation
(bench/station/watchdog.py), instead of running on for an hour without a word.

A test is costed as EXCHANGES exchanges (a reply from the DUT and a reading of the supply, each
at its timeout) and CYCLES power cycles (the rail falling, the off time, the boot, the supply's
queries); a long test adds what its marker names (`@pytest.mark.time_limit(cycles=..., wait=...,
exchanges=...)`): a number, or the name of a `[dut]` key holding it (`cycles="power_cut_cycles"`,
`wait="rtc_drift_max_observe_s"`). A test that enters tokens may wait out a lockout on the real
clock: it adds `dut.lockout_wait_budget_s`. docs/rig.md "Per-test time limits".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.rig import Rig

MARGIN = 2.0
EXCHANGES = 60
CYCLES = 4
PSU_QUERIES_PER_CYCLE = 4  # output off, voltage and current while it falls, output on
MARKER_KEYS = ("cycles", "wait", "exchanges")


@dataclass(frozen=True)
class TimeLimit:
    seconds: float
    derivation: str  # how it was derived, in words and the rig's keys, for the failure message

    def __str__(self) -> str:
        return f"{self.seconds:.0f} s ({self.derivation})"


def _value(rig: Rig, what: str, given: Any) -> tuple[float, str]:
    """A marker value: a number, or the name of a [dut] key of this rig holding one."""
    if isinstance(given, bool) or not isinstance(given, int | float | str):
        raise ValueError(f"time_limit({what}=...): expected a number or a [dut] key name, got {given!r}")
    if isinstance(given, str):
        value = getattr(rig.dut, given, None)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"time_limit({what}={given!r}): the rig has no numeric [dut] key {given!r}")
        return float(value), f"dut.{given} {value:g}"
    if given < 0:
        raise ValueError(f"time_limit({what}={given!r}): expected >= 0")
    return float(given), f"{given:g}"


def cycle_cost(rig: Rig) -> tuple[float, str]:
    """The longest one power cycle may take on this rig, and how."""
    p, link = rig.psu, rig.link
    seconds = (
        p.settle_timeout_s
        + p.min_off_s
        + rig.dut.power_cut_off_s
        + link.boot_timeout_s
        + PSU_QUERIES_PER_CYCLE * p.timeout_s
        + link.reply_timeout_s
    )
    how = (
        f"psu.settle_timeout_s + psu.min_off_s + dut.power_cut_off_s + link.boot_timeout_s + "
        f"{PSU_QUERIES_PER_CYCLE} x psu.timeout_s + link.reply_timeout_s = {seconds:g} s"
    )
    return seconds, how


def time_limit(rig: Rig, marker: Mapping[str, Any] | None = None, enters_tokens: bool = False) -> TimeLimit:
    """The limit for a test with this time_limit marker's keywords (None: no marker)."""
    marker = dict(marker or {})
    unknown = sorted(set(marker) - set(MARKER_KEYS))
    if unknown:
        raise ValueError(f"time_limit({unknown[0]}=...): unknown; expected {', '.join(MARKER_KEYS)}")
    exchanges, ex_how = float(EXCHANGES), f"{EXCHANGES}"
    if "exchanges" in marker:
        more, how = _value(rig, "exchanges", marker["exchanges"])
        exchanges, ex_how = exchanges + more, f"({EXCHANGES} + {how})"
    cycles, cy_how = float(CYCLES), f"{CYCLES}"
    if "cycles" in marker:
        more, how = _value(rig, "cycles", marker["cycles"])
        cycles, cy_how = cycles + more, f"({CYCLES} + {how})"
    exchange_s = rig.link.reply_timeout_s + rig.psu.timeout_s
    cycle_s, cycle_how = cycle_cost(rig)
    wait, wait_how = 0.0, ""
    if "wait" in marker:
        wait, how = _value(rig, "wait", marker["wait"])
        wait_how = f" + {how} s"
    if enters_tokens:
        wait += rig.dut.lockout_wait_budget_s
        wait_how += f" + dut.lockout_wait_budget_s {rig.dut.lockout_wait_budget_s:g} s"
    seconds = MARGIN * (exchanges * exchange_s + cycles * cycle_s + wait)
    derivation = (
        f"{MARGIN:g} x ({ex_how} exchanges x (link.reply_timeout_s + psu.timeout_s = {exchange_s:g} s) + "
        f"{cy_how} power cycles x ({cycle_how}){wait_how})"
    )
    return TimeLimit(seconds, derivation)
