"""The HDK adapter (bench/dut/hdk.py) and the link features it relies on: first against a
scripted fake HDK on a REAL pty, one firmware quirk at a time (docs/protocol.md "Quirks, and what
the adapter does about them"), then against
the simulated HDK firmware (bench/sim/hdk_firmware.py) on an in-process virtual rig.
"""

from __future__ import annotations

import re
import tempfile
import time

import pytest

from bench.dut.adapter import CapabilityMissing, Provisioning
from bench.dut.errors import DeviceRefused, LinkSilent, ProtocolError
from bench.dut.hdk import BOOT_STARTED, HDK_CAPABILITIES, HdkAdapter, printed_key
from bench.dut.link import SerialLink
from bench.dut.traffic import TrafficLog
from bench.openpaygo.tokens import TokenGenerator
from bench.secret import Secret
from bench.sim.hdk_firmware import HdkTiming
from bench.sim.virtual_rig import SimOptions, VirtualRig
from tests.selftest.test_dut_link import PtyDevice, script

KEY = "a29ab82edc5fbbc41ec9530f6dac86b1"
SC = 123456789
TOKEN = "662486790"
RECEIVED = b"INFO: Received Command: TOKEN\r\nINFO: Token received: 662486790 | Token Value: 1 | Token Count: 2 | Max Count: 2\r\n"
STATUS_RECEIVED = b"INFO: Received Command: STATUS\r\n"
BANNER = (
    b"INFO: OpenPAYGO-HDK Starting...\r\nINFO: Factory setup %s\r\nINFO: Waiting for commands or NFC taps...\r\n"
    b"INFO: OpenPAYGO-HDK Started!\r\n"
)


def provisioning(sn: str = "42", **kw) -> Provisioning:
    return Provisioning(sn, Secret(KEY, "device key"), SC, **kw)


def setup_echo(sn: str = "42", sc: int = SC) -> list[bytes]:
    return [
        b"INFO: Setup Data Received\r\n",
        f"INFO: SN: {sn}, SC: {sc}, KEY: {printed_key(KEY)}\r\n".encode(),
        b"INFO: Setup data saved\r\n",
        b"INFO: Setup complete. RESTART DEVICE.\r\n",
    ]


@pytest.fixture
def fake_hdk(tmp_path):
    """make(table or handler, reply_timeout_s=1.0) -> (device, adapter); the traffic log goes to
    tmp_path/serial.log."""
    made: list[tuple[PtyDevice, SerialLink]] = []

    def make(table_or_handler, reply_timeout_s: float = 1.0, **kw):
        handler = script(table_or_handler) if isinstance(table_or_handler, dict) else table_or_handler
        dev = PtyDevice(handler).start()
        link = SerialLink(dev.url, log=TrafficLog(), poll_s=0.01).open()
        link.log.to_file(tmp_path / "serial.log")
        made.append((dev, link))
        return dev, HdkAdapter(link, reply_timeout_s=reply_timeout_s, **kw)

    yield make
    for dev, link in made:
        link.close()
        link.log.close()
        dev.stop()


def log_text(tmp_path) -> str:
    return (tmp_path / "serial.log").read_text()


# -- replies and their quirks ------------------------------------------------------------------


def test_info_lines_are_never_the_reply_and_status_is_sent_with_semicolon(fake_hdk, tmp_path):
    """Debug lines before the reply are set aside as events (EV in the log); the request goes out
    as `#STATUS;` because the firmware reads the command name up to ';'."""
    dev, hdk = fake_hdk({"#STATUS;": [STATUS_RECEIVED, b"INFO: other debug\r\n", b"#STATUS;ACTIVE;120\r\n"]})
    s = hdk.status()
    assert (s.payg, s.seconds_left, s.active_until, s.token_count) == ("active", 120, None, None)
    assert dev.received == ["#STATUS;"]
    assert [line for _, line in hdk.link.events] == ["INFO: Received Command: STATUS", "INFO: other debug"]
    assert " EV INFO: Received Command: STATUS\n" in log_text(tmp_path)


def test_valid_without_newline_is_complete_after_quiet_and_not_glued_to_the_next(fake_hdk, tmp_path):
    """`#TOKEN;VALID;<s>` has no newline: it is taken once the line has been quiet, well before
    the token timeout, and consumed, so the next reply is parsed on its own."""
    dev, hdk = fake_hdk(
        {
            f"#TOKEN;{TOKEN}": [RECEIVED, 0.05, b"#TOKEN;VALID;86400"],
            "#STATUS;": [STATUS_RECEIVED, b"#STATUS;ACTIVE;86399\r\n"],
        }
    )
    t0 = time.monotonic()
    out = hdk.enter_token(TOKEN)
    assert time.monotonic() - t0 < 1.0
    assert (out.result, out.kind, out.value, out.count, out.seconds_left) == ("accepted", None, None, None, 86400)
    assert hdk.status().seconds_left == 86399
    assert "without a newline" in log_text(tmp_path)


def test_inactive_without_newline(fake_hdk):
    dev, hdk = fake_hdk({"#STATUS;": [STATUS_RECEIVED, b"#STATUS;INACTIVE"]})
    t0 = time.monotonic()
    s = hdk.status()
    assert (s.payg, s.seconds_left) == ("inactive", 0)
    assert time.monotonic() - t0 < 0.5


def test_unterminated_reply_split_across_reads(fake_hdk):
    """A pause shorter than the quiet time inside the reply does not cut it."""
    dev, hdk = fake_hdk({f"#TOKEN;{TOKEN}": [RECEIVED, b"#TOKEN;VALID;86", 0.04, b"400"]})
    assert hdk.enter_token(TOKEN).seconds_left == 86400


def test_wrapped_seconds_left_is_zero_and_logged(fake_hdk, tmp_path):
    """Seconds left is activeUntil - now as a uint32: 2^32 - 6 means expired 6 s ago."""
    dev, hdk = fake_hdk({f"#TOKEN;{TOKEN}": [RECEIVED, f"#TOKEN;VALID;{2**32 - 6}".encode()]})
    out = hdk.enter_token(TOKEN)
    assert (out.result, out.seconds_left) == ("accepted", 0)
    assert re.search(
        r"seconds left 4294967290 is a wrapped uint32 .*expired 6 s ago.*reported as 0", log_text(tmp_path)
    )


@pytest.mark.parametrize(
    "reply,result,kind",
    [
        (b"#TOKEN;INVALID\r\n", "invalid", None),
        (b"#TOKEN;ALREADY_USED\r\n", "already_used", None),
        (b"#TOKEN;PAYG_DISABLED\r\n", "accepted", "DISABLE_PAYG"),
    ],
)
def test_token_results(fake_hdk, reply, result, kind):
    dev, hdk = fake_hdk({f"#TOKEN;{TOKEN}": [RECEIVED, reply]})
    out = hdk.enter_token(TOKEN)
    assert (out.result, out.kind, out.value, out.count, out.seconds_left) == (result, kind, None, None, None)


def test_status_disabled(fake_hdk):
    dev, hdk = fake_hdk({"#STATUS;": [STATUS_RECEIVED, b"#STATUS;PAYG_DISABLED\r\n"]})
    assert (hdk.status().payg, hdk.status().seconds_left) == ("disabled", 0)


def test_token_reply_after_long_blinks(fake_hdk):
    """Replies come after blocking LED blinks: a token may take longer than the rig's reply
    timeout (not so a status, which has no blink)."""
    dev, hdk = fake_hdk(
        {f"#TOKEN;{TOKEN}": [RECEIVED, 0.5, b"#TOKEN;INVALID\r\n"], "#STATUS;": [0.5, b"#STATUS;INACTIVE"]},
        reply_timeout_s=0.2,
    )
    assert hdk.enter_token(TOKEN).result == "invalid"
    with pytest.raises(LinkSilent):
        hdk.status()


def test_late_unterminated_reply_is_discarded_before_the_next_request(fake_hdk, tmp_path):
    """A reply without newline that arrives after its request timed out would be glued onto the
    next reply's first line: the next request drops it first."""
    calls = []

    def handler(line):
        calls.append(line)
        if len(calls) == 1:
            return [0.3, b"#STATUS;INACTIVE"]
        return [STATUS_RECEIVED, b"#STATUS;ACTIVE;5\r\n"]

    dev, hdk = fake_hdk(handler, reply_timeout_s=0.15)
    with pytest.raises(LinkSilent):
        hdk.status()
    time.sleep(0.3)
    assert (hdk.status().payg, hdk.status().seconds_left) == ("active", 5)
    assert "'#STATUS;INACTIVE' arrived after its request timed out; discarded" in log_text(tmp_path)


def test_debug_output_glued_after_a_reply(fake_hdk, tmp_path):
    """Debug output printed right after a reply without newline lands on the same line."""
    dev, hdk = fake_hdk({f"#TOKEN;{TOKEN}": [RECEIVED, b"#TOKEN;VALID;100INFO: metrics sent\r\n"]})
    assert hdk.enter_token(TOKEN).seconds_left == 100
    assert "debug output glued to the reply" in log_text(tmp_path)


@pytest.mark.parametrize(
    "request_line,call,reply,problem",
    [
        (f"#TOKEN;{TOKEN}", lambda a: a.enter_token(TOKEN), "#TOKEN;MAYBE", "not a reply"),
        (f"#TOKEN;{TOKEN}", lambda a: a.enter_token(TOKEN), "#TOKEN;VALID;12x", "text after the reply"),
        (f"#TOKEN;{TOKEN}", lambda a: a.enter_token(TOKEN), "#TOKEN;VALID;99999999999", "beyond a uint32"),
        (f"#TOKEN;{TOKEN}", lambda a: a.enter_token(TOKEN), "#STATUS;INACTIVE", "not a reply"),
        ("#STATUS;", lambda a: a.status(), "#STATUS;ACTIVE", "not a reply"),
        ("#STATUS;", lambda a: a.status(), "OK payg=active", "not a reply"),
        ("#STATUS;", lambda a: a.ping(), "#TOKEN;INVALID", "not a reply"),
    ],
)
def test_malformed_reply_is_protocol_error(fake_hdk, request_line, call, reply, problem):
    dev, hdk = fake_hdk({request_line: [reply.encode() + b"\r\n"]})
    with pytest.raises(ProtocolError) as ei:
        call(hdk)
    assert ei.value.line == reply and problem in str(ei.value) and dev.url in str(ei.value)


def test_unconfigured_hdk(fake_hdk):
    """Before #SETUP the HDK answers #INVALID to everything: refused as 'not provisioned' (409),
    while ping takes it as a sign of life."""
    dev, hdk = fake_hdk({"#STATUS;": [b"#INVALID\r\n"], f"#TOKEN;{TOKEN}": [b"#INVALID\r\n"]})
    hdk.ping()
    for call in (hdk.status, lambda: hdk.enter_token(TOKEN)):
        with pytest.raises(DeviceRefused) as ei:
            call()
        assert ei.value.code == 409 and "not provisioned" in ei.value.reason


def test_ping_on_a_silent_hdk_is_link_silent(fake_hdk):
    dev, hdk = fake_hdk({}, reply_timeout_s=0.1)
    with pytest.raises(LinkSilent, match="silent"):
        hdk.ping()


def test_a_partial_line_of_another_shape_is_never_a_reply(fake_hdk):
    """Only a partial line of the expected shape counts: '#STAT' then silence is no reply."""
    dev, hdk = fake_hdk({"#STATUS;": [b"#STAT"]}, reply_timeout_s=0.3)
    with pytest.raises(LinkSilent):
        hdk.status()


# -- boot ---------------------------------------------------------------------------------------


def test_wait_boot_returns_the_started_line_and_skips_stale_banners(fake_hdk):
    dev, hdk = fake_hdk({})
    dev.send(BANNER % b"done")
    time.sleep(0.1)
    hdk.link.drain()
    since = time.monotonic()
    dev.send(b"\xff\x00ets Jun  8 2016 00:22:57\r\n" + BANNER % b"NOT done")  # ROM noise first
    banner = hdk.wait_boot(1.0, since=since)
    assert banner.line == BOOT_STARTED and banner.fields == {"setup": "not_done"} and banner.at >= since


def test_wait_boot_timeout_names_the_banner(fake_hdk):
    dev, hdk = fake_hdk({})
    dev.send(b"INFO: OpenPAYGO-HDK Starting...\r\n")
    with pytest.raises(LinkSilent) as ei:
        hdk.wait_boot(0.2)
    assert BOOT_STARTED in str(ei.value) and "Starting..." in str(ei.value)


# -- provisioning -------------------------------------------------------------------------------


def test_provision_sends_setup_and_returns_the_echoed_serial(fake_hdk, tmp_path):
    """#SETUP gets no reply, only INFO lines; the serial is read from the echo; the key is masked
    in the log in both the form sent and the form the HDK prints (upper case, unpadded)."""
    setup = f"#SETUP;42;{SC};{KEY}"
    dev, hdk = fake_hdk({setup: setup_echo()})
    assert hdk.restart_after_provision is True
    t0 = time.monotonic()
    assert hdk.provision(provisioning()) == "42"
    assert time.monotonic() - t0 < 1.0
    assert dev.received == [setup]
    text = log_text(tmp_path)
    assert KEY not in text.lower() and printed_key(KEY).lower() not in text.lower()
    assert f"TX #SETUP;42;{SC};***" in text and "KEY: ***" in text
    assert "starts at token count 0" in text  # the profile's count 1 cannot be sent


def test_provision_on_a_configured_hdk_is_refused_at_once(fake_hdk):
    dev, hdk = fake_hdk({f"#SETUP;42;{SC};{KEY}": [b"INFO: Received Command: SETUP\r\n#INVALID\r\n"]})
    t0 = time.monotonic()
    with pytest.raises(DeviceRefused) as ei:
        hdk.provision(provisioning())
    assert time.monotonic() - t0 < 1.0
    assert ei.value.code == 409 and "already provisioned" in ei.value.reason
    assert KEY not in str(ei.value).lower()


def test_provision_echo_with_another_starting_code_is_protocol_error(fake_hdk):
    dev, hdk = fake_hdk({f"#SETUP;42;{SC};{KEY}": setup_echo(sc=SC + 1)})
    with pytest.raises(ProtocolError, match="confirms starting code"):
        hdk.provision(provisioning())


@pytest.mark.parametrize(
    "p,problem",
    [
        (provisioning("SIM000001"), "%d"),
        (provisioning("0042"), "leading zeros"),
        (provisioning("4294967296"), "%d"),
        (provisioning(time_divider=4), "build-time"),
        (provisioning(restricted_digits=True), "build-time"),
    ],
)
def test_provision_refuses_what_the_hdk_cannot_take(fake_hdk, p, problem):
    """Checked before anything is sent: the HDK would store something else and say nothing."""
    dev, hdk = fake_hdk({})
    with pytest.raises(ValueError, match=problem):
        hdk.provision(p)
    time.sleep(0.05)
    assert dev.received == []


# -- capabilities -------------------------------------------------------------------------------


def test_capabilities_and_what_the_hdk_cannot_do(fake_hdk):
    dev, hdk = fake_hdk({})
    assert hdk.capabilities == HDK_CAPABILITIES == frozenset({"token", "status"})
    for cap in (
        "identity",
        "rtc",
        "nvm",
        "factory_reset",
        "lockout",
        "boot_reason",
        "extended_tokens",
        "metrics_bridge",
    ):
        assert not hdk.offers(cap)
    calls = {
        "identity": hdk.identify,
        "rtc": hdk.rtc_read,
        "rtc_set": lambda: hdk.rtc_set(1),
        "nvm": hdk.nvm_info,
        "factory_reset": lambda: hdk.factory_reset(1.0),
        "extended_tokens": lambda: hdk.enter_token("123456789012"),
        "metrics_bridge": hdk.metrics_export,
    }
    for cap, call in calls.items():
        with pytest.raises(CapabilityMissing) as ei:
            call()
        assert ei.value.capability == cap
    with pytest.raises(ValueError, match="9-digit"):
        hdk.enter_token("12345")
    time.sleep(0.05)
    assert dev.received == []


def test_declared_capabilities(fake_hdk):
    """A rig may narrow what is tested, not claim what the protocol cannot do."""
    dev, hdk = fake_hdk({}, declared=frozenset({"token"}))
    assert hdk.capabilities == frozenset({"token"})
    with pytest.raises(ValueError, match="rtc"):
        fake_hdk({}, declared=frozenset({"token", "rtc"}))


# -- against the simulated HDK firmware -------------------------------------------------------


class SimHdk:
    """The HDK simulator firmware on an in-process virtual rig, powered by its simulated PSU."""

    def __init__(self, state_dir: str, log_path) -> None:
        self.rig = VirtualRig(SimOptions(firmware="hdk", psu_decay_s=0.0, boot_delay_s=0.01, state_dir=state_dir))
        port = self.rig.start()["port"]
        self.link = SerialLink(port, log=TrafficLog(), poll_s=0.01).open()
        self.link.log.to_file(log_path)
        self.adapter = HdkAdapter(self.link, reply_timeout_s=1.0)
        self.rig.supply.set_voltage(1, 12.0)

    def on(self):
        self.link.drain()
        since = time.monotonic()
        self.rig.supply.set_output(1, True)
        return self.adapter.wait_boot(2.0, since=since)

    def cycle(self):
        self.rig.supply.set_output(1, False)
        time.sleep(0.03)
        return self.on()

    def close(self) -> None:
        self.link.close()
        self.link.log.close()
        self.rig.stop()


@pytest.fixture
def sim(tmp_path):
    with tempfile.TemporaryDirectory(prefix="paygo-hdk-") as state_dir:
        s = SimHdk(state_dir, tmp_path / "serial.log")
        yield s
        s.close()


def test_hdk_simulator_end_to_end(sim, tmp_path):
    """Setup, restart, tokens and status on the simulated HDK, including what it loses on a
    power cycle (credit, RTC) and what it keeps (token count and used counts)."""
    hdk = sim.adapter
    assert sim.on().fields == {"setup": "not_done"}
    hdk.ping()
    with pytest.raises(DeviceRefused):
        hdk.status()
    assert hdk.provision(provisioning("1000001", token_count=0)) == "1000001"
    assert sim.cycle().fields == {"setup": "done"}  # restart_after_provision
    assert hdk.status().payg == "inactive"

    gen = TokenGenerator(KEY, SC, count=0)
    add = gen.add_days(1)
    out = hdk.enter_token(add.code)
    assert out.result == "accepted" and abs(out.seconds_left - 86400) <= 2
    assert hdk.enter_token(add.code).result == "already_used"
    bad = hdk.enter_token(gen.invalid(seed=1))
    assert bad.result == "invalid" and bad.elapsed_s >= 5 * HdkTiming().blink_s
    s = hdk.status()
    assert s.payg == "active" and abs(s.seconds_left - 86400) <= 2

    sim.cycle()
    assert hdk.status().payg == "inactive"  # activeUntil is RAM only, the RTC restarted
    assert hdk.enter_token(add.code).result == "already_used"  # the count is in NVM
    sync = hdk.enter_token(gen.counter_sync().code)
    assert (sync.result, sync.seconds_left) == ("accepted", 0)  # 0 - now, wrapped
    assert "wrapped uint32" in log_text(tmp_path)
    with pytest.raises(DeviceRefused, match="already provisioned"):
        hdk.provision(provisioning("1000001"))
    assert KEY not in log_text(tmp_path).lower()


def test_hdk_simulator_status_without_semicolon(sim):
    """`#STATUS` (no ';') waits out the firmware's read timeout and is #INVALID."""
    sim.on()
    t0 = time.monotonic()
    assert sim.link.request("#STATUS", 2.0) == "#INVALID"
    assert time.monotonic() - t0 >= HdkTiming().read_timeout_s
