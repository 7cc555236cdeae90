"""The firmware's NVM writes, and the defects that live in them: state kept in RAM only, fields
stored narrower than they are kept in RAM, one record overwritten in place instead of A/B copies,
a save put off until after the reply."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from bench.sim.faults import Fault
from bench.sim.nvstate import LoadResult, NvState, RecordStore

# streak_saved_late / lock_end_saved_late: the main loop saves what an invalid entry changed this
# long after the entry (coalescing the writes of a keypad under attack), well after the reply.
LATE_SAVE_S = 1.0


class Persistence:
    """A part of Firmware (bench/sim/firmware.py): how it loads its state at boot and saves it."""

    store: RecordStore
    faults: frozenset[Fault]
    state: NvState
    _nvm_at_boot: NvState  # what a RAM-only defect falls back to
    _clock: Callable[[], float]
    _save_due: float | None = None  # a save put off (streak_saved_late, lock_end_saved_late)

    def _save_later(self) -> None:
        """Leave the state unsaved until the main loop's pass LATE_SAVE_S from now."""
        self._save_due = self._clock() + LATE_SAVE_S

    def _late_save(self) -> None:
        """The main loop's part: a save put off is made once it is due."""
        if self._save_due is not None and self._clock() >= self._save_due:
            self._persist()

    def _load(self) -> LoadResult:
        if Fault.TORN_WRITE_CORRUPTS_STATE in self.faults:  # one copy, CRC checked: torn = lost
            return self.store.load_single(check_crc=True)
        if Fault.STATE_NOT_AB_CRC in self.faults:  # one copy, no CRC: torn bytes taken as the state
            return self.store.load_single(check_crc=False)
        return self.store.load()

    def _persist(self) -> None:
        self._save_due = None  # this save holds everything a put-off one would
        saved = replace(self.state)
        boot = self._nvm_at_boot
        # Each question comes after the condition under which its defect would store something
        # else (bench/sim/hook_trace.py): asked last, it names only the tests it could change.
        if (saved.last_count, saved.used_mask) != (boot.last_count, boot.used_mask) and (
            Fault.COUNT_NOT_PERSISTED in self.faults
        ):
            saved.last_count, saved.used_mask = boot.last_count, boot.used_mask
        if saved.used_mask != boot.used_mask and Fault.USED_COUNTS_NOT_PERSISTED in self.faults:
            saved.used_mask = boot.used_mask  # the count is stored, the mask is not
        if (saved.invalid_streak, saved.locked_until) != (boot.invalid_streak, boot.locked_until) and (
            Fault.LOCKOUT_NOT_PERSISTED in self.faults
        ):
            saved.invalid_streak, saved.locked_until = boot.invalid_streak, boot.locked_until  # RAM only
        # Fields narrower in the record than in RAM (docs/tokens.md "What a device keeps"):
        if saved.last_count != saved.last_count & 0xFF and Fault.COUNT_STORED_U8 in self.faults:
            saved.last_count &= 0xFF  # the count in one byte
        if saved.used_mask != saved.used_mask & 0xFF and Fault.USED_MASK_STORED_U8 in self.faults:
            saved.used_mask &= 0xFF  # the used-count mask in one byte
        as_int32 = (saved.active_until + 2**31) % 2**32 - 2**31
        if as_int32 != saved.active_until and Fault.CREDIT_END_INT32 in self.faults:
            saved.active_until = as_int32  # the credit end as a signed 32-bit number
        if saved.invalid_streak != saved.invalid_streak & 0x7 and Fault.STREAK_STORED_3_BITS in self.faults:
            saved.invalid_streak &= 0x7  # the invalid streak in 3 bits of a flags byte
        if saved.metrics_rc != boot.metrics_rc and Fault.METRICS_COUNTER_NOT_PERSISTED in self.faults:
            saved.metrics_rc = boot.metrics_rc  # the request counter lives in RAM
        factory = ("provisioned", "serial", "key_hex", "starting_code", "time_divider", "restricted")
        if any(getattr(saved, f) != getattr(boot, f) for f in factory) and (
            Fault.PROVISIONING_NOT_PERSISTED in self.faults
        ):
            for f in factory:
                setattr(saved, f, getattr(boot, f))
        # `in`, not a set intersection: only `in` is noted by the hook trace
        if Fault.TORN_WRITE_CORRUPTS_STATE in self.faults or Fault.STATE_NOT_AB_CRC in self.faults:
            self.store.save_in_place(saved)  # no A/B: the only copy is overwritten
        else:
            self.store.save(saved)
