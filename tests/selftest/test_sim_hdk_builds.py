"""The published and the corrected HDK build (`hdk_fixed`) as the bench meets them: an in-process
virtual rig (simulated PSU powering the simulated HDK on a real pty) driven through the HDK
adapter (bench/dut/hdk.py). Each test runs the same steps on both builds and shows where the
published one breaks OpenPAYGO's device requirements and the corrected one does not.
"""

from __future__ import annotations

import tempfile
import time

import pytest

from bench.dut.adapter import Provisioning
from bench.dut.hdk import HdkAdapter
from bench.dut.link import SerialLink
from bench.dut.traffic import TrafficLog
from bench.openpaygo.tokens import TokenGenerator
from bench.secret import Secret
from bench.sim.virtual_rig import SimOptions, VirtualRig
from bench.timeout import sleep_until

KEY = "a29ab82edc5fbbc41ec9530f6dac86b1"
SC = 123456789
DAY = 86400


class SimHdk:
    def __init__(self, state_dir: str, fixed: bool) -> None:
        self.rig = VirtualRig(
            SimOptions.from_dict(
                {
                    "firmware": "hdk",
                    "hdk_fixed": fixed,
                    "lockout_unit_s": 1.0,
                    "psu_decay_s": 0.0,
                    "boot_delay_s": 0.01,
                    "state_dir": state_dir,
                }
            )
        )
        port = self.rig.start()["port"]
        self.link = SerialLink(port, log=TrafficLog(), poll_s=0.01).open()
        self.hdk = HdkAdapter(self.link, reply_timeout_s=1.0)
        self.rig.supply.set_voltage(1, 12.0)

    def on(self) -> None:
        self.link.drain()
        since = time.monotonic()
        self.rig.supply.set_output(1, True)
        self.hdk.wait_boot(2.0, since=since)

    def cycle(self, off_s: float = 0.03) -> float:
        """Power off for off_s, back on; the seconds the device was off, as the host saw them."""
        self.rig.supply.set_output(1, False)
        t0 = time.monotonic()
        sleep_until(t0 + off_s)
        self.on()
        return time.monotonic() - t0

    def provisioned(self) -> TokenGenerator:
        self.on()
        self.hdk.provision(Provisioning("1000001", Secret(KEY, "key"), SC, token_count=0))
        self.cycle()  # the HDK asks for a restart after setup
        return TokenGenerator(KEY, SC, count=0)

    def close(self) -> None:
        self.link.close()
        self.rig.stop()


@pytest.fixture
def build():
    made: list[SimHdk] = []
    dirs: list[tempfile.TemporaryDirectory] = []

    def make(fixed: bool) -> SimHdk:
        dirs.append(tempfile.TemporaryDirectory(prefix="paygo-hdk-"))
        made.append(SimHdk(dirs[-1].name, fixed))
        return made[-1]

    yield make
    for sim in made:
        sim.close()
    for d in dirs:
        d.cleanup()


@pytest.mark.parametrize("fixed", [False, True], ids=["published", "fixed"])
def test_credit_and_disable_through_a_power_cycle(build, fixed):
    """Credit through a power cycle: the published HDK loses it (activeUntil in RAM, the clock
    restarted); the fixed one keeps it, less the time it was off (its clock ran on). Then
    DISABLE_PAYG: only the fixed build still has it after a restart."""
    sim = build(fixed)
    gen = sim.provisioned()
    out = sim.hdk.enter_token(gen.add_days(1).code)
    assert out.result == "accepted" and DAY - 2 <= out.seconds_left <= DAY
    off_s = sim.cycle(1.2)
    s = sim.hdk.status()
    if fixed:
        assert s.payg == "active"
        assert DAY - off_s - 2 <= s.seconds_left <= DAY - 1
    else:
        assert (s.payg, s.seconds_left) == ("inactive", 0)
    assert sim.hdk.enter_token(gen.disable().code).kind == "DISABLE_PAYG"
    sim.cycle()
    assert sim.hdk.status().payg == ("disabled" if fixed else "inactive")


@pytest.mark.parametrize("fixed", [False, True], ids=["published", "fixed"])
def test_brute_force_lockout(build, fixed):
    """Three invalid tokens, then a valid one: the published HDK accepts it at once (no lockout).
    The fixed one answers INVALID (the protocol cannot say "locked"), also after a power cycle
    (the lock is in NVM), and accepts the same token once the 2 s lock has passed: it was never
    decoded or counted while locked."""
    sim = build(fixed)
    gen = sim.provisioned()
    for seed in range(3):
        assert sim.hdk.enter_token(gen.invalid(seed=seed)).result == "invalid"
    add = gen.add_days(1)
    if not fixed:
        assert sim.hdk.enter_token(add.code).result == "accepted"
        return
    assert sim.hdk.enter_token(add.code).result == "invalid"
    sim.cycle()
    assert sim.hdk.enter_token(add.code).result == "invalid"
    assert any("Token entry locked" in line for _, line in sim.link.events)
    deadline = time.monotonic() + 4.0
    while (out := sim.hdk.enter_token(add.code)).result == "invalid":
        assert time.monotonic() < deadline, "token entry still locked 4 s after a 2 s lock"
    assert out.result == "accepted" and DAY - 2 <= out.seconds_left <= DAY
