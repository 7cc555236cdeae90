"""Power as an instrumented operation on a rig (no pytest here: fixtures and benchmarks share it).

`PowerControl` wraps the PSU driver and the DUT link: power cycles with every step timed and
logged in the DUT's traffic log; PSU telemetry (voltage and current read back around every power
operation, and whenever a caller asks, `sample(label)`), each sample a `power: telemetry` line in
the traffic log, summarised as measurements and written as CSV; power cuts during a DUT
operation (`cut_during`): the supply is cut either by the PSU's own trigger after the DUT's k-th
NVM page write (a profile feature; on the virtual rig the simulated PSU's `SIM:TRIG:NVM`), or by
the bench after a delay from the start of the operation (any PSU)."""

from __future__ import annotations

import csv
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.dut.errors import WaitAborted
from bench.power.cycle import CycleReport, PowerOff, Step, checked_output_state, power_off, power_on
from bench.power.cycle import power_cycle as _power_cycle
from bench.timeout import sleep_until


@dataclass(frozen=True)
class CutPoint:
    """Where a power cut falls: after the DUT's k-th NVM page write (PSU trigger), a delay
    after the operation started, or as soon as its reply is in (the bench switches the PSU off):
    the last is where a device that stores what it acknowledged only later loses it."""

    after_pages: int | None = None
    after_s: float | None = None
    after_reply: bool = False

    def __post_init__(self) -> None:
        if (self.after_pages is not None) + (self.after_s is not None) + self.after_reply != 1:
            raise ValueError("a cut point is after some NVM page writes, after a delay or after the reply: one of them")

    def __str__(self) -> str:
        if self.after_reply:
            return "reply"
        if self.after_pages is not None:
            return f"p{self.after_pages}"
        return f"{(self.after_s or 0.0) * 1000:.3f}ms"

    @classmethod
    def parse(cls, text: str) -> CutPoint:
        if text == "reply":
            return cls(after_reply=True)
        if m := re.fullmatch(r"p(\d+)", text):
            return cls(after_pages=int(m.group(1)))
        if m := re.fullmatch(r"(\d+(?:\.\d*)?)ms", text):
            return cls(after_s=float(m.group(1)) / 1000)
        raise ValueError(f"cut point {text!r}: expected pK (after the K-th NVM page write), Nms or reply")


@dataclass(frozen=True)
class CutPlan:
    seed: int
    cycles: int
    replay_op: int | None = None  # replay: enter the operations before it uncut, then cut it once
    replay_cut: CutPoint | None = None


@dataclass
class CutOutcome:
    """What a cut during an operation did."""

    cut: bool  # the supply went during the operation (False: it finished first and no cut came)
    result: Any = None  # the operation's return value if it finished before the cut
    off: PowerOff | None = None
    banner: str | None = None  # the boot banner once the supply came back
    steps: list[Step] = field(default_factory=list)


@dataclass(frozen=True)
class TelemetrySample:
    t: float  # time.monotonic()
    label: str  # running | off | booted | cut | a test's own label
    volts: float
    amps: float


class PowerControl:
    def __init__(self, psu, dut, link, rig) -> None:
        self.psu, self.dut, self.link, self.rig = psu, dut, link, rig
        self.trace: list[TelemetrySample] = []  # this test's telemetry (the fixture resets it)
        self.slowest_cycle_s = 0.0  # the longest off-to-booted this run has seen (bring-up's included)
        self._off_at: float | None = None
        self._confirmed_off_at: float | None = None

    # -- telemetry ----------------------------------------------------------------------------
    def _record(self, sample: TelemetrySample) -> TelemetrySample:
        self.trace.append(sample)
        self.link.log.note(f"power: telemetry {sample.label}: {sample.volts:.3f} V {sample.amps * 1000:.2f} mA")
        return sample

    def sample(self, label: str) -> TelemetrySample:
        """Read the supply's voltage and current back now and add them to the trace."""
        volts = self.psu.measure_voltage()
        amps = self.psu.measure_current()
        return self._record(TelemetrySample(time.monotonic(), label, volts, amps))

    def _off_trace(self, off: PowerOff, label: str) -> None:
        for rel, volts, amps in off.trace:
            self._record(TelemetrySample(off.switched_off_at + rel, label, volts, amps))

    def summarize(self, measure) -> None:
        """The trace's summary as measurements (no limits: a record of what the supply did)."""
        if not self.trace:
            return
        measure("telemetry_samples", len(self.trace))
        measure("supply_voltage_min", min(s.volts for s in self.trace), "V")
        measure("supply_voltage_max", max(s.volts for s in self.trace), "V")
        measure("supply_current_max", max(s.amps for s in self.trace), "A")
        running = [s.amps for s in self.trace if s.label in ("running", "booted")]
        if running:
            measure("supply_current_running", sum(running) / len(running), "A")

    def trace_rows(self) -> list[tuple[float, str, float, float]]:
        """(seconds since the first sample, label, volts, amps), in time order."""
        if not self.trace:
            return []
        ordered = sorted(self.trace, key=lambda s: s.t)
        t0 = ordered[0].t
        return [(s.t - t0, s.label, s.volts, s.amps) for s in ordered]

    def write_trace(self, path: Path) -> Path:
        with path.open("w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(["t_s", "label", "volts", "amps"])
            for t, label, volts, amps in self.trace_rows():
                out.writerow([f"{t:.6f}", label, f"{volts:.6g}", f"{amps:.6g}"])
        return path

    def output_on(self) -> bool:
        """Whether the supply is on, as the PSU reports it and its measured rail confirms (a PSU
        whose two readings disagree raises OutputStateMismatch: an instrument fault)."""
        cfg = self.rig.psu
        return checked_output_state(
            self.psu, off_threshold_v=cfg.off_threshold_v, settle_timeout_s=cfg.settle_timeout_s
        )

    def _log_steps(self, steps) -> None:
        for s in steps:
            self.link.log.note(f"power: {s.name} {s.duration_s * 1000:.1f} ms ({s.detail})")

    def _boot_waiter(self):
        self.link.drain()
        self.link.events.clear()
        since = time.monotonic()
        return lambda timeout_s: self.dut.wait_boot(timeout_s, since=since).line

    def cycle(self, off_s: float | None = None) -> CycleReport:
        cfg = self.rig.psu
        self.sample("running")
        report = _power_cycle(
            self.psu,
            min_off_s=cfg.min_off_s if off_s is None else off_s,
            off_threshold_v=cfg.off_threshold_v,
            settle_timeout_s=cfg.settle_timeout_s,
            wait_boot=self._boot_waiter(),
            boot_timeout_s=self.rig.link.boot_timeout_s,
        )
        self._log_steps(report.steps)
        self.slowest_cycle_s = max(self.slowest_cycle_s, sum(step.duration_s for step in report.steps))
        for rel, volts, amps in report.off_voltage_trace:
            self._record(TelemetrySample(report.switched_off_at + rel, "off", volts, amps))
        self.sample("booted")
        return report

    def off(self):
        cfg = self.rig.psu
        self.sample("running")
        self._off_at = time.monotonic()
        result = power_off(self.psu, off_threshold_v=cfg.off_threshold_v, settle_timeout_s=cfg.settle_timeout_s)
        self._confirmed_off_at = result.confirmed_off_at
        self._log_steps(result.steps)
        self._off_trace(result, "off")
        return result

    def on(self) -> str | None:
        steps, banner = power_on(self.psu, wait_boot=self._boot_waiter(), boot_timeout_s=self.rig.link.boot_timeout_s)
        self._log_steps(steps)
        if self._off_at is not None:  # an off() then this on(): a power cycle held as long as its caller chose
            self.slowest_cycle_s = max(self.slowest_cycle_s, time.monotonic() - self._off_at)
            self._off_at = None
        self.sample("booted")
        return banner

    __call__ = cycle

    @property
    def can_skip_off_time(self) -> bool:
        """The PSU can let unpowered time pass at once (the virtual rig's)."""
        return self.psu.can_skip_off_time

    def hold_off(self, seconds: float, skip: bool = True) -> int:
        """Between off() and on(): keep the DUT unpowered `seconds` from the confirmed switch-off.
        Where the PSU can let that time pass at once (the virtual rig) and `skip`, it lets the
        whole seconds of it pass (rounded up: a token session's clock counts whole seconds) and
        returns them: the DUT's world moved on by that much while the host's clock did not, and
        the model's clock must follow by exactly it (`TokenSession.passed_while_off`). Else the
        time passes on the real clock and 0 is returned."""
        if skip and self.psu.can_skip_off_time:
            whole = math.ceil(seconds)
            skipped = self.psu.skip_off_time(whole)
            if abs(skipped - whole) > 1e-3:
                raise AssertionError(f"the PSU skipped {skipped:g} s of the {whole} s asked: the DUT is not unpowered")
            self.link.log.note(f"power: {whole} s of unpowered time passed at once (PSU off-time skip)")
            return whole
        if self._off_at is None or self._confirmed_off_at is None:
            raise RuntimeError("hold_off() between off() and on()")
        sleep_until(self._confirmed_off_at + seconds)  # the off time itself: a deadline, not synchronisation
        return 0

    @property
    def can_cut_on_nvm_write(self) -> bool:
        return self.psu.can_cut_on_nvm_write

    def cut_during(self, action: Callable[[], Any], cut: CutPoint, off_s: float = 0.0) -> CutOutcome:
        """Run action (one DUT request) with the supply cut at `cut`, then power back: rail
        measured below the threshold, `off_s` more, on, a fresh boot banner.

        after_pages: the PSU's trigger cuts after the DUT's k-th NVM page write; if the action
        finishes and the output is still on, it wrote fewer pages: the trigger is disarmed and
        nothing is cut (cut=False). after_s: a timer thread switches the PSU off that long after
        the action started, whether or not the action has finished by then. While the action
        waits for its reply, the wait ends at once when the cut is seen (WaitAborted): the
        supply is gone, no reply is coming. after_reply: the supply is switched off as soon as the
        action has returned (its reply in)."""
        if cut.after_reply:
            return self._cut_now(action(), True, off_s)
        t0 = time.monotonic()
        fired = threading.Event()
        timer = None
        if cut.after_pages is not None:
            self.psu.cut_on_nvm_write(cut.after_pages)
            self.link.log.note(f"power: PSU armed to cut after NVM page write {cut.after_pages}")

            def check() -> str | None:
                return (
                    None
                    if self.psu.output_state()
                    else f"the PSU cut the supply after NVM page write {cut.after_pages}"
                )
        else:
            after_s = cut.after_s
            assert after_s is not None  # a cut point is one or the other (CutPoint checks)

            def cut_later() -> None:
                sleep_until(t0 + after_s)
                self.psu.output(False)
                fired.set()

            timer = threading.Thread(target=cut_later, name="power-cut", daemon=True)
            timer.start()

            def check() -> str | None:
                return (
                    f"the bench cut the supply {after_s * 1000:.1f} ms after the entry started"
                    if fired.is_set()
                    else None
                )

        result, finished = None, False
        try:
            with self.link.abort_when(check):
                result = action()
            finished = True
        except WaitAborted:
            pass
        except Exception:  # not an interrupt: that goes straight on, the safe state sees to the supply
            # the action failed otherwise (a DUT silent while the PSU says it is on): believe the
            # PSU only if its rail agrees, and leave no trigger armed
            if timer is None and self.output_on():
                self.psu.cut_on_nvm_write(0)
            raise
        finally:
            if timer is not None:
                timer.join()
        if timer is None and finished and self.output_on():
            self.psu.cut_on_nvm_write(0)  # it wrote fewer pages than that: disarm, nothing cut
            if self.output_on():  # (unless it wrote them after replying, before the disarm)
                return CutOutcome(False, result)
        return self._cut_now(result, finished, off_s)

    def _cut_now(self, result: Any, finished: bool, off_s: float) -> CutOutcome:
        """The supply off (if a trigger or timer has not switched it off already), `off_s` once
        the rail is down, on, and the boot banner."""
        cfg = self.rig.psu
        off = power_off(self.psu, off_threshold_v=cfg.off_threshold_v, settle_timeout_s=cfg.settle_timeout_s)
        sleep_until(off.rail_down_at + off_s)  # off_s once the rail is down (rig dut.power_cut_off_s)
        steps, banner = power_on(self.psu, wait_boot=self._boot_waiter(), boot_timeout_s=self.rig.link.boot_timeout_s)
        self._log_steps(off.steps + steps)
        self._off_trace(off, "cut")
        self.sample("booted")
        return CutOutcome(True, result if finished else None, off, banner, off.steps + steps)
