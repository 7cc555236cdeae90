"""The simulated board: supply sensing, boot, brown-out, and the UART loop around the firmware.

The device is powered while the simulated PSU's output is above the brown-out threshold. When
it falls below, the firmware instance (its RAM) is dropped and the UART goes silent; input is
lost. The brown-out detector is a comparator on the rail, not the firmware: the board goes by
the lowest the rail has been since it last looked, so a short off period is never missed
because a loaded host left the board loop unscheduled while the rail was down. When the supply comes back, the firmware boots from NVM and prints its banner. The RTC
runs on through all of it (backup battery), unless a board fault takes the battery away:
`rtc_lost_on_power_loss` (no backup battery: the RTC restarts from a fixed epoch at every
power-on), `rtc_stopped_unpowered` (a flat backup cell: the oscillator stops while the board
is unpowered and resumes at power-on from where it stopped) or `rtc_supercap_backup` (a
supercapacitor holds the clock for a minute, then it stops). `skip_unpowered` lets the world's
time jump while the board is off, so a long unpowered interval costs nothing on the virtual rig.

The brown-out threshold is also the EEPROM's minimum programming voltage: the brown-out reset
keeps the MCU from writing below it. With `no_brownout_reset` the MCU runs on down to its own
minimum (60 % of the threshold) and the pages it programs there come out garbled. A restart
after the supply dipped below the threshold but not near 0 V reports `reset=brownout`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from bench.sim.eeprom import PowerLost
from bench.sim.faults import Fault
from bench.sim.firmware import Firmware
from bench.sim.firmware_config import FirmwareConfig
from bench.sim.nvstate import RecordStore
from bench.sim.request_line import MAX_IMPORT_LINE
from bench.sim.rtc import Rtc

log = logging.getLogger("bench.sim.board")

IDLE_DRAW_A = 0.045
HYSTERESIS_V = 0.3
LOOP_S = 0.002  # the step of skip_unpowered's wait for the board loop to take a power loss
# How often the board samples its supply and ticks its firmware when the UART is quiet. A dip
# between two looks is not missed (the supply reports the lowest voltage since the last look, as
# a brown-out detector latches it), a line wakes the board at once and a boot is timed to its
# instant, so a longer look costs the device no event: 10 ms is a fifth of the wake-ups of 2 ms,
# the simulator's main CPU cost while it waits on the bench.
IDLE_LOOK_S = 0.01
MCU_MIN_FRACTION = 0.6  # no_brownout_reset: the MCU runs down to this fraction of brownout_v
POR_V = 0.5  # a restart after the supply stayed above this is a brown-out reset, not power-on
# rtc_lost_on_power_loss: the epoch an RTC without backup starts from (the OpenPAYGO HDK's
# 2021-01-01, docs/protocol.md "What the HDK does not have").
RTC_RESET_EPOCH = 1_609_459_200
# rtc_supercap_backup: how long the supercapacitor keeps the RTC running without supply, s.
SUPERCAP_HOLD_S = 60.0


class Board:
    def __init__(
        self,
        transport,
        supply_voltage: Callable[[], float],
        store: RecordStore,
        rtc: Rtc,
        config: FirmwareConfig,
        brownout_v: float = 3.0,
        boot_delay_s: float = 0.001,
        firmware_factory: Callable[..., Firmware] = Firmware,
        supply_lowest: Callable[[], float] | None = None,
    ) -> None:
        self.transport = transport
        self.supply_voltage = supply_voltage
        # the lowest supply since the last call (the brown-out comparator's view); without one,
        # the supply now
        self.supply_lowest = supply_lowest or supply_voltage
        self.store = store
        self.rtc = rtc
        self.config = config
        self.brownout_v = brownout_v
        self.boot_delay_s = boot_delay_s
        self.firmware_factory = firmware_factory  # the firmware this board runs (reference, HDK, ...)
        self.firmware: Firmware | None = None
        self._powered = False
        self._collapsed = False  # the supply collapsed at once: brown-out reset latched (see collapse())
        self._boot_at: float | None = None
        self._rx = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-board", daemon=True)
        self.boots = 0
        self._off_since: float | None = None  # host time the device lost power (None: powered)
        self._skipped_off_s = 0.0  # world time skipped at once while it was off (skip_unpowered)
        self._lowest_v = 0.0  # the lowest supply seen while off (power-on vs brown-out reset)
        store.eeprom.power_ok = self.power_ok
        store.eeprom.write_ok = lambda: self.supply_voltage() >= self.brownout_v

    @property
    def reset_v(self) -> float:
        """Below this supply the MCU is held in reset (its brown-out reset, or without one its
        own minimum operating voltage)."""
        if Fault.NO_BROWNOUT_RESET in self.config.faults:
            return self.brownout_v * MCU_MIN_FRACTION
        return self.brownout_v

    def _below_reset(self, volts: float, above: float = 0.0) -> bool:
        """volts < reset_v + above. no_brownout_reset is asked about only in the band between
        its threshold and the good one's, where the answer depends on it (bench/sim/hook_trace.py:
        a test whose supply never enters that band cannot behave differently with it)."""
        if volts >= self.brownout_v + above:
            return False  # above both thresholds
        if volts < self.brownout_v * MCU_MIN_FRACTION + above:
            return True  # below both
        return volts < self.reset_v + above

    # -- power ----------------------------------------------------------------------------------
    def power_ok(self) -> bool:
        if not self._collapsed and not self._below_reset(self.supply_voltage()):
            return True
        # the supply is down: only the UART adapter's lines could keep the MCU alive
        return Fault.BACKFEED_FROM_UART in self.config.faults

    def collapse(self) -> None:
        """The supply fell to 0 V at once (a hard cut, not a decay). The brown-out detector trips
        at that instant and holds the MCU in reset: even if the supply is back before the board
        loop looks again, the device restarts (the next loop pass takes the power loss)."""
        if Fault.BACKFEED_FROM_UART not in self.config.faults:
            self._collapsed = True

    def draw(self, volts: float) -> float:
        """Current drawn from the PSU at this voltage (the load the PSU simulator measures)."""
        if self.firmware is None or self._below_reset(volts):
            return 0.0
        return 0.0 if Fault.BACKFEED_FROM_UART in self.config.faults else IDLE_DRAW_A  # backfed: from the UART

    def _update_power(self, now: float) -> None:
        low: float | None = None
        if self._powered and not self._collapsed:
            low = self.supply_lowest()
            if not self._below_reset(low):
                return  # up, and never below reset since the last look: stays on in every build
        if Fault.BACKFEED_FROM_UART in self.config.faults:
            # the UART's lines hold a running MCU up, but cannot start it: it comes up with the
            # supply once, and then never goes down
            on = self._powered or self.supply_voltage() >= self.brownout_v + HYSTERESIS_V
        elif self._collapsed:
            self._collapsed = False
            on = False
            if self._powered:
                self._lose_power()
            self._lowest_v = 0.0  # the rail went to 0 V, however soon it came back
        else:
            low = self.supply_lowest() if low is None else low
            v = self.supply_voltage()
            if self._powered and self._below_reset(low):
                self._lose_power(low)  # down since the last look, even if the supply is back by now
            on = not self._below_reset(v, HYSTERESIS_V) if not self._powered else True
            if not self._powered:
                self._lowest_v = min(self._lowest_v, low)
        if on and not self._powered:
            self._powered = True
            self._boot_at = now + self.boot_delay_s
        elif not on and self._powered:
            self._lose_power()

    def _lose_power(self, low: float | None = None) -> None:
        self._powered = False
        now_v = self.supply_voltage()
        self._lowest_v = now_v if low is None else min(low, now_v)
        self._boot_at = None
        self._off_since, self._skipped_off_s = time.monotonic(), 0.0
        self.firmware = None  # RAM is gone
        self._rx.clear()
        if Fault.RTC_STOPPED_UNPOWERED in self.config.faults:
            self.rtc.stop()  # the backup cell is flat: the 32 kHz oscillator stops with the supply
        log.info("supply at %.2f V: device off", self._lowest_v)

    def skip_unpowered(self, seconds: float) -> bool:
        """The world's time jumps `seconds` while the device is off (a long unpowered interval at
        no cost): its RTC, on its backup supply, counts them. False (nothing skipped) while the
        device is powered, whose firmware would see its uptime stand still."""
        settle = time.monotonic() + 10 * IDLE_LOOK_S  # ten of the board loop's looks
        while self._powered and not self.power_ok() and time.monotonic() < settle:
            time.sleep(LOOP_S)  # the supply is down: let the board loop take the power loss first
        if self._powered or self._off_since is None or self.power_ok():
            return False
        self.rtc.skip(seconds)
        self._skipped_off_s += seconds
        return True

    def _end_of_backup(self) -> None:
        """rtc_supercap_backup: the clock ran only SUPERCAP_HOLD_S of the time the device was off."""
        if self._off_since is None:
            return
        off = time.monotonic() - self._off_since + self._skipped_off_s
        self._off_since, self._skipped_off_s = None, 0.0
        if Fault.RTC_SUPERCAP_BACKUP in self.config.faults and off > SUPERCAP_HOLD_S:
            self.rtc.turn_back(off - SUPERCAP_HOLD_S)

    def _boot(self, reason: str) -> None:
        if reason in ("power", "brownout"):
            self._end_of_backup()
            if Fault.RTC_STOPPED_UNPOWERED in self.config.faults:
                self.rtc.start()  # it resumes from where it stopped
            if Fault.RTC_LOST_ON_POWER_LOSS in self.config.faults:
                self.rtc.set(RTC_RESET_EPOCH)  # no backup battery: the RTC restarts at its epoch
        self.firmware = self.firmware_factory(self.store, self.rtc, self.config, reason)
        self.boots += 1
        for line in self.firmware.banner().split("\n"):
            self._send(line)

    # -- UART loop ------------------------------------------------------------------------------
    def _send(self, line: str, newline: bool = True) -> None:
        self.transport.write(line.encode("ascii", "replace") + (b"\n" if newline else b""))

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            self._update_power(now)
            if self._boot_at is not None and now >= self._boot_at:
                self._boot_at = None
                self._boot("brownout" if self._lowest_v > POR_V else "power")
            if self.firmware is not None:
                self._tick()
            wait = IDLE_LOOK_S if self._boot_at is None else min(IDLE_LOOK_S, max(0.0, self._boot_at - now))
            data = self.transport.read(wait)
            if not data or self.firmware is None:
                continue  # an unpowered UART receives nothing
            self._rx.extend(data)
            while self.firmware is not None and b"\n" in self._rx:
                raw, _, rest = bytes(self._rx).partition(b"\n")
                self._rx[:] = rest
                self._serve(raw)
            if len(self._rx) > MAX_IMPORT_LINE:
                self._rx.clear()
                self._send(f"ERR 400 line longer than {MAX_IMPORT_LINE} bytes")

    def _tick(self) -> None:
        """The firmware's background work (Metrics sampling and sessions) on this thread, once per
        loop pass: its state and NVM keep one writer, and its event lines go out on the UART."""
        tick = getattr(self.firmware, "tick", None)
        if tick is None:
            return
        try:
            lines = tick()
        except PowerLost:
            self._lose_power()
            return
        for line in lines:
            self._send(line)

    def _serve(self, raw: bytes) -> None:
        raw = raw.rstrip(b"\r")
        try:
            line = raw.decode("ascii")
        except UnicodeDecodeError:
            self._send("ERR 400 request is not ASCII")
            return
        firmware = self.firmware
        if firmware is None:  # the supply went while the line came in
            return
        try:
            reply = firmware.handle(line)
        except PowerLost:
            self._lose_power()
            return
        if not self.power_ok():
            self._lose_power()  # the supply went while the firmware worked: the reply never leaves
            return
        for extra in reply.before:
            self._send(extra)
        if reply.delay_s > 0 and not self._busy_until(time.monotonic() + reply.delay_s):
            return  # the supply collapsed while the firmware was busy: no reply
        if reply.line:
            self._send(reply.line, reply.newline)
        if reply.reboot:
            self._boot("soft")

    def _busy_until(self, deadline: float) -> bool:
        """The firmware blocks until deadline, still subject to the supply; False if power is lost."""
        while True:
            now = time.monotonic()
            self._update_power(now)
            if not self._powered:
                return False
            if now >= deadline:
                return True
            time.sleep(min(0.005, deadline - now))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
