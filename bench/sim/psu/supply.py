"""The simulated supply's electrical model: setpoints, outputs, the decay after OFF, a load per
channel, and the simulator's NVM trigger input (docs/power.md "Simulated PSU").

Model choices:
- switching ON sets the output to the setpoint at once (no rise time);
- after OFF the voltage falls *linearly* from its value at switch-off to 0 V over `decay_s`
  (0 = instant), standing in for the output capacitance discharging into a light load;
- current = min(load(volts), limit) while the voltage is above 0, else 0; CC-mode voltage
  fold-back is not modelled;
- `lowest_since_last(ch)`: the lowest the output has been since the previous call, for a
  comparator (the device's brown-out detector) that watches the rail continuously while its
  reader (the board loop) looks only now and then.

Simulator extension (no real PSU has it): a trigger input counting the DUT's "NVM page written"
markers. `arm_nvm_cut(ch, k)`: when the DUT on the channel completes its k-th NVM page write from
now, the output is cut and the rail collapses at once (a MOSFET or crowbar in the supply line,
not the output capacitor's decay), as a lab cuts its PSU from a DUT's "NVM write" GPIO. And
`skip_off_time(ch, s)`: while an output is off, the simulated world's time jumps s seconds for the
DUT on it (its RTC on backup supply counts them), so a long unpowered interval is instant.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("bench.sim.psu")

Load = Callable[[float], float]
"""volts -> amps the device draws at that voltage."""
OutputObserver = Callable[[int, bool], None]


@dataclass
class _Channel:
    setpoint_v: float = 0.0
    limit_a: float = 0.1
    on: bool = False
    off_at: float = -math.inf  # monotonic time the output was last switched off
    v_at_off: float = 0.0  # output voltage at that moment, start of the decay
    load: Load | None = None
    nvm_cut_after: int = 0  # armed NVM trigger: page writes to go before a cut (0 = not armed)
    low_mark: float = math.inf  # the lowest output voltage since lowest_since_last() last read it
    skipped_off_s: float = 0.0  # world time skipped while the output was off (skip_off_time)


class SimulatedSupply:
    """A multi-channel bench supply: setpoints, outputs, decay after OFF, a load per channel."""

    def __init__(
        self,
        channels: int = 3,
        decay_s: float = 0.3,
        max_voltage: float = 30.0,
        max_current: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if channels < 1:
            raise ValueError("a supply needs at least one channel")
        if not (decay_s >= 0 and math.isfinite(decay_s)):
            raise ValueError(f"decay_s must be finite and >= 0, got {decay_s!r}")
        self.channels = channels
        self.decay_s = decay_s
        self.max_voltage = max_voltage
        self.max_current = max_current
        self.clock = clock
        self._lock = threading.RLock()
        self._ch = {n: _Channel() for n in range(1, channels + 1)}
        self._observers: list[OutputObserver] = []
        # the simulated world's clock, told to let time pass for an unpowered DUT (SIM:TIME:SKIP):
        # seconds -> whether the DUT took them (False: it is not unpowered)
        self.time_skipper: Callable[[float], bool] | None = None

    # -- settings -----------------------------------------------------------------------------

    def set_voltage(self, ch: int, volts: float) -> None:
        volts = self._in_range(volts, self.max_voltage, "voltage")
        with self._lock:
            self._mark_low(ch)
            self._chan(ch).setpoint_v = volts

    def set_current_limit(self, ch: int, amps: float) -> None:
        amps = self._in_range(amps, self.max_current, "current")
        with self._lock:
            self._chan(ch).limit_a = amps

    def setpoint(self, ch: int) -> float:
        with self._lock:
            return self._chan(ch).setpoint_v

    def current_limit(self, ch: int) -> float:
        with self._lock:
            return self._chan(ch).limit_a

    def set_output(self, ch: int, on: bool) -> None:
        """Switch an output; observers hear about real changes only, outside the lock."""
        self._switch(ch, on, collapse=False)

    def cut(self, ch: int) -> None:
        """Switch an output off with the rail collapsing at once instead of decaying."""
        self._switch(ch, False, collapse=True)

    def _switch(self, ch: int, on: bool, collapse: bool) -> None:
        with self._lock:
            c = self._chan(ch)
            if c.on == on:
                return
            now = self.clock()
            self._mark_low(ch, now)
            if not on:
                c.v_at_off = 0.0 if collapse else c.setpoint_v
                c.off_at = now
                c.skipped_off_s = 0.0
            c.on = on
            observers = list(self._observers)
        for fn in observers:
            try:
                fn(ch, on)
            except Exception:  # an observer bug must not break the PSU
                log.exception("PSU output observer %r failed", fn)

    def output(self, ch: int) -> bool:
        with self._lock:
            return self._chan(ch).on

    # -- NVM trigger (simulator extension) ------------------------------------------------------

    def arm_nvm_cut(self, ch: int, pages: int) -> None:
        """Cut the output when the DUT completes its `pages`-th NVM page write from now (0 disarms)."""
        if isinstance(pages, bool) or not isinstance(pages, int) or pages < 0:
            raise ValueError(f"page count must be a whole number >= 0, got {pages!r}")
        with self._lock:
            self._chan(ch).nvm_cut_after = pages

    def nvm_cut_pending(self, ch: int) -> int:
        with self._lock:
            return self._chan(ch).nvm_cut_after

    def nvm_page_written(self, ch: int) -> None:
        """The trigger input: the DUT powered by `ch` completed one NVM page write."""
        with self._lock:
            c = self._chan(ch)
            if c.nvm_cut_after <= 0:
                return
            c.nvm_cut_after -= 1
            fire = c.nvm_cut_after == 0
        if fire:
            log.info("NVM trigger: cutting output %d", ch)
            self.cut(ch)

    # -- off-time skip (simulator extension) --------------------------------------------------

    def skip_off_time(self, ch: int, seconds: float) -> bool:
        """Let `seconds` pass at once for the DUT on an output that is off; False if the output is
        on, there is no DUT to tell, or the DUT is not unpowered."""
        with self._lock:
            c = self._chan(ch)
            if c.on or self.time_skipper is None or not self.time_skipper(seconds):
                return False
            c.skipped_off_s += seconds
            return True

    def skipped_off_time(self, ch: int) -> float:
        """Seconds skipped since the output was last switched off (0 while it is on)."""
        with self._lock:
            c = self._chan(ch)
            return 0.0 if c.on else c.skipped_off_s

    def reset(self) -> None:
        """*RST: all outputs off, setpoints to defaults (observers notified of OFF)."""
        for ch in self._ch:
            self.set_output(ch, False)
        with self._lock:
            for c in self._ch.values():
                c.setpoint_v, c.limit_a = 0.0, 0.1

    # -- electrical model ---------------------------------------------------------------------

    def voltage(self, ch: int, now: float | None = None) -> float:
        """Output voltage now: setpoint while on, linear decay to 0 over decay_s after OFF."""
        with self._lock:
            c = self._chan(ch)
            if c.on:
                return c.setpoint_v
            t = (self.clock() if now is None else now) - c.off_at
            if self.decay_s == 0 or t >= self.decay_s:
                return 0.0
            return c.v_at_off * (1.0 - max(t, 0.0) / self.decay_s)

    def lowest_since_last(self, ch: int) -> float:
        """The lowest output voltage since the previous call (the first call: since the supply
        was made): what a comparator on the rail has seen, however seldom its reader looks."""
        with self._lock:
            self._mark_low(ch)
            c = self._chan(ch)
            low, c.low_mark = c.low_mark, self.voltage(ch)
            return low

    def _mark_low(self, ch: int, now: float | None = None) -> None:
        """Fold the voltage now into the low mark; called before every change of the output.
        Between changes the voltage is constant (on) or falls (off), so its lowest over that
        stretch is its value at the end: the voltage just before each change, or at the read."""
        c = self._chan(ch)
        c.low_mark = min(c.low_mark, self.voltage(ch, now))

    def set_load(self, ch: int, fn: Load | None) -> None:
        """Register what the device draws (volts -> amps); None removes it."""
        with self._lock:
            self._chan(ch).load = fn

    def current(self, ch: int, now: float | None = None) -> float:
        """min(load(volts), limit) while the output voltage is above 0; else 0."""
        with self._lock:
            volts = self.voltage(ch, now)
            c = self._chan(ch)
            load, limit = c.load, c.limit_a
        if volts <= 0 or load is None:
            return 0.0
        amps = float(load(volts))  # called outside the lock: the load may query the supply
        if not math.isfinite(amps) or amps <= 0:
            return 0.0
        return min(amps, limit)

    def subscribe(self, fn: OutputObserver) -> Callable[[], None]:
        """Call fn(ch, on) on every output change; returns an unsubscribe function."""
        with self._lock:
            self._observers.append(fn)

        def unsubscribe() -> None:
            with self._lock:
                if fn in self._observers:
                    self._observers.remove(fn)

        return unsubscribe

    # -- helpers ------------------------------------------------------------------------------

    def _chan(self, ch: int) -> _Channel:
        try:
            return self._ch[ch]
        except KeyError:
            raise ValueError(f"no channel {ch} (1..{self.channels})") from None

    @staticmethod
    def _in_range(value: float, maximum: float, what: str) -> float:
        value = float(value)
        if not (math.isfinite(value) and 0 <= value <= maximum):
            raise ValueError(f"{what} {value} outside 0..{maximum}")
        return value
