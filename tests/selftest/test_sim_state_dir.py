"""A simulated device that lives across simulator runs (`state_dir`): its NVM image and its
battery-backed RTC. First the state directory on its own (a wall clock moved by the test), then
the real simulator process started twice on one directory, stopped normally and SIGKILLed, with
the bench's serial link, reference adapter and PSU driver.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from bench.dut.adapter import Provisioning
from bench.dut.link import SerialLink
from bench.dut.reference import ReferenceAdapter
from bench.dut.traffic import TrafficLog
from bench.openpaygo.tokens import TokenGenerator
from bench.power.driver import Psu
from bench.rig import load_rig
from bench.secret import Secret
from bench.sim.eeprom import EEPROM_SIZE
from bench.sim.rtc import Rtc
from bench.sim.state_dir import RTC_FILE, RtcReading, StateDir
from bench.sim.virtual_rig import SimOptions, VirtualRig
from bench.station.virtual_rig import SimStartError, sim_options, start_virtual_rig
from bench.timeout import sleep_until

ROOT = Path(__file__).resolve().parents[2]
KEY = "a29ab82edc5fbbc41ec9530f6dac86b1"
SC = 123456789
SN = "SIM000001"


class Wall:
    def __init__(self, t: float = 1_750_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# -- the state directory ------------------------------------------------------------------------


def test_rtc_runs_on_with_its_drift_while_the_simulator_is_not_running(tmp_path):
    """Saved at a wall-clock time, restored 10000 s later: the reading advanced 10000 s at the
    saved drift (+500 ppm: 5 s more), and the backup registers came back."""
    wall = Wall()
    state = StateDir(tmp_path / "dev", EEPROM_SIZE, wall=wall)
    rtc = Rtc(start=1_000_000.0, drift_ppm=500.0)
    rtc.backup["r"] = 42.5
    state.save_rtc(rtc)
    saved = rtc.now()
    state.close()
    wall.t += 10_000
    state = StateDir(tmp_path / "dev", EEPROM_SIZE, wall=wall)
    restored = state.restore_rtc(drift_ppm=0.0, default_start=0.0)
    assert restored.now() == pytest.approx(saved + 10_005, abs=0.01)
    assert restored.backup == {"r": 42.5}
    state.close()


def test_rtc_never_runs_backwards_and_a_stopped_one_stays(tmp_path):
    """The host clock set back between runs does not take the RTC back; an RTC whose oscillator
    had stopped (no backup supply) is restored stopped at its reading."""
    assert RtcReading(500.0, 2000.0, 0.0).now(1000.0) == 500.0
    assert RtcReading(500.0, 2000.0, 0.0, running=False).now(9000.0) == 500.0
    wall = Wall()
    state = StateDir(tmp_path, EEPROM_SIZE, wall=wall)
    rtc = Rtc(start=777.0)
    rtc.stop()
    state.save_rtc(rtc)
    wall.t += 3600
    restored = state.restore_rtc(0.0, default_start=0.0)
    assert not restored.running and restored.now() == pytest.approx(777.0, abs=0.01)
    state.close()


def test_a_new_state_dir_starts_the_clock_at_the_default_and_saves_atomically(tmp_path):
    state = StateDir(tmp_path / "a" / "b", EEPROM_SIZE)  # created with its parents
    rtc = state.restore_rtc(0.0, default_start=123.0)
    assert rtc.now() == pytest.approx(123.0, abs=0.5)
    state.save_rtc(rtc)
    state.save_rtc(rtc)
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["lock", RTC_FILE]  # no temp files left
    data = json.loads((tmp_path / "a" / "b" / RTC_FILE).read_text())
    assert data["format"] == 1 and data["running"] is True and data["device_s"] == pytest.approx(123.0, abs=0.5)
    state.close()


@pytest.mark.parametrize(
    "content,problem",
    [
        ("{not json", "rtc.json is unreadable"),
        (
            '{"format": 1, "device_s": "x", "host_utc_s": 1, "drift_ppm": 0, "running": true}',
            "device_s is not a finite number",
        ),
        ('{"format": 2}', "not format 1"),
    ],
)
def test_an_unreadable_rtc_file_is_a_clear_error(tmp_path, content, problem):
    (tmp_path / RTC_FILE).write_text(content)
    state = StateDir(tmp_path, EEPROM_SIZE)
    with pytest.raises(ValueError, match=problem) as e:
        state.restore_rtc(0.0, default_start=0.0)
    assert str(tmp_path) in str(e.value) and "remove it" in str(e.value)
    state.close()


def test_a_foreign_nvm_image_is_refused_not_erased(tmp_path):
    (tmp_path / "eeprom.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match=r"eeprom.bin is 100 bytes, not the 4096-byte NVM image"):
        StateDir(tmp_path, EEPROM_SIZE)
    assert (tmp_path / "eeprom.bin").read_bytes() == b"\x00" * 100
    (tmp_path / "eeprom.bin").unlink()
    StateDir(tmp_path, EEPROM_SIZE).close()  # the refusal released the directory's lock


def test_one_state_dir_is_one_device_at_a_time(tmp_path):
    """A second simulator on the directory waits for the first to let go, and gives up with a
    clear error if it does not."""
    first = StateDir(tmp_path, EEPROM_SIZE)
    with pytest.raises(ValueError, match=r"in use by another simulator \(still after 0.2 s\)"):
        StateDir(tmp_path, EEPROM_SIZE, lock_wait_s=0.2)
    threading.Timer(0.2, first.close).start()
    StateDir(tmp_path, EEPROM_SIZE, lock_wait_s=5.0).close()


def test_an_uncreatable_state_dir_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="cannot create it"):
        StateDir(tmp_path / "file" / "dev", EEPROM_SIZE)


def test_the_unfixed_hdk_still_restarts_its_clock_from_a_state_dir(tmp_path):
    """The published HDK sets its RTC at every boot: a saved reading does not survive a boot."""
    rig = VirtualRig(SimOptions(firmware="hdk", state_dir=str(tmp_path), psu_decay_s=0.0, boot_delay_s=0.01))
    rig.start()
    rig.supply.set_voltage(1, 12.0)
    rig.supply.set_output(1, True)
    deadline = time.monotonic() + 2.0
    while rig.board.boots == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    rig.stop()
    assert json.loads((tmp_path / RTC_FILE).read_text())["device_s"] < 1_609_459_200 + 60


# -- the rig file ---------------------------------------------------------------------------------


def test_rig_keys_reach_the_simulator(tmp_path):
    """sim_options maps the rig's [sim] build keys, and its state_dir when it gives one (else the
    run's temporary directory); every shipped virtual rig for these builds starts."""
    for name, want in (
        (
            "no-reset-virtual",
            {
                "hide_capabilities": ["factory_reset", "rtc_set"],
                "lockout_unit_s": 1.0,
                "hdk_fixed": False,
                "firmware": "reference",
            },
        ),
        ("hdk-fixed-virtual", {"hide_capabilities": [], "lockout_unit_s": 1.0, "hdk_fixed": True, "firmware": "hdk"}),
        ("hdk-virtual", {"lockout_unit_s": 1.0, "hdk_fixed": False, "firmware": "hdk"}),
    ):
        rig = load_rig(ROOT / "docs" / "rigs" / f"{name}.toml")
        opts = sim_options(rig, str(tmp_path / name))
        assert {k: opts[k] for k in want} == want, name
        assert opts["state_dir"] == str(tmp_path / name)
        virtual = VirtualRig(SimOptions.from_dict(opts))
        virtual.start()
        virtual.stop()
    lasting = tmp_path / "lasting.toml"
    lasting.write_text('[station]\nid = "x"\n[sim]\nstate_dir = "devices/one"\n')
    assert sim_options(load_rig(lasting), str(tmp_path / "tmp"))["state_dir"] == str(tmp_path / "devices" / "one")


# -- the real simulator process, twice on one state dir ---------------------------------------------


class Run:
    """One simulator process on the state dir, powered, with the bench's link, adapter and PSU."""

    def __init__(self, state_dir: Path, **options) -> None:
        self.proc = start_virtual_rig(
            {
                "psu_decay_s": 0.0,
                "boot_delay_s": 0.01,
                "state_dir": str(state_dir),
                "hide_capabilities": ["factory_reset"],
                **options,
            }
        )
        self.link = SerialLink(self.proc.port, log=TrafficLog(), poll_s=0.01).open()
        self.psu = Psu.open(self.proc.visa, "paygo-sim", self.proc.channel)
        self.dut = ReferenceAdapter(self.link, reply_timeout_s=2.0)
        self.psu.set_voltage(12.0)
        since = time.monotonic()
        self.psu.output(True)
        self.banner = self.dut.wait_boot(5.0, since=since)

    def close(self, kill: bool = False) -> None:
        self.link.close()
        self.psu.close()
        if kill:
            os.kill(self.proc.process.pid, signal.SIGKILL)
            self.proc.process.wait(5)
        self.proc.stop()


def test_device_keeps_provisioning_tokens_and_clock_across_runs(tmp_path):
    """Run 1 provisions (the device cannot be reset), enters a token and sets the clock a year
    ahead; run 2 finds the same device: provisioned, count and credit kept, the clock a year
    ahead plus the time between the runs, by the host's wall clock."""
    state = tmp_path / "device"
    run = Run(state)
    try:
        assert run.banner.fields["nvm"] == "blank"
        run.dut.provision(Provisioning(SN, Secret(KEY, "key"), SC))
        assert run.dut.enter_token(TokenGenerator(KEY, SC, count=1).add_days(1).code).result == "accepted"
        before = run.dut.status()
        ahead = int(time.time()) + 365 * 86400
        run.dut.rtc_set(ahead)
        set_at = time.time()
    finally:
        run.close()
    run = Run(state)
    try:
        assert run.banner.fields["nvm"] == "ok"
        assert run.dut.identify().serial_number == SN
        after = run.dut.status()
        assert (
            (after.token_count, after.active_until)
            == (before.token_count, before.active_until)
            == (2, before.active_until)
        )
        assert run.dut.rtc_read() == pytest.approx(ahead + (time.time() - set_at), abs=1.5)
    finally:
        run.close()


def test_a_killed_simulator_leaves_a_usable_device(tmp_path):
    """SIGKILL in the middle of a token's NVM write (pages of 60 ms): the next run boots from the
    record before the token (A/B: the torn copy refused), the clock where it should be; the token
    is then accepted. A second SIGKILL right after an accepted token: the token is kept."""
    state = tmp_path / "device"
    run = Run(state, nvm_page_write_ms=60.0)
    gen = TokenGenerator(KEY, SC, count=1)
    token = gen.add_days(1)
    try:
        run.dut.provision(Provisioning(SN, Secret(KEY, "key"), SC))
        ahead = int(time.time()) + 1000
        run.dut.rtc_set(ahead)
        set_at = time.time()
        run.link.send(f"TOKEN {token.code}")  # no reply awaited: killed during the write
        deadline = time.monotonic() + 0.15
        sleep_until(deadline)
    finally:
        run.close(kill=True)
    run = Run(state)
    try:
        assert run.banner.fields["nvm"] in ("ok", "recovered")
        assert run.dut.status().token_count == 1
        assert run.dut.rtc_read() == pytest.approx(ahead + (time.time() - set_at), abs=1.5)
        assert run.dut.enter_token(token.code).result == "accepted"
    finally:
        run.close(kill=True)
    run = Run(state)
    try:
        assert run.banner.fields["nvm"] == "ok"
        assert run.dut.status().token_count == token.count
        assert run.dut.enter_token(token.code).result == "already_used"
    finally:
        run.close()


def test_two_simulators_cannot_share_a_device(tmp_path):
    run = Run(tmp_path / "device")
    try:
        with pytest.raises(SimStartError, match="is in use by another simulator"):
            start_virtual_rig({"state_dir": str(tmp_path / "device")})
    finally:
        run.close()
