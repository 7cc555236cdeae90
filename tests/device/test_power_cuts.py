"""Power cuts during NVM writes (docs/power.md "Power cuts during NVM writes"): the supply is cut inside
the window in which the DUT stores its token state, over and over, and after every boot the
state must be one the bench's model allows: the one before the entry or the one after it.

Where the PSU profile has an NVM-write trigger (the virtual rig's simulated PSU), every cut
point is reached in turn, littlefs style: the same entry is cut after its 1st, 2nd, ... NVM
page write until one cut comes after the write completed (the state moved on), then the next
entry. Elsewhere the bench cuts the supply itself at a random delay, seeded, between the start
of the entry and the time an uncut entry takes (measured first), until the state moves on.
Every fourth entry of each kind (accepted token, invalid, lockout-starting; its 2nd, 6th, ...)
is cut instead as soon as the DUT has answered it: acknowledged means kept, so what that answer changed (the
token, the invalid streak, the lock it started) must be there after the boot. A run that could
not cut each kind both before and after its reply is INCOMPLETE, never a pass.
The cut supply must collapse faster than the write takes: on a real rig, a MOSFET or relay in
the supply line or a PSU with a fast down-programmer, not a slow decay.

Replay one cut alone with the line a failure prints:
`pytest tests/device/test_power_cuts.py::test_state_survives_power_cuts_during_nvm_writes --rig RIG
--sim-fault FAULT --power-cut-replay SEED:OP:CUT` (the failure prints it whole).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from fractions import Fraction

import pytest

from bench.dut.errors import DutError
from bench.fixtures.dut import skip_not_covered
from bench.fixtures.rig import replay_command
from bench.station.power_control import CutPoint
from bench.station.token_session import SECONDS_LEFT_TOLERANCE, status_differences

# The entries cut, in this order, round and round: credit, the invalid streak and two lockouts
# (the reference schedule locks at the 3rd and again at the 4th invalid token in a row), SET
# after ADD, DISABLE_PAYG and the re-lock. An invalid token that locks needs the RTC set past
# its lockout afterwards (`rtc_set`); without it an ADD is entered instead.
PATTERN = ("add", "invalid", "add", "set", "invalid", "invalid", "invalid", "invalid", "disable", "set")
# What an entry's answer changes, by which the cuts are counted and planned: each kind is cut
# before its reply (the sweep) and, its 2nd, 6th, 10th ... entry, right after it.
KINDS = ("accepted", "invalid", "lockout")
MAX_ATTEMPTS = 256  # an entry still not stored after this many cut entries never will be
LOCK_MARGIN_S = 5
WINDOW_FACTOR = 1.2  # random cuts fall within 1.2 x the time an uncut entry takes


@dataclass
class Op:
    number: int
    kind: str
    code: str
    effect: str = "accepted"  # one of KINDS
    at_reply: bool = False  # cut once, right after the reply (else: swept before it)

    def __str__(self) -> str:
        return f"op {self.number} ({self.kind} {self.code})"


class Ops:
    """The entries to cut: the same tokens in the same order on every run for a given profile
    (the seed only moves the random cut delays), so a failure replays and a defect that breaks
    one of these tokens is caught on every run, not on some seeds."""

    def __init__(self, session, tokens, can_skip_lockout: bool) -> None:
        self.s, self.tokens = session, tokens
        self.rng = random.Random("power-cut-entries")
        self.can_skip = can_skip_lockout
        self.number = 0
        self.of_effect = dict.fromkeys(KINDS, 0)

    def next(self) -> Op:
        kind = PATTERN[self.number % len(PATTERN)]
        self.number += 1
        value = self.rng.randint(1, 30)  # drawn for every entry, so the sequence never shifts
        invalid_seed = self.rng.randrange(10**9)
        model = self.s.model
        locks = kind == "invalid" and model.lockout.seconds(model.invalid_streak + 1) > 0
        if locks and not self.can_skip:
            kind, locks = "add", False  # this one would lock entry, and the RTC cannot be set past the lock
        effect = "lockout" if locks else "invalid" if kind == "invalid" else "accepted"
        self.of_effect[effect] += 1
        days = Fraction(value, self.tokens.time_divider)
        code = {
            "add": lambda: self.tokens.add_days(days).code,
            "set": lambda: self.tokens.set_days(days).code,
            "disable": lambda: self.tokens.disable().code,
            "invalid": lambda: self.tokens.invalid(seed=invalid_seed),
        }[kind]()
        return Op(self.number, kind, code, effect, at_reply=self.of_effect[effect] % 4 == 2)


def _token_state(model) -> tuple:
    """What a token changes, beside the invalid streak and the lock: count, used counts, credit, PAYG."""
    st = model.snapshot()
    return st.last_count, st.used, st.active_until, st.payg_disabled


def _unlocked(model):
    """The model with its invalid streak and lock cleared: a state a power cut may leave on a
    device whose profile keeps them in RAM (rig `dut.lockout_persists = false`)."""
    m = model.copy()
    m.invalid_streak, m.locked_until = 0, 0
    return m


def _what_it_changed(old, new, now: int) -> str:
    """The acknowledged change, in words, for a failure message."""
    if _token_state(old) != _token_state(new):
        return f"count {old.last_count} -> {new.last_count}, the credit and PAYG state with it"
    lock = max(0, new.locked_until - now)
    return f"invalid streak {old.invalid_streak} -> {new.invalid_streak}" + (
        f", token entry locked for {lock} s" if lock > max(0, old.locked_until - now) else ""
    )


NAMES = {"accepted": "an accepted token", "invalid": "an invalid entry", "lockout": "a lockout-starting entry"}


def _missing(run, can_skip: bool, lock_persists: bool) -> list[str]:
    """What the run was to cut and did not: each kind of entry cut before its reply and after it,
    the status after the latter telling the state before the entry from the one after (else the
    cut checked nothing). Empty: the run is complete."""
    out = []
    if not lock_persists:
        out.append(
            "a check that an acknowledged invalid entry or lockout is kept: the profile says the streak "
            "and the lock do not survive a power loss (dut.lockout_persists = false)"
        )
    for kind in KINDS if lock_persists else ("accepted",):
        if kind == "lockout" and not can_skip:
            continue  # not planned: the DUT's clock cannot be set past a lock (rtc_set; reported as 0 cuts)
        if not run.cut_before[kind]:
            out.append(f"{NAMES[kind]} cut before its reply")
        if not run.cut_after[kind]:
            out.append(f"{NAMES[kind]} cut after its reply")
        elif not run.kept_seen[kind] and (kind != "invalid" or run.reports_streak):
            out.append(
                f"{NAMES[kind]} cut after its reply whose status told the state before it from the one "
                "after (the DUT does not report what it changed)"
            )
    return out


class Run:
    """Bookkeeping and the invariants checked after every boot."""

    def __init__(
        self, session, power, plan, config: pytest.Config, nodeid: str, off_s: float, lock_persists: bool
    ) -> None:
        self.s, self.power, self.plan, self.nodeid, self.off_s = session, power, plan, nodeid, off_s
        self.config = config
        self.lock_persists = lock_persists  # rig dut.lockout_persists
        self.cut_before = dict.fromkeys(KINDS, 0)  # entries of each kind cut before their reply,
        self.cut_after = dict.fromkeys(KINDS, 0)  # and after it,
        self.kept_seen = dict.fromkeys(KINDS, 0)  # of those, where the status ruled the state before out
        self._counted: set[tuple[int, bool]] = set()
        self.reports_streak = True  # (an invalid entry's effect is seen only in a reported streak)
        self.cuts = 0
        self.old_kept = 0
        self.new_kept = 0
        self.recovered = 0
        self.max_pages = 0
        self.highest_count = session.model.last_count
        self.looked_old: int | None = None  # the op whose last cut left a status like the state before it
        self.probed = 0  # cuts after which only entering the token again told the states apart
        # The time the DUT spent unpowered in this test, bounded from above (each cut entry from
        # the cut's start to the boot banner). A DUT whose clock stops while unpowered reports
        # that much more credit; that is the timekeeping tests' to catch, not a torn write, so
        # the credit compared here may be off by it, never by half the smallest credit step
        # (one time-divider unit of a day) that tells the state before an entry from the one after.
        self.unpowered_s = 0.0
        self.unpowered_cap_s = max(0.0, 86_400 / session.model.time_divider / 2 - SECONDS_LEFT_TOLERANCE)

    def where(self, op: Op, cut: CutPoint) -> str:
        return (
            f"power cut {self.cuts} of {self.plan.cycles} (seed {self.plan.seed}, {op}, cut {cut}); replay it "
            f"alone: {replay_command(self.config, self.nodeid, '--power-cut-replay', f'{self.plan.seed}:{op.number}:{cut}')}"
        )

    def entry(self, op: Op, cut: CutPoint):
        """Enter op's code with the cut armed; the models before and after, the prediction and
        the outcome of the cut. A reply that came before the cut must be the model's."""
        s = self.s
        entry = s.begin(op.code)  # written ahead in the ledger: the cut may leave it unanswered
        started = time.monotonic()
        outcome = self.power.cut_during(lambda: s.dut.enter_token(op.code), cut, self.off_s)
        if outcome.cut:
            self.unpowered_s += time.monotonic() - started
        if outcome.result is not None:
            s.finish(entry, outcome.result)
            problems = s.outcome_differences(op.code, entry.predicted, outcome.result)
            if problems and self.looked_old == op.number and outcome.result.result == "already_used":
                problems.append(
                    "an earlier cut of this entry left a status like the state before it, yet the token "
                    "had been stored: the DUT kept the token but lost what it gave (credit, PAYG state), "
                    "so its state after that cut was neither the one before the entry nor the one after"
                )
            assert not problems, "; ".join(problems) + f"\n{self.where(op, cut)}"
        return entry.before, entry.after, entry.predicted, outcome

    def after_boot(self, op: Op, cut: CutPoint, old, new, outcome) -> str:
        """docs/power.md "Power cuts during NVM writes", after a cut: the device boots, its count
        never decreases, its state is the model's before or after the entry (so no credit without a
        token, the lockout kept, nothing garbage), and a token it acknowledged is kept. Returns
        "old" or "new"."""
        s = self.s
        assert outcome.banner, "no boot banner after the supply came back"
        if s.dut.parse_banner(outcome.banner).fields.get("nvm") == "recovered":
            self.recovered += 1
        try:
            status = s.dut.status()
        except DutError as e:
            raise AssertionError(f"after the cut the DUT does not report its status ({e}): its state is gone") from None
        if status.token_count is not None:
            assert status.token_count >= self.highest_count, (
                f"the token count went down from {self.highest_count} to {status.token_count}"
            )
        self.reports_streak = status.invalid_streak is not None
        now = s.now()
        tol = SECONDS_LEFT_TOLERANCE + min(self.unpowered_s, self.unpowered_cap_s)
        as_new = status_differences(status, new, now, streak=True, credit_tolerance=tol)
        as_old = status_differences(status, old, now, streak=True, credit_tolerance=tol)
        if not self.lock_persists:  # the profile lets a cut clear the streak and the lock
            if as_new and not status_differences(status, _unlocked(new), now, streak=True, credit_tolerance=tol):
                new, as_new = _unlocked(new), []
            if as_old and not status_differences(status, _unlocked(old), now, streak=True, credit_tolerance=tol):
                old, as_old = _unlocked(old), []
        acknowledged = outcome.result is not None and outcome.result.result in ("accepted", "invalid")
        if not as_new and not as_old and _token_state(old) != _token_state(new):
            if acknowledged:
                self.kept_seen[op.effect] += 1  # the token entered again tells
            return self.probe(op, old, new)  # the status cannot tell (a protocol that reports little)
        if not as_new:
            which = "new"  # (with both alike in token state: only the streak differs, counted is the safe side)
        elif not as_old:
            which = "old"
        else:
            raise AssertionError(
                f"after the cut the DUT's state is neither the one before the entry ({'; '.join(as_old)}) "
                f"nor the one after it ({'; '.join(as_new)}): status {status}"
            )
        if acknowledged:
            # acknowledged means kept: a cut after the reply may not take back what it changed
            assert which == "new", (
                f"the DUT answered the entry {outcome.result.result} ({_what_it_changed(old, new, now)}), "
                f"then lost it in the cut: its status after the boot is the state before the entry "
                f"({'; '.join(as_new)})"
            )
            if as_old:
                self.kept_seen[op.effect] += 1
        s.model = new if which == "new" else old
        if status.token_count is not None:
            self.highest_count = max(self.highest_count, status.token_count)
        return which

    def probe(self, op: Op, old, new) -> str:
        """The status after the cut fits both the state before the entry and the one after it (a
        protocol that reports no count): the token itself tells. Entered again, `already_used` says
        the cut came after it was stored, `accepted` that it was not (and now is); either way the
        entry is done."""
        s = self.s
        s.model = old
        entry = s.begin(op.code)
        out = s.dut.enter_token(op.code)
        s.finish(entry, out)
        if out.result == "already_used" and entry.predicted.outcome == "accepted":
            s.model = new
        else:
            s.check_outcome(op.code, entry.predicted, out)
        self.probed += 1
        return "new"

    def cycle(self, op: Op, cut: CutPoint) -> bool | None:
        """One entry with a cut; True: the state moved on (op done), False: it stayed, None: no
        cut came (the entry finished first, with fewer page writes than the trigger's)."""
        old, new, predicted, outcome = self.entry(op, cut)
        if outcome.cut:
            replied = outcome.result is not None
            if (op.number, replied) not in self._counted:
                self._counted.add((op.number, replied))
                (self.cut_after if replied else self.cut_before)[op.effect] += 1
        if not outcome.cut:
            self.s.check_streak()
            self.max_pages = max(self.max_pages, (cut.after_pages or 1) - 1)
            return None
        self.cuts += 1
        try:
            which = self.after_boot(op, cut, old, new, outcome)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.where(op, cut)}") from None
        if which == "new":
            self.new_kept += 1
            if cut.after_pages is not None:
                self.max_pages = max(self.max_pages, cut.after_pages)
            return True
        self.old_kept += 1
        self.looked_old = op.number
        return False


@pytest.mark.catches(
    "reused_token_accepted",
    "count_not_persisted",
    "provisioning_not_persisted",
    "backfeed_from_uart",
    "set_as_add",
    "unbounded_jump",
    "no_lockout",
    "lockout_not_persisted",
    "set_does_not_relock",
    "rtc_lost_on_power_loss",
    "credit_runs_on_uptime",
    "torn_write_corrupts_state",
    "state_not_ab_crc",
    "streak_saved_late",
    "lock_end_saved_late",
    "leading_zero_dropped",
)
@pytest.mark.needs("token", "status")
@pytest.mark.time_limit(cycles="power_cut_cycles")
def test_state_survives_power_cuts_during_nvm_writes(
    request, token_session, tokens, power_cycle, rig, measure, power_cut_plan, progress
):
    """docs/power.md "Power cuts during NVM writes": `dut.power_cut_cycles` power cuts (200 on the
    virtual rig) inside the NVM write of token entries (ADD, SET, DISABLE_PAYG and invalid ones up
    to a lockout): after every boot the device answers, its token count never went down, its whole
    status is the model's state before or after the entry (no credit without a token, the lockout
    kept, the state never garbage), a token it acknowledged is kept, and once an entry was stored
    its token is refused as already used. A failure names the seed and the cut point and how to
    replay it alone. Measurements: power cuts, entries, seed, cuts that left the old / new state,
    boots that recovered a torn record, the most page writes one entry took (trigger) or the cut
    window (random delays). Every
    fourth entry of each kind is cut right after its reply instead: what the answer changed (the
    token, the invalid streak, the lock) must be kept (the streak and lock where the profile keeps
    them, `dut.lockout_persists`). Measurements `cuts_before_reply_*` / `cuts_after_reply_*` count
    the entries of each kind (accepted, invalid, lockout) cut before and after the reply; a run
    without each (the cut budget used up, no reported status that tells) is not covered.
    Lockout-starting entries need `rtc_set` (their lock is run out by setting the clock).
    """
    s, plan = token_session, power_cut_plan
    s.clock_ahead()  # a clock that restarts at power loss: a day's jump back at the first cut
    can_skip = s.dut.offers("rtc") and s.dut.offers("rtc_set")
    ops = Ops(s, tokens, can_skip)
    lock_persists = rig.dut.lockout_persists
    run = Run(s, power_cycle, plan, request.config, request.node.nodeid, rig.dut.power_cut_off_s, lock_persists)
    trigger = power_cycle.can_cut_on_nvm_write
    cut_rng = random.Random(f"{plan.seed}/cuts")
    window_s = None
    measure("seed", plan.seed)
    entries = 0
    failure = None
    try:
        while run.cuts < plan.cycles:
            progress(f"power cut {run.cuts} of {plan.cycles}, {entries} entries, seed {plan.seed}")
            failure = None
            if s.model.locked_until > s.now() and can_skip:
                s.advance(s.model.locked_until - s.now() + LOCK_MARGIN_S)
            op = ops.next()
            entries += 1
            replaying = plan.replay_op is not None
            if replaying and op.number < plan.replay_op:
                s.expect(op.code)  # replay: the entries before the one cut, uncut
                continue
            if not trigger and window_s is None and not replaying:
                out = s.expect(op.code)  # the first entry, uncut, times the window
                window_s = max(out.elapsed_s * WINDOW_FACTOR, 0.005)
                measure("cut_window", window_s, "s")
                continue
            k = 1
            while True:
                if replaying:
                    cut = plan.replay_cut
                elif op.at_reply:
                    cut = CutPoint(after_reply=True)
                elif trigger:
                    cut = CutPoint(after_pages=k)
                else:
                    cut = CutPoint(after_s=round(cut_rng.uniform(0.0, window_s), 6))
                failure = (op, cut)
                done = run.cycle(op, cut)
                if replaying or op.at_reply:
                    break
                if done is not False:
                    break
                if run.cuts >= plan.cycles:
                    break  # out of cuts with the entry not stored: the state is the old one
                k += 1
                assert k <= MAX_ATTEMPTS, (
                    f"{op} still not stored after {MAX_ATTEMPTS} cut entries\n{run.where(op, cut)}"
                )
            if done is not False and op.kind != "invalid" and not replaying:
                # once stored, the token is used: entering it again must be refused
                again = s.expect(op.code).result
                assert again == "already_used", f"{op} was {again} when entered again\n{run.where(op, cut)}"
            if replaying:
                break
        failure = None
        s.check_streak()
        if plan.replay_op is None:
            missing = _missing(run, can_skip, lock_persists)
            if missing:
                skip_not_covered(
                    request,
                    f"the power-cut run ended without {'; '.join(missing)} (in {run.cuts} cuts, {entries} entries)",
                )
    finally:
        measure("power_cuts", run.cuts, low=plan.cycles)
        measure("entries", entries)
        measure("cuts_old_state_kept", run.old_kept)
        measure("cuts_new_state_kept", run.new_kept)
        measure("boots_nvm_recovered", run.recovered)
        measure("cuts_told_apart_by_reentry", run.probed)
        for kind in KINDS:
            measure(f"cuts_before_reply_{kind}", run.cut_before[kind])
            measure(f"cuts_after_reply_{kind}", run.cut_after[kind])
        if trigger:
            measure("max_page_writes_per_entry", run.max_pages)
        if failure is not None:
            op, cut = failure
            measure("failed_at_cut", run.cuts)
            measure("failed_op", op.number)
            measure("failed_cut_point", str(cut))
