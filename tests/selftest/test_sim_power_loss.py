"""The simulated board through power loss: its RTC (backed or not), brown-out and power cuts.

An in-process virtual rig (simulated PSU powering the simulated board) driven through the real
serial link and the reference adapter; each board-layer fault of the catalogue that concerns
power loss is shown to do what its description says, and the good board not to.
"""

from __future__ import annotations

import tempfile
import time

import pytest

from bench.dut.adapter import Provisioning
from bench.dut.errors import WaitAborted
from bench.dut.link import SerialLink
from bench.dut.reference import ReferenceAdapter
from bench.dut.traffic import TrafficLog
from bench.openpaygo.tokens import TokenGenerator
from bench.secret import Secret
from bench.sim.board import RTC_RESET_EPOCH
from bench.sim.virtual_rig import SimOptions, VirtualRig
from bench.timeout import sleep_until

T0 = 1_800_000_000
KEY = "a29ab82edc5fbbc41ec9530f6dac86b1"
SC = 123456789


class SimRig:
    """The reference firmware on an in-process virtual rig, powered by its simulated PSU."""

    def __init__(self, state_dir: str, **options) -> None:
        options = {"psu_decay_s": 0.0, "boot_delay_s": 0.01, **options}
        self.rig = VirtualRig(SimOptions.from_dict({"state_dir": state_dir, **options}))
        port = self.rig.start()["port"]
        self.link = SerialLink(port, log=TrafficLog(), poll_s=0.01).open()
        self.dut = ReferenceAdapter(self.link, reply_timeout_s=1.0)
        self.supply = self.rig.supply
        self.supply.set_voltage(1, 12.0)

    def cut_seen(self) -> str | None:
        """For SerialLink.abort_when: stop waiting for a reply once the output is off."""
        return None if self.supply.output(1) else "the output was cut"

    def on(self):
        self.link.drain()
        since = time.monotonic()
        self.supply.set_output(1, True)
        return self.dut.wait_boot(2.0, since=since)

    def off(self, hold_s: float = 0.03) -> None:
        self.supply.set_output(1, False)
        deadline = time.monotonic() + hold_s
        sleep_until(deadline)

    def close(self) -> None:
        self.link.close()
        self.rig.stop()


@pytest.fixture
def sim_rig():
    made: list[SimRig] = []

    def make(**options) -> SimRig:
        state_dir = tempfile.mkdtemp(prefix="paygo-sim-")
        made.append(SimRig(state_dir, **options))
        return made[-1]

    yield make
    for rig in made:
        rig.close()


# -- the RTC through power loss -----------------------------------------------------------------


@pytest.mark.parametrize("fault", [None, "rtc_lost_on_power_loss"])
def test_rtc_without_backup_restarts_from_its_epoch(sim_rig, fault):
    """rtc_lost_on_power_loss: every power-on restarts the RTC at 2021-01-01; a soft restart
    (NVM ERASE) does not. The good board's RTC counts on through the cut."""
    r = sim_rig(faults=[fault] if fault else [])
    r.on()
    r.dut.rtc_set(T0)
    r.dut.factory_reset(2.0)  # a soft restart: the supply never went
    assert T0 <= r.dut.rtc_read() < T0 + 2
    r.off()
    r.on()
    t = r.dut.rtc_read()
    if fault:
        assert RTC_RESET_EPOCH <= t < RTC_RESET_EPOCH + 2
    else:
        assert T0 <= t < T0 + 3


@pytest.mark.parametrize("fault", [None, "rtc_stopped_unpowered"])
def test_rtc_with_flat_cell_stops_while_unpowered(sim_rig, fault):
    """rtc_stopped_unpowered: the RTC stands still for the time the board is off and resumes
    from there; the good board's RTC counts the off time."""
    r = sim_rig(faults=[fault] if fault else [], rtc_subsecond=True)
    r.on()
    before = r.dut.rtc_read()
    host0 = time.monotonic()
    r.off(hold_s=0.6)
    r.on()
    advance = r.dut.rtc_read() - before
    elapsed = time.monotonic() - host0
    if fault:
        assert advance < elapsed - 0.5
    else:
        assert advance == pytest.approx(elapsed, abs=0.05)


# -- power cuts from the PSU's NVM trigger --------------------------------------------------------


def provisioned(r: SimRig) -> TokenGenerator:
    r.on()
    r.dut.provision(Provisioning("SIM000001", Secret(KEY, "key"), SC))
    return TokenGenerator(KEY, SC, count=1)


def test_nvm_trigger_cuts_inside_the_write_and_the_board_recovers(sim_rig):
    """Armed for the 2nd page write, the PSU cuts while the token's record is being stored: no
    reply, the output off, the rail at 0 V at once; back on, the board boots reset=power and
    `nvm=recovered` (the torn copy rejected) in the state before the token."""
    r = sim_rig(psu_decay_s=5.0)  # the trigger's cut collapses the rail, whatever the decay
    gen = provisioned(r)
    before = r.dut.status()
    r.supply.arm_nvm_cut(1, 2)
    with pytest.raises(WaitAborted), r.link.abort_when(r.cut_seen):
        r.dut.enter_token(gen.add_days(1).code)
    assert not r.supply.output(1) and r.supply.voltage(1) == 0.0
    banner = r.on()
    assert banner.fields["reset"] == "power" and banner.fields["nvm"] == "recovered"
    assert r.dut.status() == before


def test_hard_cut_resets_the_board_even_if_the_supply_is_back_at_once(sim_rig):
    """A collapse trips the brown-out detector at that instant: switching the output back on
    before the board loop looks again still gives a fresh boot (RAM lost, banner)."""
    r = sim_rig()
    r.on()
    boots = r.rig.board.boots
    r.link.drain()
    since = time.monotonic()
    r.supply.cut(1)
    r.supply.set_output(1, True)
    assert r.dut.wait_boot(2.0, since=since).fields["reset"] == "power"
    assert r.rig.board.boots == boots + 1


def test_an_off_period_the_board_loop_did_not_see_still_resets_it(sim_rig):
    """The brown-out detector watches the rail, not the board loop: an output switched off and
    on again between two passes of the loop (as a loaded host may leave it unscheduled through a
    short power cycle) still gives a fresh boot, reporting a power-on reset (the rail reached 0 V)."""
    r = sim_rig(psu_decay_s=0.001)  # a decay, not a collapse: the board must see the rail low
    r.on()
    boots = r.rig.board.boots
    r.link.drain()
    since = time.monotonic()
    r.supply.set_output(1, False)
    while r.supply.voltage(1) > 0.0:  # about 1 ms: shorter than the board loop's 2 ms
        pass
    r.supply.set_output(1, True)
    assert r.dut.wait_boot(2.0, since=since).fields["reset"] == "power"
    assert r.rig.board.boots == boots + 1


def test_a_cut_after_the_last_page_keeps_the_new_state_and_loses_the_reply(sim_rig):
    """Cut right after the record's last page: stored (new state after the boot), no reply."""
    r = sim_rig()
    gen = provisioned(r)
    token = gen.add_days(1)
    pages = 0
    for k in range(1, 64):
        r.supply.arm_nvm_cut(1, k)
        try:
            with r.link.abort_when(r.cut_seen):
                r.dut.enter_token(token.code)
        except WaitAborted:
            r.on()
            if r.dut.status().token_count == token.count:
                pages = k
                break
            continue
        raise AssertionError(f"no cut at {k} pages and the token was never stored")
    assert pages >= 4, "the record should span several pages"
    assert r.dut.enter_token(token.code).result == "already_used"


# -- brown-out ----------------------------------------------------------------------------------


def settle(seconds: float = 0.02) -> None:
    deadline = time.monotonic() + seconds
    sleep_until(deadline)


def test_supply_dip_below_the_threshold_resets_the_board_as_a_brown_out(sim_rig):
    """The good board (threshold 3.0 V): at 2.4 V it is held in reset and answers nothing; back
    at 12 V it boots with reset=brownout (the supply never reached 0 V), its NVM intact."""
    r = sim_rig()
    gen = provisioned(r)
    r.supply.set_voltage(1, 2.4)
    settle()
    deadline = time.monotonic() + 0.2
    with pytest.raises(WaitAborted), r.link.abort_when(lambda: "down" if time.monotonic() > deadline else None):
        r.dut.enter_token(gen.add_days(1).code)
    r.link.drain()
    since = time.monotonic()
    r.supply.set_voltage(1, 12.0)
    banner = r.dut.wait_boot(2.0, since=since)
    assert (banner.fields["reset"], banner.fields["nvm"]) == ("brownout", "ok")
    assert r.dut.status().token_count == 1


def test_fault_no_brownout_reset_runs_and_garbles_its_writes_below_the_threshold(sim_rig):
    """no_brownout_reset: at 2.4 V the MCU still runs and accepts a token, but the EEPROM
    programs garbage there: after the next power-on the record it wrote fails its CRC and the
    device is back before the token it acknowledged; at 1.5 V (under 60 % of 3.0 V) it stops."""
    r = sim_rig(faults=["no_brownout_reset"])
    gen = provisioned(r)
    token = gen.add_days(1)
    r.supply.set_voltage(1, 2.4)
    settle()
    out = r.dut.enter_token(token.code)
    assert (out.result, out.count) == ("accepted", token.count)
    r.supply.set_voltage(1, 1.5)
    settle()
    r.link.drain()
    since = time.monotonic()
    r.supply.set_voltage(1, 12.0)
    banner = r.dut.wait_boot(2.0, since=since)
    assert (banner.fields["reset"], banner.fields["nvm"]) == ("brownout", "recovered")
    assert r.dut.status().token_count == 1  # the acknowledged token is gone
    assert r.dut.enter_token(token.code).result == "accepted"
