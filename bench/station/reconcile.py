"""Bringing the ledger and the DUT together: at bring-up (what the ledger holds against what the
DUT reports), after a run that stopped in the middle of an entry, and whenever the model's state
is doubtful (re-basing with tokens). docs/ledger.md says what each case does and why.

What the bench never does is take the DUT's word for its token state: a DUT that reports more
than the bench ever sent (a higher count, more credit, PAYG disabled, a longer invalid streak)
had tokens entered behind the bench's back, and the run stops saying so; a DUT that reports less
did not keep what it was given (a defect the tests judge), and is re-based with tokens whose
outcome fixes every part of its state.
"""

from __future__ import annotations

from bench.dut.adapter import DeviceStatus
from bench.dut.errors import DeviceRefused
from bench.openpaygo.model import DeviceModel
from bench.station.dut_tokens import DutTokens
from bench.station.ledger_recorder import LedgerRecorder
from bench.station.ledger_state import LedgerState, Pending
from bench.station.profile import fresh_state, model_for
from bench.station.rebase import REPROVISION_HINT, rebaseline
from bench.station.token_session import SECONDS_LEFT_TOLERANCE, status_differences

RESYNC_HINT = (
    "paygo-bench run --resync (a counter-sync and a SET token from the ledger's state bring the device "
    "to a state the ledger knows)"
)
NOT_PROVISIONED = 409  # the reference protocol's and the HDK adapter's answer from a blank device


class LedgerContradiction(Exception):
    """The DUT and its ledger disagree in a way the bench must not paper over (one line)."""


def _status_or_blank(t: DutTokens) -> DeviceStatus | None:
    try:
        return t.dut.status()
    except DeviceRefused as e:
        if e.code == NOT_PROVISIONED:
            return None
        raise


def bring_up(t: DutTokens, resync: bool = False, reprovision: bool = False) -> str:
    """Reconcile the ledger with the DUT before the first test; returns what was done (one line).
    Raises LedgerContradiction naming the serial, both values and the way out."""
    serial, where = t.serial, t.ledger.path
    known = t.ledger.device(serial)
    if known is not None and (known.key_fingerprint, known.starting_code) != (
        t.identity().key_fingerprint,
        t.profile.starting_code,
    ):
        raise LedgerContradiction(
            f"ledger {where}: device {serial} was provisioned with another key or starting code than the rig's "
            f"profile gives (starting code {known.starting_code} in the ledger, {t.profile.starting_code} in the "
            f"profile): check the rig's dut keys; way out: {REPROVISION_HINT} on a blank device"
        )
    if t.dut.offers("identity"):
        reported = t.dut.identify().serial_number
        if reported is not None and reported != serial:
            raise LedgerContradiction(
                f"the DUT reports serial {reported}, the rig's profile is for {serial}: "
                "the wrong device on this station, or the wrong rig file"
            )
    status = _status_or_blank(t)
    state = t.ledger.current(serial)
    if status is None:
        if state is not None and not reprovision:
            raise LedgerContradiction(
                f"device {serial} is not provisioned, but the ledger {where} has it at token count "
                f"{state.state.last_count} since {state.epoch_started} ({state.epoch_how}): the board was reflashed "
                f"or erased; way out: {REPROVISION_HINT}"
            )
        how = "re-provisioned a blank device (--reprovision)" if state is not None else "provisioned a blank device"
        t.provision(how, None)
        return how
    if state is None:
        return _adopt(t, status, resync)
    return _continue(t, state, status, resync)


def _adopt(t: DutTokens, status: DeviceStatus, resync: bool) -> str:
    """A provisioned device the ledger has never seen: adopted if it is in its profile's factory
    state (a device from the factory line), else tokens were entered elsewhere."""
    fresh = fresh_state(t.profile)
    diffs = status_differences(status, model_for(t.profile, fresh), t.clock.now(), streak=True)
    if diffs and not resync:
        raise LedgerContradiction(
            f"device {t.serial} is provisioned, the ledger {t.ledger.path} has no record of it, and it is not in its "
            f"profile's factory state ({'; '.join(diffs)}): tokens were entered elsewhere; way out: {RESYNC_HINT}"
        )
    t.ledger.new_epoch(
        t.identity(), "adopted (provisioned before the bench first saw it)", fresh, clock_offset_s=t.clock.offset_s
    )
    if diffs:
        t.distrust(fresh, "adopted with --resync: not in its factory state (" + "; ".join(diffs) + ")", None)
        rebaseline(t, "bring-up", "--resync")
        return "adopted and re-based (--resync)"
    return "adopted a device in its profile's factory state"


def _continue(t: DutTokens, state: LedgerState, status: DeviceStatus, resync: bool) -> str:
    t.clock.offset_s = state.clock_offset_s
    if state.pending is not None:
        _resolve_pending(t, state.pending)
        state = t.current()
        status = t.dut.status()
    model = model_for(t.profile, state.state)
    now = t.clock.now()
    ahead, behind = compare(status, model, now)
    if ahead and not resync:
        raise LedgerContradiction(
            f"device {t.serial} reports more than the bench ever sent it ({'; '.join(ahead)}; ledger {t.ledger.path}): "
            f"a token was entered behind the bench's back; way out: {RESYNC_HINT}"
        )
    if ahead or behind or resync or not state.trusted:
        why = (
            "--resync"
            if resync
            else f"the DUT did not keep what the ledger holds ({'; '.join(behind)})"
            if behind
            else state.why_untrusted or "the state was doubtful"
        )
        if behind:
            t.note(f"at bring-up {why}")
        t.distrust(state.state, why, None)
        rebaseline(t, "bring-up", why)
        return f"re-based the device with tokens: {why}"
    return f"continued from the ledger (epoch {state.epoch}: {state.epoch_how}, token count {state.state.last_count})"


def compare(status: DeviceStatus, m: DeviceModel, now: int) -> tuple[list[str], list[str]]:
    """What the DUT reports beyond the model (ahead: never sent by the bench) and short of it
    (behind: not kept), each a list of phrases naming both values."""
    ahead: list[str] = []
    behind: list[str] = []

    def both(what: str, dut: object, ledger: object, more: bool) -> None:
        (ahead if more else behind).append(f"{what} {dut} on the DUT, {ledger} in the ledger")

    if status.token_count is not None and status.token_count != m.last_count:
        both("token count", status.token_count, m.last_count, status.token_count > m.last_count)
    if status.payg == "disabled" and not m.payg_disabled:
        ahead.append("PAYG disabled on the DUT, not in the ledger")
    elif m.payg_disabled and status.payg != "disabled":
        behind.append(f"PAYG {status.payg} on the DUT, disabled in the ledger")
    elif not m.payg_disabled:
        want = m.seconds_left(now)
        if abs(status.seconds_left - want) > SECONDS_LEFT_TOLERANCE:
            both("credit (s left)", status.seconds_left, f"{want:.0f}", status.seconds_left > want)
    if status.invalid_streak is not None and status.invalid_streak != m.invalid_streak:
        both("invalid-token streak", status.invalid_streak, m.invalid_streak, status.invalid_streak > m.invalid_streak)
    if status.locked_s is not None:
        want_locked = max(0, m.locked_until - now)
        if abs(status.locked_s - want_locked) > SECONDS_LEFT_TOLERANCE:
            both("lockout (s left)", status.locked_s, want_locked, status.locked_s > want_locked)
    return ahead, behind


def _resolve_pending(t: DutTokens, p: Pending) -> None:
    """A run stopped between writing an entry ahead and recording its reply: find out whether the
    DUT took it. An entry predicted accepted is entered again: `already_used` says it had been
    taken (the state is the one predicted then), `accepted` that it had not (it is now). Any
    other entry changed at most the invalid streak: the state is doubtful until re-based."""
    t.note(f"a token entry of {p.at} (run {p.run_id}) has no recorded reply: resolving it")
    if p.predicted != "accepted":
        t.ledger.resolve(p.entry_id, "not known whether the DUT counted it: re-based")
        t.distrust(p.after, f"the reply to token {p.code} (predicted {p.predicted}) was never recorded", "bring-up")
        return
    session = t.new_session(
        model_for(t.profile, p.before), LedgerRecorder(t.ledger, t.serial, "bring-up: pending entry")
    )
    got = session.enter(p.code)
    if got.outcome.result == "already_used":
        t.ledger.resolve(p.entry_id, "the DUT had taken it (entered again: already used)")
        t.ledger.set_state(
            t.serial,
            p.after,
            trusted=True,
            why=None,
            action="resolved",
            note=f"token {p.code} had reached the DUT before the run stopped",
            test="bring-up",
        )
    elif got.outcome.result == "accepted":
        t.ledger.resolve(p.entry_id, "the DUT had not taken it (entered again: accepted now)")
    else:
        t.ledger.resolve(p.entry_id, f"entered again: {got.outcome.result}")
        t.distrust(
            session.model.snapshot(),
            f"token {p.code} entered again after the run stopped was {got.outcome.result}, neither taken nor new",
            "bring-up",
        )
