"""The `credit_runs_on_uptime` defect: credit kept as seconds left, counted down by the
firmware's own uptime instead of derived from the RTC.

A firmware written this way keeps the seconds left in a battery-backed register (the RTC's
backup registers, the usual place for a value that changes every second), decrements it on its
uptime tick and, at boot, resumes from what the register holds. While it is powered nothing
looks wrong; but no time passes for the credit while the device is unpowered, so after every
power-off the credit ends later by the time the device spent off. The firmware shows its credit
end as RTC time + seconds left, so `STATUS`'s `active_until` and `left` agree with each other.
The countdown goes on below 0 (an expired credit's end stays where it was while powered, and
moves by the off time like a running one); a device that never had credit (end 0) has none.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.sim.rtc import Rtc

REGISTER = "credit_left_s"


class UptimeCredit:
    def __init__(self, rtc: Rtc, clock: Callable[[], float], stored_active_until: int) -> None:
        self.rtc = rtc
        self.clock = clock
        self._since = clock()
        self._left: float | None = rtc.backup.get(REGISTER)  # seconds left at _since; None: no credit
        if self._left is None and stored_active_until:  # never written: from the NVM record's end
            self._left = stored_active_until - rtc.now()

    def _left_now(self) -> float | None:
        return None if self._left is None else self._left - (self.clock() - self._since)

    def end(self) -> int:
        """The credit end the firmware shows: RTC now + seconds left, in whole RTC seconds."""
        left = self._left_now()
        return 0 if left is None else round(self.rtc.now() + left)

    def set_end(self, active_until: int) -> None:
        """A token (or provisioning: 0, no credit) gave a new credit end: count down from it."""
        self._left = active_until - self.rtc.now() if active_until else None
        self._since = self.clock()
        self.tick()

    def tick(self) -> None:
        """The uptime tick: the register follows the countdown."""
        left = self._left_now()
        if left is None:
            self.rtc.backup.pop(REGISTER, None)
        else:
            self.rtc.backup[REGISTER] = left
