"""Bringing the rig up and keeping it answering: the rig as one session a run's tests share.

Bring-up powers the DUT from a measured-off state (so every run starts from a known power
state), parses its boot banner with the DUT's adapter, reads its identity once for the record
and opens its ledger. A DUT found off or silent at the start of a test is switched on, or power
cycled once; one that still says nothing means the rig is broken, not that the device failed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.dut.adapter import Banner, DeviceAdapter
from bench.dut.errors import DutError, LinkSilent, RigBroken
from bench.dut.link import SerialLink
from bench.dut.registry import ADAPTERS
from bench.power.driver import Psu
from bench.rig import Rig
from bench.station.dut_tokens import DutTokens
from bench.station.ledger import Ledger, LedgerError, default_ledger_path
from bench.station.ledger_recorder import NoKnownState
from bench.station.power_control import PowerControl
from bench.station.reconcile import LedgerContradiction, bring_up


class BringUpStopped(Exception):
    """The run cannot go on with this DUT (its ledger cannot be used or contradicts it): one line
    naming the serial, what disagrees and the way out. A bench error, never a device failure."""


@dataclass
class RigSession:
    rig: Rig
    link: SerialLink
    psu: Psu
    adapter: DeviceAdapter
    power: PowerControl
    first_banner: Banner  # the boot banner seen at bring-up, parsed by the adapter
    psu_idn: str
    tokens: DutTokens  # the DUT's token state across the run (fresh per test, or from the ledger)
    ledger_bring_up: str  # what bring-up did with the ledger (one line)
    identity: Any = None  # the DUT's reply to its ID command at bring-up, if it has one and answered

    def close(self) -> None:
        self.tokens.ledger.close()


def open_rig_session(
    rig: Rig,
    link: SerialLink,
    psu: Psu,
    run_dir: Path,
    reports: Path,
    *,
    resync: bool = False,
    reprovision: bool = False,
) -> RigSession:
    """PSU identified, DUT powered from a measured-off state, boot banner seen, ledger opened
    (a DUT without factory reset reconciled with it). Raises RigBroken if the DUT does not boot,
    BringUpStopped if its ledger says the bench cannot judge it."""
    idn = psu.idn()
    adapter_cls = ADAPTERS.get(rig.dut.adapter)
    if adapter_cls is None:  # the rig loader checks the name against the registry; a rig built in code may not
        raise ValueError(f"rig: dut.adapter: no adapter named {rig.dut.adapter!r}")
    adapter = adapter_cls(link, rig.link.reply_timeout_s, rig.dut.capabilities or None)
    power = PowerControl(psu, adapter, link, rig)
    power.off()
    try:
        banner = adapter.parse_banner(power.on() or "")
    except LinkSilent as e:
        raise RigBroken(f"the DUT did not boot at bring-up: {e}") from None
    identity = None
    if adapter.offers("identity"):  # for the run record: what the DUT says it is, read once
        try:
            identity = adapter.identify()
        except DutError as e:  # test_identity judges the reply; bring-up only records it
            link.log.note(f"identity not read at bring-up: {e}")
    tokens, how = _open_ledger(rig, adapter, power, run_dir, reports, resync, reprovision)
    return RigSession(rig, link, psu, adapter, power, banner, idn, tokens, how, identity)


def _open_ledger(
    rig: Rig, adapter: DeviceAdapter, power: PowerControl, run_dir: Path, reports: Path, resync: bool, reprovision: bool
) -> tuple[DutTokens, str]:
    """Open the device ledger; a DUT without factory reset is reconciled with it now (provisioned
    if blank): the bench cannot judge a device whose token history it does not know."""
    path = default_ledger_path(rig, run_dir, reports)
    try:
        ledger = Ledger(path, run_dir.name)
    except LedgerError as e:
        raise BringUpStopped(f"ledger: {e}") from None
    tokens = DutTokens(rig.dut, ledger, adapter, power.cycle, rig.link.boot_timeout_s)
    if tokens.fresh:
        how = f"each test factory-resets the DUT (ledger {path})"
    else:
        try:
            how = bring_up(tokens, resync=resync, reprovision=reprovision)
        except (LedgerContradiction, NoKnownState) as e:
            ledger.close()
            raise BringUpStopped(f"ledger: {e}") from None
    adapter.link.log.note(f"ledger: {how}")
    return tokens, how


def ensure_alive(session: RigSession, note: Callable[[str], None] | None = None) -> None:
    """Power the DUT on if a previous test left it off; recover a hung DUT with one power cycle."""
    adapter, power = session.adapter, session.power
    note = note or session.link.log.note
    if not power.output_on():
        note("PSU output found off at test start: switching on")
        try:
            power.on()
        except LinkSilent:
            note("no boot banner after switching on")
    try:
        adapter.ping()
        return
    except LinkSilent:
        note("DUT silent at test start: power cycling once to recover")
    try:
        power.cycle()
        adapter.ping()
    except LinkSilent as e:
        raise RigBroken(f"the DUT does not answer even after a power cycle: {e}") from None
