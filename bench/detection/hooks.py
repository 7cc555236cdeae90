"""Which tests reach which fault's code, and the reduced detection matrix built on it.

A fault can change a test only if the test reaches the fault's hook (bench/sim/hook_trace.py).
Good runs traced with bench/detection/hook_windows.py give, for each test, the faults it reached;
a fault reached outside any single test (bring-up, a shared fixture) may change every test.
A fault reached while the rig is brought up (a shared fixture, between tests) is noted as such, not
given to every test: bring-up runs in a reduced run too, and every test starts from its own
factory reset. A fault's reduced run is then: the tests that reach it, the tests its catalogue entry names, and a
fixed sample of the rest. That it gives the full matrix's verdicts is not assumed: the full matrix
(`paygo-bench selftest --docs`) checks it for every fault and stores the result with a digest of
the sources it depends on (docs/detection-matrix.json); the reduced matrix is used only while that
digest still holds (tests/selftest/test_fault_detection.py).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.detection.catalogue import EXPLORERS
from bench.detection.hook_windows import WINDOWS_FILE
from bench.sim.hook_trace import TRACE_STEP_S

# What a fault's behaviour and the tests' verdicts depend on: a change here calls for a new full run.
SOURCES = ("bench/sim", "tests/device", "fixtures")
RECORD = "docs/detection-matrix.json"
SAMPLE = 3  # tests drawn from the rest of the suite for each fault, the same ones every run
# Never drawn into a sample: a test whose verdict is a measured rate of time (the RTC drift's
# interval) reads a loaded, niced run's scheduling delays as drift (seen: +1261 ppm against a
# true 250 in a CI fault run). It still runs for every fault whose code it reaches, and whole in
# every good run and in the full matrix.
NOT_SAMPLED = frozenset({"tests/device/test_rtc_drift.py::test_rtc_drift_within_limit"})
SCHEMA = 1


@dataclass
class HookMap:
    tests: dict[str, set[str]] = field(default_factory=dict)  # node id -> faults it reached
    bring_up: set[str] = field(default_factory=set)  # faults reached outside any one test

    def merge(self, other: HookMap) -> HookMap:
        tests = {t: set(f) for t, f in self.tests.items()}
        for t, faults in other.tests.items():
            tests.setdefault(t, set()).update(faults)
        return HookMap(tests, self.bring_up | other.bring_up)

    def missing_from(self, other: HookMap, catalogue) -> list[str]:
        """The (test, fault) pairs this map reached that `other` lacks and that the fault's reduced
        run over `other` would leave out, one line each (what is reached during bring-up does not
        choose tests, so it is not compared)."""
        out = []
        for t, faults in sorted(self.tests.items()):
            for f in sorted(faults - other.tests.get(t, set())):
                if f in catalogue and t not in select(f, catalogue[f].caught_by, other):
                    out.append(f"{f} in {t}")
        return out

    def to_json(self) -> dict:
        return {"tests": {t: sorted(f) for t, f in self.tests.items()}, "bring_up": sorted(self.bring_up)}

    @classmethod
    def from_json(cls, data: dict) -> HookMap:
        return cls({t: set(f) for t, f in data["tests"].items()}, set(data["bring_up"]))


def read_trace(folder: Path, widen: bool = True) -> HookMap:
    """The hook map of one traced run: its windows file and the simulator traces beside it.
    widen: what each test may have reached (a noted question stands for any in the
    TRACE_STEP_S after it, so a test that starts within that is counted too: the reduced
    selections are built from this); else what each test certainly reached (a noted time
    inside its span), which a check against the record uses so that a question asked just
    before a test starts is not counted as the test's."""
    tests: list[tuple[float, float, str]] = []
    shared: list[tuple[float, float]] = []
    for line in (folder / WINDOWS_FILE).read_text(encoding="utf-8").splitlines():
        kind, start, end, name = line.split(" ", 3)
        if kind == "test":
            tests.append((float(start), float(end), name))
        else:
            shared.append((float(start), float(end)))
    tests.sort()
    starts = [t[0] for t in tests]
    hooks = HookMap({name: set() for _, _, name in tests})
    for trace in sorted(folder.glob("sim-*.trace")):
        for line in trace.read_text(encoding="ascii").splitlines():
            t, fault = line.split(" ", 1)
            _attribute(float(t), fault, tests, starts, shared, hooks, TRACE_STEP_S if widen else 0.0)
    return hooks


def _attribute(t, fault, tests, starts, shared, hooks: HookMap, step: float) -> None:
    # The question was asked at t or, unnoted, up to step later: every span that meets
    # [t, t + step] may have asked it.
    lo, hi = t, t + step
    met = False
    for i in range(max(0, bisect.bisect_right(starts, hi) - 1), -1, -1):
        s, e, name = tests[i]
        if e < lo:
            break
        if s <= hi:
            hooks.tests[name].add(fault)
            met = True
    if not met or any(s <= hi and lo <= e for s, e in shared):
        hooks.bring_up.add(fault)  # before the first test, between two, or in a shared fixture


def select(fault: str, caught_by: Iterable[str], hooks: HookMap, sample: int = SAMPLE) -> tuple[str, ...]:
    """The tests a reduced run of `fault` runs, in suite order. An explorer (the random walk)
    runs only for the faults it names: what else it may find cannot make a verdict wrong."""
    chosen = {t for t, faults in hooks.tests.items() if fault in faults and t not in EXPLORERS} | set(caught_by)
    rest = sorted(set(hooks.tests) - chosen - EXPLORERS - NOT_SAMPLED)
    chosen.update(random.Random(f"reduced-matrix:{fault}").sample(rest, min(sample, len(rest))))
    order = list(hooks.tests)
    return tuple(sorted(chosen, key=lambda t: order.index(t) if t in order else len(order)))


def sources_digest(root: Path, sources: Sequence[str] = SOURCES) -> str:
    """SHA-256 over the path and bytes of every .py and .toml file under `sources`."""
    h = hashlib.sha256()
    for top in sources:
        for path in sorted((root / top).rglob("*")):
            if path.suffix in (".py", ".toml") and path.is_file() and "__pycache__" not in path.parts:
                h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


@dataclass
class FullMatrixRecord:
    """What one full matrix run established: for each fault the tests that did not pass, the hook
    map of its good runs, and the digest of the sources it ran."""

    sources: str
    generated_at: str
    good_runs: int
    hooks: HookMap
    not_passed: dict[str, list[str]]  # fault -> tests that failed or errored in its full run

    def to_json(self) -> str:
        data = {
            "schema": SCHEMA,
            "sources": self.sources,
            "generated_at": self.generated_at,
            "good_runs": self.good_runs,
            "not_passed": {f: sorted(t) for f, t in sorted(self.not_passed.items())},
            "hooks": self.hooks.to_json(),
        }
        return json.dumps(data, indent=1, sort_keys=True) + "\n"

    @classmethod
    def load(cls, path: Path) -> FullMatrixRecord | None:
        """The record, or None if there is none or it is of another schema."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("schema") != SCHEMA:
                return None
            return cls(
                data["sources"],
                data["generated_at"],
                data["good_runs"],
                HookMap.from_json(data["hooks"]),
                {f: list(t) for f, t in data["not_passed"].items()},
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def uncovered(self, catalogue) -> dict[str, list[str]]:
        """For each fault, the tests its full run did not pass that its reduced run would not run."""
        out = {}
        for fault, failed in self.not_passed.items():
            chosen = select(fault, catalogue[fault].caught_by if fault in catalogue else (), self.hooks)
            if set(failed) - set(chosen) - EXPLORERS:
                out[fault] = sorted(set(failed) - set(chosen) - EXPLORERS)
        return out


def reduced_section(record: FullMatrixRecord, uncovered: dict[str, list[str]], catalogue) -> list[str]:
    """The detection matrix's account of the reduced matrix this full run stands for (Markdown)."""
    n = len(record.hooks.tests)
    sizes = {f: len(select(f, catalogue[f].caught_by, record.hooks)) for f in record.not_passed if f in catalogue}
    total = sum(sizes.values())
    out = [
        "",
        "## Reduced matrix",
        "",
        "The self-tests run each fault on the tests that reach its code in the good runs (traced:",
        "`bench/sim/hook_trace.py`), the tests that must catch it and a fixed sample of "
        f"{SAMPLE} more (`bench/detection/hooks.py`),",
        f"{total} test runs in all instead of {n * len(sizes)}, while `{RECORD}` holds this run's",
        "verdicts and the digest of `bench/sim`, `tests/device` and `fixtures`: a change there calls for",
        "this full run again before the reduced one is trusted.",
        "",
        (
            f"Every test a fault failed here is in its reduced run: the reduced matrix gives these verdicts "
            f"for all {len(sizes)} faults."
            if not uncovered
            else "The reduced runs would miss: "
            + "; ".join(f"`{f}`: {', '.join(f'`{t}`' for t in ts)}" for f, ts in sorted(uncovered.items()))
        ),
        "",
        "| fault | tests in its reduced run | reached while the rig is brought up |",
        "|---|---|---|",
    ]
    out += [f"| `{f}` | {k} of {n} | {'yes' if f in record.hooks.bring_up else ''} |" for f, k in sorted(sizes.items())]
    return out + [""]


def reduced_selection(root: Path, catalogue) -> Callable[[str], tuple[str, ...]] | None:
    """select() over the stored full-matrix record, or None if there is none or the sources have
    changed since it was made (then every fault runs the whole suite)."""
    record = FullMatrixRecord.load(root / RECORD)
    if record is None or record.sources != sources_digest(root):
        return None
    return lambda fault: select(fault, catalogue[fault].caught_by, record.hooks)
