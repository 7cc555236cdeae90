"""Two credit defects of the reference firmware, switched on by name in FirmwareConfig:
`credit_runs_on_uptime` (the credit counted down by the firmware's uptime, so time spent
unpowered is never charged) and `add_counts_expired_days` (an ADD extends an expiry that has
passed, so the days spent expired are owed).

First line by line, with a simulated tick clock that drives both the MCU's uptime and the RTC
(a "power-off" drops the firmware while the clock runs on); then through the board on an
in-process virtual rig with a real power-off. Expected credit comes from the token values, not
from the firmware.
"""

from __future__ import annotations

import re
import tempfile
import time

import pytest

from bench.dut.adapter import Provisioning
from bench.dut.link import SerialLink
from bench.dut.reference import ReferenceAdapter
from bench.dut.traffic import TrafficLog
from bench.openpaygo.tokens import TokenGenerator
from bench.secret import Secret
from bench.sim.eeprom import Eeprom
from bench.sim.faults import Fault
from bench.sim.firmware import Firmware
from bench.sim.firmware_config import FirmwareConfig
from bench.sim.nvstate import RecordStore
from bench.sim.rtc import Rtc
from bench.sim.virtual_rig import SimOptions, VirtualRig
from bench.timeout import sleep_until

KEY = "a29ab82edc5fbbc41ec9530f6dac86b1"
SC = 123456789
SN = "SIM000001"
T0 = 1_700_000_000
DAY = 86400
PROV = f"PROV sn={SN} key={KEY} sc={SC} count=1 td=1"
STATUS = re.compile(r"OK payg=(\w+) active_until=(\d+) left=(\d+) count=\d+ invalid=\d+ locked=\d+")


class TickClock:
    def __init__(self) -> None:
        self.t = 5000.0

    def __call__(self) -> float:
        return self.t


class Device:
    """NVM, an RTC and a tick clock outliving firmware runs; `run` keeps it powered for a while
    (the board ticks the firmware), `off` keeps it unpowered (no firmware, the RTC runs on)."""

    def __init__(self, tmp_path, *faults: str) -> None:
        self.clock = TickClock()
        self.store = RecordStore(Eeprom(tmp_path / "e.bin", page_write_s=0))
        self.rtc = Rtc(start=T0, clock=self.clock)
        self.config = FirmwareConfig(faults=frozenset(faults))
        self.fw: Firmware | None = None
        self.boot()

    def boot(self) -> None:
        self.fw = Firmware(self.store, self.rtc, self.config, "power", clock=self.clock)

    def __call__(self, line: str) -> str:
        return self.fw.handle(line).line

    def run(self, seconds: int) -> None:
        for _ in range(seconds):
            self.clock.t += 1
            self.fw.tick()

    def off(self, seconds: float) -> None:
        self.fw = None
        self.clock.t += seconds
        self.boot()

    def status(self) -> tuple[str, int, int]:
        m = STATUS.fullmatch(self("STATUS"))
        assert m, self("STATUS")
        return m.group(1), int(m.group(2)), int(m.group(3))

    def now(self) -> int:
        return int(self.rtc.now())


@pytest.fixture
def gen() -> TokenGenerator:
    return TokenGenerator(KEY, SC, count=1)


# -- credit_runs_on_uptime ------------------------------------------------------------------------


@pytest.mark.parametrize("faulty", [False, True])
def test_credit_runs_on_uptime_moves_the_end_by_the_off_time(tmp_path, gen, faulty):
    """While powered both firmwares count the credit down alike. After 1000 s unpowered the good
    one has charged them (same end, 1000 s less left); the faulty one resumes from the seconds
    left it had, so its end moved 1000 s later. After a second power-off of 500 s the end has
    moved 1500 s in all. In every STATUS, active_until = RTC + left."""
    d = Device(tmp_path, *(["credit_runs_on_uptime"] if faulty else []))
    d(PROV)
    assert d(f"TOKEN {gen.add_days(1).code}").startswith("OK result=accepted")
    end = T0 + DAY
    assert d.status() == ("active", end, DAY)
    d.run(100)
    assert d.status() == ("active", end, DAY - 100)
    d.off(1000)
    moved = 1000 if faulty else 0
    assert d.status() == ("active", end + moved, end + moved - d.now())
    assert d.status()[2] == (DAY - 100 if faulty else DAY - 1100)
    d.run(10)
    d.off(500)
    moved = 1500 if faulty else 0
    assert d.status() == ("active", end + moved, end + moved - d.now())


@pytest.mark.parametrize("faulty", [False, True])
def test_credit_runs_on_uptime_ignores_the_rtc(tmp_path, gen, faulty):
    """The faulty credit does not follow the RTC at all: with the clock set two days ahead the
    good firmware's day of credit has expired, the faulty one's has the same seconds left (its
    end moved with the clock)."""
    d = Device(tmp_path, *(["credit_runs_on_uptime"] if faulty else []))
    d(PROV)
    d(f"TOKEN {gen.add_days(1).code}")
    d.run(60)
    d(f"RTC SET {d.now() + 2 * DAY}")
    payg, until, left = d.status()
    if faulty:
        assert (payg, left, until) == ("active", DAY - 60, d.now() + DAY - 60)
    else:
        assert (payg, left, until) == ("inactive", 0, T0 + DAY)


def test_credit_runs_on_uptime_expiry_and_new_tokens(tmp_path, gen):
    """The faulty credit runs out after its seconds of uptime (end = where the countdown hit 0),
    and a new token counts from now, as in a good firmware; provisioning starts at no credit."""
    d = Device(tmp_path, "credit_runs_on_uptime")
    d(PROV)
    assert d.status() == ("inactive", 0, 0)
    d.off(300)
    assert d.status() == ("inactive", 0, 0)
    d(f"TOKEN {gen.add_days(1).code}")
    start = d.now()
    d.fw.tick()
    d.clock.t += DAY + 5  # powered the whole time
    assert d.status() == ("inactive", start + DAY, 0)
    d(f"TOKEN {gen.add_days(1).code}")
    assert d.status() == ("active", d.now() + DAY, DAY)


def test_credit_runs_on_uptime_through_a_real_power_off(tmp_path):
    """Through the board, the real serial link and the simulated PSU: the credit end reported
    after the supply was off for ~1.5 s is later by the off time (within the RTC's whole
    seconds); a good device's end is where it was."""
    ends = {}
    for faulty in (False, True):
        build = FirmwareConfig(faults=frozenset({Fault.CREDIT_RUNS_ON_UPTIME} if faulty else ()))
        with tempfile.TemporaryDirectory(prefix="paygo-sim-") as state_dir:
            rig = VirtualRig(SimOptions(state_dir=state_dir, psu_decay_s=0.0, boot_delay_s=0.01, build=build))
            port = rig.start()["port"]
            link = SerialLink(port, log=TrafficLog(), poll_s=0.01).open()
            try:
                dut = ReferenceAdapter(link, reply_timeout_s=1.0)
                power_on(rig, dut, link)
                dut.provision(Provisioning(SN, Secret(KEY, "key"), SC))
                assert dut.enter_token(TokenGenerator(KEY, SC, count=1).add_days(1).code).result == "accepted"
                before = dut.status()
                rig.supply.set_output(1, False)
                off_from = time.monotonic()
                hold(1.5)
                power_on(rig, dut, link)
                off_s = time.monotonic() - off_from
                after = dut.status()
                assert after.payg == "active"
                assert abs(after.active_until - (dut.rtc_read() + after.seconds_left)) <= 1
                ends[faulty] = (after.active_until - before.active_until, off_s)
            finally:
                link.close()
                rig.stop()
    assert ends[False][0] == 0
    moved, off_s = ends[True]
    assert off_s - 1 <= moved <= off_s + 1, ends


def power_on(rig: VirtualRig, dut: ReferenceAdapter, link: SerialLink) -> None:
    link.drain()
    since = time.monotonic()
    rig.supply.set_voltage(1, 12.0)
    rig.supply.set_output(1, True)
    dut.wait_boot(2.0, since=since)


def hold(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    sleep_until(deadline)


# -- add_counts_expired_days ----------------------------------------------------------------------


@pytest.mark.parametrize("faulty", [False, True])
def test_add_counts_expired_days_owes_the_wait(tmp_path, gen, faulty):
    """SET 0 ends the credit now; 2 h later ADD 1 day: a good firmware counts the day from now,
    the faulty one from the passed expiry, so the 2 h spent expired are taken off the day."""
    d = Device(tmp_path, *(["add_counts_expired_days"] if faulty else []))
    d(PROV)
    d(f"TOKEN {gen.set_days(0).code}")
    expired_at = d.now()
    assert d.status() == ("inactive", expired_at, 0)
    d.run(7200)
    assert d(f"TOKEN {gen.add_days(1).code}").startswith("OK result=accepted")
    if faulty:
        assert d.status() == ("active", expired_at + DAY, DAY - 7200)
    else:
        assert d.status() == ("active", d.now() + DAY, DAY)


@pytest.mark.parametrize("faulty", [False, True])
def test_add_counts_expired_days_first_and_running_credit(tmp_path, gen, faulty):
    """What the defect leaves right, so only an expired credit shows it: a device that never had
    credit counts its first ADD from now, and an ADD on running credit extends its end."""
    d = Device(tmp_path, *(["add_counts_expired_days"] if faulty else []))
    d(PROV)
    d.run(50)
    d(f"TOKEN {gen.add_days(1).code}")
    first_end = d.now() + DAY
    assert d.status() == ("active", first_end, DAY)
    d.run(100)
    d(f"TOKEN {gen.add_days(2).code}")
    assert d.status() == ("active", first_end + 2 * DAY, 3 * DAY - 100)
