"""A reference-firmware build without some capabilities (`hide_capabilities`): left out of ID's
caps=, their commands unknown (`ERR 404`, docs/protocol.md "Capabilities"), everything else as
in the full build. Line by line through the firmware, then over a real pty through the
reference adapter, as the bench meets such a device.
"""

from __future__ import annotations

import re
import tempfile
import time

import pytest

from bench.dut.adapter import Provisioning
from bench.dut.errors import DeviceRefused
from bench.dut.link import SerialLink
from bench.dut.reference import ReferenceAdapter
from bench.dut.traffic import TrafficLog
from bench.openpaygo.tokens import TokenGenerator
from bench.secret import Secret
from bench.sim.capabilities import ESSENTIAL, HIDEABLE
from bench.sim.eeprom import Eeprom
from bench.sim.firmware import Firmware
from bench.sim.firmware_config import FirmwareConfig
from bench.sim.nvstate import RecordStore
from bench.sim.rtc import Rtc
from bench.sim.virtual_rig import SimOptions, VirtualRig
from bench.station.virtual_rig import SimStartError, start_virtual_rig

KEY = "a29ab82edc5fbbc41ec9530f6dac86b1"
SC = 123456789
SN = "SIM000001"
PROV = f"PROV sn={SN} key={KEY} sc={SC}"
FULL = {"rtc_subsecond": True, "extended_tokens": True, "metrics_mode": "off"}


class Device:
    def __init__(self, tmp_path, hide=(), **config) -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.store = RecordStore(Eeprom(tmp_path / "e.bin", page_write_s=0))
        self.rtc = Rtc(start=1_700_000_000)
        self.config = FirmwareConfig(hide_capabilities=frozenset(hide), **{**FULL, **config})
        self.boot()

    def boot(self) -> None:
        self.fw = Firmware(self.store, self.rtc, self.config, "power")

    def __call__(self, line: str) -> str:
        return self.fw.handle(line).line

    def caps(self) -> list[str]:
        return re.search(r" caps=(\S+)", self("ID")).group(1).split(",")


def refused(reply: str, command: str) -> bool:
    return reply == f"ERR 404 unknown command '{command}'"


# Each hideable capability: requests that need it, with the command its 404 names.
NEEDS = {
    "rtc": [("RTC", "RTC")],
    "rtc_set": [("RTC SET 1800000000", "RTC SET"), ("rtc set 5", "RTC SET")],
    "nvm": [("NVM", "NVM")],
    "factory_reset": [("NVM ERASE", "NVM ERASE"), ("NVM ERASE NOW", "NVM ERASE")],
    "metrics_bridge": [("METRICS EXPORT", "METRICS EXPORT"), ("METRICS IMPORT b64=e30=", "METRICS IMPORT")],
    "metrics_report": [
        ("METRICS CONFIG", "METRICS CONFIG"),
        ("METRICS REPORT", "METRICS REPORT"),
        ("METRICS STATUS", "METRICS STATUS"),
        ("METRICS FORMAT", "METRICS FORMAT"),
    ],
    "rtc_subsecond": [],
    "extended_tokens": [],
}


def test_every_hideable_capability_is_covered_here():
    assert set(NEEDS) == set(HIDEABLE)
    assert set(ESSENTIAL) == {"token", "status"}


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_a_hidden_capability_is_not_listed_and_its_commands_are_unknown(tmp_path, name):
    """Hiding one capability takes out exactly it: ID lists all the others, its requests get
    404, and the same requests on the full build do not."""
    full, lean = Device(tmp_path / "full"), Device(tmp_path / "lean", hide={name})
    for d in (full, lean):
        assert d(PROV) == f"OK sn={SN}"
    # metrics_report is listed only by a build that reports by itself, which cannot hide it
    assert (name in full.caps()) == (name != "metrics_report")
    assert lean.caps() == [c for c in full.caps() if c != name]
    for request, command in NEEDS[name]:
        assert refused(lean(request), command), lean(request)
        assert not full(request).startswith("ERR 404"), full(request)


def test_without_rtc_subsecond_the_clock_reads_whole_seconds(tmp_path):
    assert re.fullmatch(r"OK t=\d+\.\d{3}", Device(tmp_path / "a")("RTC"))
    assert re.fullmatch(r"OK t=\d+", Device(tmp_path / "b", hide={"rtc_subsecond"})("RTC"))


def test_without_extended_tokens_a_12_digit_token_is_the_wrong_length(tmp_path):
    gen = TokenGenerator(KEY, SC, count=1, extended=True)
    token = gen.add_days(1).code
    full, lean = Device(tmp_path / "a"), Device(tmp_path / "b", hide={"extended_tokens"})
    for d in (full, lean):
        d(PROV)
    assert full(f"TOKEN {token}").startswith("OK result=accepted")
    assert lean(f"TOKEN {token}") == "ERR 400 a token has 9 digits"


def test_a_command_with_every_form_hidden_is_unknown_as_a_whole(tmp_path):
    d = Device(tmp_path, hide={"rtc", "rtc_set"})
    assert refused(d("RTC"), "RTC") and refused(d("RTC SET 5"), "RTC") and refused(d("RTC FOO"), "RTC")
    d = Device(tmp_path / "n", hide={"nvm"})
    assert refused(d("NVM"), "NVM")
    assert d("NVM ERASE") == "OK"  # factory reset is its own capability
    assert d("NVM FOO").startswith("ERR 400 usage")


def test_no_reset_no_clock_build_provisions_once_and_keeps_the_rest(tmp_path):
    """The production-like build: PROV on the blank device works, the device cannot be reset or
    have its clock set, and tokens, status, RTC readout and NVM info work as in the full build."""
    d = Device(tmp_path, hide={"factory_reset", "rtc_set"})
    assert d.caps() == ["token", "status", "rtc", "rtc_subsecond", "nvm", "metrics_bridge", "extended_tokens"]
    assert d(PROV) == f"OK sn={SN}"
    assert d(f"TOKEN {TokenGenerator(KEY, SC, count=1).add_days(1).code}").startswith("OK result=accepted")
    assert d("STATUS").startswith("OK payg=active")
    assert d("RTC").startswith("OK t=") and d("NVM").startswith("OK slot=")
    assert refused(d("NVM ERASE"), "NVM ERASE") and refused(d("RTC SET 5"), "RTC SET")
    d.boot()
    assert d("PROV " + PROV[5:]) == "ERR 409 already provisioned"
    assert re.search(r" sn=SIM000001 ", d("ID"))


@pytest.mark.parametrize(
    "hide,message",
    [
        ({"token"}, "hide_capabilities: 'token' cannot be hidden"),
        ({"status"}, "hide_capabilities: 'status' cannot be hidden"),
        ({"factory_rest"}, "hide_capabilities: unknown capability 'factory_rest'; known: token, status, rtc"),
    ],
)
def test_hiding_what_cannot_be_hidden_is_refused_at_build_time(hide, message):
    with pytest.raises(ValueError) as e:
        FirmwareConfig(hide_capabilities=frozenset(hide))
    assert str(e.value).startswith(message), e.value


@pytest.mark.parametrize("hide,mode", [({"metrics_report"}, "direct"), ({"metrics_bridge"}, "bridge")])
def test_a_reporting_build_keeps_what_its_sessions_use(hide, mode):
    with pytest.raises(ValueError, match=f"hide_capabilities: '{next(iter(hide))}' hidden"):
        FirmwareConfig(hide_capabilities=frozenset(hide), metrics_mode=mode)


def test_simulator_refuses_a_bad_build_with_a_clear_error():
    """Through the simulator process: the error names the option, no traceback."""
    with pytest.raises(SimStartError) as e:
        start_virtual_rig({"hide_capabilities": ["rtc", "tokens"]})
    assert str(e.value) == (
        "virtual rig did not start: paygo-bench sim: hide_capabilities: unknown capability "
        "'tokens'; known: token, status, rtc, rtc_subsecond, rtc_set, nvm, factory_reset, "
        "metrics_bridge, metrics_report, extended_tokens"
    )


# -- over the real pty, through the reference adapter ---------------------------------------------


def test_hidden_capabilities_over_the_serial_link(tmp_path):
    """The bench's view of a build without factory reset and clock setting: ID does not list
    them, the adapter's factory_reset and rtc_set are refused by the device with 404 (nothing
    changes), provisioning on the blank device works, the clock reads."""
    with tempfile.TemporaryDirectory(prefix="paygo-sim-") as state_dir:
        rig = VirtualRig(
            SimOptions.from_dict(
                {
                    "state_dir": state_dir,
                    "psu_decay_s": 0.0,
                    "boot_delay_s": 0.01,
                    "hide_capabilities": ["factory_reset", "rtc_set"],
                }
            )
        )
        port = rig.start()["port"]
        link = SerialLink(port, log=TrafficLog(), poll_s=0.01).open()
        try:
            dut = ReferenceAdapter(link, reply_timeout_s=1.0)
            link.drain()
            since = time.monotonic()
            rig.supply.set_voltage(1, 12.0)
            rig.supply.set_output(1, True)
            assert dut.wait_boot(2.0, since=since).fields["nvm"] == "blank"
            ident = dut.identify()
            assert ident.serial_number is None
            assert {"factory_reset", "rtc_set"}.isdisjoint(ident.capabilities)
            assert {"token", "status", "rtc", "nvm"} <= ident.capabilities
            assert not dut.offers("factory_reset") and not dut.offers("rtc_set")
            assert dut.provision(Provisioning(SN, Secret(KEY, "key"), SC)) == SN
            t = dut.rtc_read()
            with pytest.raises(DeviceRefused) as e:
                dut.rtc_set(int(t) + 86400)
            assert (e.value.code, "unknown command 'RTC SET'" in str(e.value)) == (404, True)
            assert dut.rtc_read() < t + 5
            with pytest.raises(DeviceRefused) as e:
                dut.factory_reset(1.0)
            assert e.value.code == 404 and "unknown command 'NVM ERASE'" in str(e.value)
            assert dut.identify().serial_number == SN
            assert dut.nvm_info().crc_ok
        finally:
            link.close()
            rig.stop()
