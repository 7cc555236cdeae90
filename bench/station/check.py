"""`paygo-bench check --rig FILE`: is this station ready, without running a test?

First the rig file, with every error it has at once (each key checked on its own, so one typo
does not hide the next; the checks between keys, such as a real DUT's identity, only once every
key reads), then the instruments the way a run's bring-up reaches them: the PSU's `*IDN?`, the
serial port opened (exclusively on a real rig), the DUT powered from a measured-off supply
until its boot banner, its status asked, and the supply left in its safe state (off), confirmed
by measurement. On the virtual rig the simulator is started for the check and stopped after it.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench.rig import Rig, RigError, load_rig
from bench.rig.schema import _SCHEMA, _SECTIONS
from bench.rig.values import _read_section, _unknown


@dataclass(frozen=True)
class Finding:
    ok: bool
    text: str


def rig_file_errors(path: Path) -> list[str]:
    """Every error of the rig file: each key's own, then (when every key reads) the first error
    between keys. [] when it loads."""
    where = os.fspath(path)
    try:
        doc = tomllib.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        try:
            load_rig(path)
        except RigError as e:
            return [str(e)]
        return []
    errors: list[RigError] = [_unknown(where, name, _SECTIONS, "section") for name in doc if name not in _SCHEMA]
    for name in _SECTIONS:
        _read_section(where, doc, name, errors)
    if not errors:
        try:
            load_rig(path)
        except RigError as e:
            errors.append(e)
    return [str(e) for e in errors]


def check_instruments(rig: Rig, say: Callable[[Finding], None]) -> bool:
    """Reach the rig's PSU, port and DUT as a run's bring-up does; say each finding. True if all
    answered and the supply ended off, confirmed."""
    from bench.dut.errors import DutError, PortOpenError
    from bench.dut.link import SerialLink
    from bench.dut.registry import ADAPTERS
    from bench.power.driver import Psu
    from bench.power.errors import InstrumentError
    from bench.station.labgrid_place import PlaceError, held_place
    from bench.station.power_control import PowerControl
    from bench.station.virtual_rig import SimStartError, sim_options, start_virtual_rig

    sim = None
    with tempfile.TemporaryDirectory(prefix="paygo-check-") as state, ExitStack() as place_hold:
        try:
            if rig.virtual:
                try:
                    sim = start_virtual_rig(sim_options(rig, state))
                except SimStartError as e:
                    say(Finding(False, f"virtual rig: the simulator did not start: {e}"))
                    return False
                port, visa, channel = sim.port, sim.visa, sim.channel
                say(Finding(True, f"virtual rig: simulator started (port {port}, PSU {visa})"))
            else:
                port, visa, channel = rig.link.port, rig.psu.resource, rig.psu.channel
                if rig.labgrid.place:  # held for the check, released at its end
                    try:
                        port, visa = place_hold.enter_context(held_place(rig))
                    except PlaceError as e:
                        say(Finding(False, str(e)))
                        return False
                    say(Finding(True, f"labgrid place {rig.labgrid.place}: acquired (serial {port}, PSU {visa})"))
            try:
                psu = Psu.open(visa, rig.psu.profile, channel, timeout_s=rig.psu.timeout_s)
                say(Finding(True, f"PSU at {visa}: {psu.idn()} (profile {rig.psu.profile}, channel {channel})"))
                psu.set_voltage(rig.psu.voltage)  # what the run sets, before it switches anything on
                psu.set_current_limit(rig.psu.current_limit)
            except InstrumentError as e:
                say(Finding(False, f"PSU: {e}"))
                return False
            try:
                try:
                    link = SerialLink(port, rig.link.baud, exclusive=not rig.virtual).open()
                except PortOpenError as e:
                    say(Finding(False, str(e)))
                    return False
                try:
                    say(Finding(True, f"serial port {port}: opened at {rig.link.baud} baud"))
                    adapter = ADAPTERS[rig.dut.adapter](link, rig.link.reply_timeout_s, rig.dut.capabilities or None)
                    power = PowerControl(psu, adapter, link, rig)
                    return _check_dut(rig, adapter, power, say, (DutError, InstrumentError))
                finally:
                    link.close()
            finally:
                psu.close()
        finally:
            if sim is not None:
                sim.stop()


def _check_dut(rig: Rig, adapter, power, say, errors: tuple[type[Exception], ...]) -> bool:
    from bench.dut.errors import DeviceRefused

    ok = True
    try:
        power.off()
        banner = adapter.parse_banner(power.on() or "")
        say(Finding(True, f"DUT ({rig.dut.adapter} adapter): booted: {banner.line}"))
        try:
            status = adapter.status()
            say(Finding(True, f"DUT: status answered, token count {status.token_count}"))
        except DeviceRefused as e:  # it answered, in its protocol: the link works (a blank DUT is provisioned by a run)
            say(Finding(True, f"DUT: answered, refusing its status: {e}"))
    except errors as e:
        say(Finding(False, f"DUT ({rig.dut.adapter} adapter): {e}"))
        ok = False
    try:
        off = power.off()
        volts = off.trace[-1][1] if off.trace else float("nan")
        say(Finding(True, f"supply left off, confirmed: rail at {volts:.3f} V, the PSU reports its output off"))
    except errors as e:
        say(Finding(False, f"supply NOT confirmed off: {e}"))
        ok = False
    return ok
