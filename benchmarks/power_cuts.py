"""Power-cut cycles per minute on the virtual rig, against plain power cycles, as a printed table.

Why it exists (issue #5, item 8): tests/device/test_power_cuts.py cuts the supply inside the
DUT's NVM writes `dut.power_cut_cycles` times (200 on the virtual rig), so its cut rate decides
whether a lab can afford thousands of cuts per night, and what bounds that rate decides where to
make it faster. This measures, in one run, on one virtual rig:

- the power-cut test itself: the device test's function is called in-process, with the objects
  the fixtures build (same simulator options, PSU driver, adapter, `PowerControl`, token model,
  traffic log written to a file), so each cycle is the real one: trigger armed
  (`SIM:TRIG:NVM k`), token entered, supply cut after the k-th NVM page write, rail confirmed
  off, on, boot banner, PSU read back, STATUS checked against the model. Every `cut_during`,
  token entry and STATUS is timed on the way through (subclasses that only add timers). This is
  why the script imports fixtures/ and tests/device/, beyond the bench package;
- the reference: plain power cycles, `PowerControl.cycle()` (off, rail polled below the
  threshold, min off time, on, banner) at the rig's `psu.min_off_s`, and again at the cuts' off
  time (`--off-s`), where the rail's fall is what is left;
- a floor: UART STATUS round trips.

Ratios are cycles per minute against the plain power cycle measured in the same run. The second
table breaks one cycle into its steps (medians) to show what bounds the rate.

    python benchmarks/power_cuts.py [--cycles 200] [--off-s 0.0]

--cycles: power cuts (plain cycles: a quarter of that, at least 10; STATUS round trips: 5x).
--off-s: how long each cut keeps the supply off once it is confirmed off (default: the rig's
dut.power_cut_off_s), and the min off time of the second plain-cycle row.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ is not an installed package

from bench.dut.link import SerialLink  # noqa: E402
from bench.dut.reference import ReferenceAdapter  # noqa: E402
from bench.dut.traffic import TrafficLog  # noqa: E402
from bench.measure.measurement import Measurements  # noqa: E402
from bench.power.driver import Psu  # noqa: E402
from bench.rig import virtual_rig  # noqa: E402
from bench.sim.virtual_rig import SimOptions  # noqa: E402  (only to print its boot delay)
from bench.station.power_control import CutPlan, PowerControl  # noqa: E402
from bench.station.profile import generator_for, model_for, provisioning_for  # noqa: E402
from bench.station.safe_state import apply_safe_state  # noqa: E402
from bench.station.token_session import TokenSession  # noqa: E402
from bench.station.virtual_rig import (
    sim_options,  # noqa: E402
    start_virtual_rig,  # noqa: E402
)
from tests.device import test_power_cuts  # noqa: E402

NODEID = "tests/device/test_power_cuts.py::test_state_survives_power_cuts_during_nvm_writes"


class TimedAdapter(ReferenceAdapter):
    """The reference adapter, with enter_token and status timed as (start, seconds)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.entries: list[tuple[float, float]] = []
        self.statuses: list[tuple[float, float]] = []

    def enter_token(self, code: str):
        t0 = time.perf_counter()
        try:
            return super().enter_token(code)
        finally:
            self.entries.append((t0, time.perf_counter() - t0))  # a cut entry ends in WaitAborted

    def status(self):
        t0 = time.perf_counter()
        try:
            return super().status()
        finally:
            self.statuses.append((t0, time.perf_counter() - t0))


class TimedPowerControl(PowerControl):
    """PowerControl with every cut_during and cycle timed, their outcomes and steps kept."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cuts: list[tuple[float, float, object, int | None]] = []  # (start, seconds, CutOutcome, k)
        self.cycles: list[tuple[float, object]] = []  # (seconds, CycleReport)

    def cut_during(self, action, cut, off_s: float = 0.0):
        t0 = time.perf_counter()
        outcome = super().cut_during(action, cut, off_s)
        self.cuts.append((t0, time.perf_counter() - t0, outcome, cut.after_pages))
        return outcome

    def cycle(self, off_s: float | None = None):
        t0 = time.perf_counter()
        report = super().cycle(off_s)
        self.cycles.append((time.perf_counter() - t0, report))
        return report


def provision(adapter, power, rig) -> None:
    """What the provisioned_dut fixture does: factory reset, provision with the rig's profile."""
    adapter.factory_reset(rig.link.boot_timeout_s)
    adapter.provision(provisioning_for(rig.dut))
    if adapter.restart_after_provision:
        power.cycle()


def p95(xs: list[float]) -> float:
    return sorted(xs)[int(0.95 * (len(xs) - 1))]


def step_s(steps, *names: str) -> float:
    return sum(s.duration_s for s in steps if s.name in names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=200, help="power cuts (default 200, the virtual rig's)")
    ap.add_argument(
        "--off-s",
        type=float,
        default=None,
        help="off time of each cut once the rail is down, and of the second plain-cycle row "
        "(default: the rig's dut.power_cut_off_s)",
    )
    args = ap.parse_args()
    rig = virtual_rig()
    off_s = rig.dut.power_cut_off_s if args.off_s is None else args.off_s
    dut = dataclasses.replace(rig.dut, power_cut_cycles=args.cycles, power_cut_off_s=off_s)
    rig = dataclasses.replace(rig, dut=dut)
    n_plain = max(10, args.cycles // 4)
    n_status = 5 * args.cycles
    cfg = rig.psu
    t_run = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="paygo-bench-power-cuts-") as tmp:
        sim = start_virtual_rig(sim_options(rig, tmp))
        # As the fixtures do it (rig_endpoints, traffic_log, dut_link, psu, rig_up, provisioned_dut,
        # token_session, tokens), the traffic log written to a file like a test's.
        log = TrafficLog(rig.secrets())
        log.to_file(Path(tmp) / "traffic.log")
        link = SerialLink(sim.port, rig.link.baud, log).open()
        psu = Psu.open(
            sim.visa,
            cfg.profile,
            sim.channel,
            timeout_s=cfg.timeout_s,
            on_traffic=lambda direction, text: log.record("P" + direction, text),
        )
        try:
            psu.set_voltage(cfg.voltage)
            psu.set_current_limit(cfg.current_limit)
            psu.idn()
            adapter = TimedAdapter(link, rig.link.reply_timeout_s, rig.dut.capabilities or None)
            power = TimedPowerControl(psu, adapter, link, rig)
            power.off()
            power.on()
            provision(adapter, power, rig)  # STATUS needs a provisioned DUT

            for _ in range(n_status):
                adapter.status()
            status_s = [d for _, d in adapter.statuses]

            power.trace = []
            for _ in range(n_plain):
                power.cycle()
            plain = list(power.cycles)
            power.cycles.clear()
            power.trace = []
            for _ in range(n_plain):
                power.cycle(off_s)
            plain_off = list(power.cycles)

            # provisioned_dut + token_session + tokens, then the device test's own function
            provision(adapter, power, rig)
            for cap in ("token", "status"):
                if not adapter.offers(cap):
                    raise SystemExit(f"the DUT lacks {cap!r}: the power-cut test cannot run")
            session = TokenSession(adapter, model_for(rig.dut))
            power.trace = []
            adapter.entries.clear()
            adapter.statuses.clear()
            measure = Measurements()
            plan = CutPlan(seed=1, cycles=args.cycles)
            t0 = time.perf_counter()
            try:
                test_power_cuts.test_state_survives_power_cuts_during_nvm_writes(
                    SimpleNamespace(node=SimpleNamespace(nodeid=NODEID)),
                    session,
                    generator_for(rig.dut),
                    power,
                    rig,
                    measure,
                    plan,
                )
            except AssertionError as e:  # a broken bench or simulator: its times would mean nothing
                raise SystemExit(f"the power-cut test failed, nothing measured:\n{e}") from None
            t_test = time.perf_counter() - t0
            t_end = time.perf_counter()
        finally:
            apply_safe_state(psu, cfg)
            psu.close()
            link.close()
            log.close()
            sim.stop()
    elapsed = time.perf_counter() - t_run
    measured = {m.name: m.value for m in measure.items}
    if measure.failed:
        print(f"note: the power-cut test's measurements out of limits: {measure.failure_text()}")

    # -- per-cut numbers ------------------------------------------------------------------------
    cut_calls = [(t, d, o) for t, d, o, _ in power.cuts if o.cut]
    pages = [k for _, _, o, k in power.cuts if o.cut]
    uncut_calls = [c for c in power.cuts if not c[2].cut]
    starts = [t for t, _, _ in cut_calls] + [t_end]
    loop_s = [b - a for a, b in zip(starts, starts[1:])]  # one cut to the next: the test's cycle

    def row(name: str, n: int, total: float, samples: list[float] | None):
        return name, n, total, samples, 60.0 * n / total

    plain_s = [d for d, _ in plain]
    plain_off_s = [d for d, _ in plain_off]
    rows = [
        row(f"plain power cycle, min off {cfg.min_off_s:g} s (reference)", len(plain_s), sum(plain_s), plain_s),
        row(f"plain power cycle, min off {off_s:g} s", len(plain_off_s), sum(plain_off_s), plain_off_s),
        row(
            "power cut in NVM write: cut_during()",
            len(cut_calls),
            sum(d for _, d, _ in cut_calls),
            [d for _, d, _ in cut_calls],
        ),
        row("power-cut test loop, cut to cut", len(cut_calls), t_test, loop_s),
        row("UART STATUS round trip (floor)", len(status_s), sum(status_s), status_s),
    ]
    ref = rows[0][4]
    print(
        f"Power-cut throughput, virtual rig defaults (PSU decay {rig.sim.psu_decay_s:g} s, NVM page write "
        f"{rig.sim.nvm_page_write_ms:g} ms, sim boot delay {SimOptions().boot_delay_s * 1e3:g} ms, "
        f"cut off time {off_s:g} s)"
    )
    print(
        f"{date.today()}, {platform.python_implementation()} {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} cores, {elapsed:.1f} s"
    )
    print(f"{'what':46} {'n':>5} {'total s':>8} {'median ms':>10} {'p95 ms':>8} {'cycles/min':>11} {'x cycle':>8}")
    for name, n, total, samples, per_min in rows:
        med = f"{statistics.median(samples) * 1e3:10.2f}" if samples else f"{'-':>10}"
        hi = f"{p95(samples) * 1e3:8.2f}" if samples else f"{'-':>8}"
        print(f"{name:46} {n:5d} {total:8.2f} {med} {hi} {per_min:11.0f} {per_min / ref:8.1f}")
    print(
        f"power-cut test: {measured.get('entries')} token entries, {len(uncut_calls)} of them armed but finished "
        f"uncut, cuts leaving old/new state {measured.get('cuts_old_state_kept')}/"
        f"{measured.get('cuts_new_state_kept')}, at most {measured.get('max_page_writes_per_entry')} page writes "
        f"per entry, {measured.get('boots_nvm_recovered')} boots recovered a torn record"
    )

    # -- where the time goes (medians) --------------------------------------------------------
    # Entries and STATUS calls that belong to each cut: the entry inside its cut_during, the first
    # STATUS after it (Run.after_boot's state check).
    entry_by_cut, status_by_cut = [], []
    entries = sorted(adapter.entries)
    statuses = sorted(adapter.statuses)
    for t, d, _ in cut_calls:
        entry_by_cut.append(next(e for s, e in entries if t <= s <= t + d))
        status_by_cut.append(next((e for s, e in statuses if s >= t + d), 0.0))
    arm = [next(s for s, _ in entries if t <= s <= t + d) - t for t, d, _ in cut_calls]
    off_conf = [step_s(o.steps, "output off", "rail settle") for _, _, o in cut_calls]
    on_boot = [step_s(o.steps, "output on", "boot") for _, _, o in cut_calls]
    boot = [step_s(o.steps, "boot") for _, _, o in cut_calls]
    rest = [d - a - e - f - b - off_s for (_, d, _), a, e, f, b in zip(cut_calls, arm, entry_by_cut, off_conf, on_boot)]
    med = lambda xs: statistics.median(xs) * 1e3  # noqa: E731
    print()
    print("one power cut, medians in ms:")
    print(f"  arm SIM:TRIG:NVM k + read back      {med(arm):8.2f}")
    if len(set(pages)) > 1:  # time against the page write the cut came after: fixed part + per page
        fit = statistics.linear_regression(pages, entry_by_cut)
        how = f"fit over the cut point k: {fit.intercept * 1e3:.2f} + {fit.slope * 1e3:.2f} x k, "
    else:
        how = ""
    k_med = statistics.median(pages)
    print(f"  TOKEN until the cut is seen         {med(entry_by_cut):8.2f}   ({how}k median {k_med:g})")
    print(f"  off + rail confirmed                {med(off_conf):8.2f}   (the cut collapses the rail at once)")
    print(f"  held off                            {off_s * 1e3:8.2f}")
    print(
        f"  on + boot banner                    {med(on_boot):8.2f}   (of which waiting for the banner {med(boot):.2f})"
    )
    print(f"  PSU read-back, logging              {med(rest):8.2f}")
    print(f"  STATUS check                        {med(status_by_cut):8.2f}")
    other = [lp - d - st for lp, (_, d, _), st in zip(loop_s, cut_calls, status_by_cut)]
    print(f"  the rest of the test loop           {med(other):8.2f}   (model, tokens, re-entries, uncut entries)")
    for label, cycles in (
        (f"plain power cycle, min off {cfg.min_off_s:g} s", plain),
        (f"plain power cycle, min off {off_s:g} s", plain_off),
    ):
        reports = [r for _, r in cycles]
        parts = "  ".join(
            f"{name} {med([step_s(r.steps, name) for r in reports]):.1f}"
            for name in ("output off", "rail settle", "hold off", "output on", "boot")
        )
        print(f"{label}, medians in ms: {parts}")


if __name__ == "__main__":
    main()
