"""The reference adapter's Metrics commands (METRICS CONFIG / STATUS / REPORT / FORMAT / EXPORT /
IMPORT) and the bench's bridge relay, against the real simulated device on an in-process virtual
rig and the real Metrics server; reply parsing at the edge against canned lines."""

from __future__ import annotations

import json
import re
import socket
import tempfile
import time
from collections import deque

import pytest

from bench.dut.adapter import CapabilityMissing, MetricsConfig, MetricsStatus, Provisioning
from bench.dut.errors import DeviceRefused, ProtocolError
from bench.dut.hdk import HdkAdapter
from bench.dut.link import SerialLink
from bench.dut.metrics_relay import MetricsRelay
from bench.dut.reference import ReferenceAdapter
from bench.dut.traffic import TrafficLog
from bench.fixtures.metrics_device import clear_base_url
from bench.secret import Secret
from bench.sim.virtual_rig import SimOptions, VirtualRig

KEY = "a29ab82edc5fbbc41ec9530f6dac86b1"
SERIAL = "SIM000001"
SC = 123456789


class Device:
    """The reference firmware with Metrics sessions on, on an in-process virtual rig, powered."""

    def __init__(self, state_dir: str, **options) -> None:
        options = {
            "psu_decay_s": 0.0,
            "boot_delay_s": 0.01,
            "metrics_period_s": 0.5,
            "metrics_sample_s": 1,
            "metrics_reply_timeout_s": 1.0,
            **options,
        }
        self.rig = VirtualRig(SimOptions.from_dict({"state_dir": state_dir, **options}))
        port = self.rig.start()["port"]
        self.link = SerialLink(port, log=TrafficLog(), poll_s=0.01).open()
        self.dut = ReferenceAdapter(self.link, reply_timeout_s=2.0)
        self.rig.supply.set_voltage(1, 12.0)
        since = time.monotonic()
        self.rig.supply.set_output(1, True)
        self.dut.wait_boot(2.0, since=since)

    def provision(self) -> None:
        self.dut.provision(Provisioning(SERIAL, Secret(KEY, "key"), SC))

    def close(self) -> None:
        self.link.close()
        self.rig.stop()


@pytest.fixture
def device():
    made: list[Device] = []

    def make(**options) -> Device:
        made.append(Device(tempfile.mkdtemp(prefix="paygo-sim-"), **options))
        return made[-1]

    yield make
    for d in made:
        d.close()


def register(server, fmt: dict) -> int:
    answer = server.post("/data_format", json.dumps(fmt).encode())
    assert answer.status == 201, answer
    return json.loads(answer.body)["id"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout_s: float, what: str, pump=None):
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what} not within {timeout_s} s"
        if pump is not None:
            pump(min(deadline, time.monotonic() + 0.1))
        else:
            time.sleep(0.05)


# -- against the simulated device -----------------------------------------------------------------


def test_format_config_status_and_report_are_typed(device, start_metrics_server):
    d = device(metrics_mode="direct")
    fmt = d.dut.metrics_format()  # allowed before provisioning
    assert fmt.data_format_id == 0 and fmt.interval == 1
    assert fmt.data_format["historical_data_interval"] == 1 and "variables" in fmt.data_format
    d.provision()
    server = start_metrics_server()
    df = register(server, fmt.data_format)
    config = d.dut.metrics_configure(server.url, df, "ra", mode="direct", period_s=0.25)
    assert config == MetricsConfig("direct", 0.25, 1, "json", "ra", df, server.url)
    assert d.dut.metrics_config() == config
    d.dut.metrics_report_now()
    wait_for(lambda: [r for r in server.requests() if r.kind == "device_data"], 5.0, "a stored request")
    status = wait_for(lambda: (s := d.dut.metrics_status()).answered and s, 5.0, "an answered session")
    assert isinstance(status, MetricsStatus) and status.mode == "direct" and status.request_count >= 1
    assert status.last == "ok" and status.active_until == 0 and status.failed == 0
    # back to no URL and metrics off until the next boot
    config = d.dut.metrics_configure(None, df, "ra", mode="off")
    assert config.url is None and config.mode == "off"
    with pytest.raises(DeviceRefused) as refused:
        d.dut.metrics_report_now()
    assert refused.value.code == 409


def test_metrics_fixture_teardown_sends_only_what_the_protocol_allows(device, start_metrics_server, tmp_path):
    """The Metrics fixture's teardown (`clear_base_url`, fixtures/metrics_device.py) asks for "no
    base URL" the protocol's way, `METRICS CONFIG url=-` (docs/protocol.md "Metrics sessions"):
    every line the bench sent is protocol-conformant (no `key=` with an empty value, the form the
    reference firmware refuses), the device answered OK, nothing was noted, and the device holds
    no base URL afterwards. Before, the teardown sent `url=` (empty)."""
    d = device(metrics_mode="direct")
    d.provision()
    server = start_metrics_server()
    df = register(server, d.dut.metrics_format().data_format)
    d.dut.metrics_configure(server.url, df, "ra")
    log = tmp_path / "traffic.log"
    d.link.log.to_file(log)
    notes: list[str] = []
    clear_base_url(d.dut, df, "ra", notes.append)
    d.link.log.close()
    sent = [line.split(" TX ", 1)[1] for line in log.read_text().splitlines() if " TX " in line]
    received = [line.split(" RX ", 1)[1] for line in log.read_text().splitlines() if " RX " in line]
    assert sent == [f"METRICS CONFIG url=- df={df} auth=ra"], sent
    assert all(re.fullmatch(r"[A-Z ]+( [a-z]+=[^\s=]+)*", line) for line in sent), sent
    assert notes == [] and [r.split()[0] for r in received] == ["OK"], (notes, received)
    assert d.dut.metrics_config().url is None
    # and the reference firmware refuses what the protocol forbids: an empty value
    assert d.link.request(f"METRICS CONFIG url= df={df} auth=ra", 2.0).startswith("ERR 400 url= has no value")


def test_bad_arguments_are_refused_before_anything_is_sent(device):
    d = device(metrics_mode="direct")
    d.provision()
    d.link.send = lambda line: pytest.fail(f"sent {line[:60]!r} although the call was refused")  # type: ignore[method-assign]
    for call in (
        lambda: d.dut.metrics_configure("", 1, "ra"),  # no base URL is None (url=-), never empty
        lambda: d.dut.metrics_configure("http://host/with space", 1, "ra"),
        lambda: d.dut.metrics_configure("http://host/a=b", 1, "ra"),
        lambda: d.dut.metrics_configure("ftp://host", 1, "ra"),
        lambda: d.dut.metrics_configure("http://host", 1, "xx"),
        lambda: d.dut.metrics_configure("http://host", 1, "ra", mode="sometimes"),
        lambda: d.dut.metrics_configure("http://host", 1, "ra", period_s=0.01),
        lambda: d.dut.metrics_import(b"x" * 7000, "application/json"),
        lambda: d.dut.metrics_import(b"{}", "application/json extra"),
    ):
        with pytest.raises(ValueError):
            call()


def test_import_without_an_exported_request_is_refused_by_the_device(device):
    d = device(metrics_mode="bridge")
    d.provision()
    with pytest.raises(DeviceRefused) as refused:
        d.dut.metrics_import(b"{}", "application/json")
    assert refused.value.code == 409


def test_relay_carries_bridge_sessions_and_keeps_other_events(device, start_metrics_server):
    d = device(metrics_mode="bridge")
    d.provision()
    server = start_metrics_server()
    df = register(server, d.dut.metrics_format().data_format)
    d.dut.metrics_configure(None, df, "ra")
    relay = MetricsRelay(d.dut, d.link, server.url, http_timeout_s=1.0)
    d.link.events.append((time.monotonic(), "! EVT payg state=expired"))  # not the relay's
    stored = wait_for(
        lambda: (
            len(a := [r for r in server.requests() if r.kind == "device_data" and r.verdict == "accepted"]) >= 2 and a
        ),
        8.0,
        "two relayed sessions stored",
        relay.pump,
    )
    assert [json.loads(r.body)["rc"] for r in stored][:2] == [1, 2]
    assert all(ex.imported and ex.status == 201 and ex.error is None for ex in relay.relayed), relay.relayed
    assert any(line.startswith("! EVT metrics_done") and "via=import" in line for _, line in relay.events)
    assert "! EVT payg state=expired" in [line for _, line in d.link.events]
    status = d.dut.metrics_status()
    assert status.mode == "bridge" and status.answered >= 2 and status.last in ("ok", "no_reply")


def test_relay_with_the_server_down_imports_nothing_and_the_device_retries(device):
    d = device(metrics_mode="bridge")
    d.provision()
    relay = MetricsRelay(d.dut, d.link, f"http://127.0.0.1:{free_port()}", http_timeout_s=0.5)
    wait_for(lambda: len(relay.relayed) >= 2, 6.0, "two relay attempts", relay.pump)
    first = relay.relayed[0]
    assert first.error == "refused" and not first.imported and first.device_answer == ""
    relay.pump(time.monotonic() + 1.2)
    assert any("reason=no_reply" in line for _, line in relay.events), relay.events
    assert relay.relayed[1].request_count > first.request_count


def test_metrics_commands_are_optional_capabilities_of_an_adapter():
    hdk = HdkAdapter.__new__(HdkAdapter)
    for call, cap in (
        (lambda: hdk.metrics_status(), "metrics_report"),
        (lambda: hdk.metrics_format(), "metrics_report"),
        (lambda: hdk.metrics_configure("http://h", 1, "ra"), "metrics_report"),
        (lambda: hdk.metrics_report_now(), "metrics_report"),
        (lambda: hdk.metrics_import(b"{}"), "metrics_bridge"),
    ):
        with pytest.raises(CapabilityMissing) as missing:
            call()
        assert missing.value.capability == cap


# -- reply parsing at the edge --------------------------------------------------------------------


class CannedLink:
    """Answers every request with the next canned line."""

    url = "socket://canned:1"

    def __init__(self, *replies: str) -> None:
        self.replies = deque(replies)
        self.log = TrafficLog()
        self.sent: list[str] = []

    def request(self, line: str, timeout_s: float, **_kw) -> str:
        self.sent.append(line)
        return self.replies.popleft()

    def masked(self, line: str) -> str:
        return line


GOOD_STATUS = (
    "OK mode=direct rc=3 rows=2 inflight=- requests=3 answered=2 failed=1 sent_rows=5 dropped=0 "
    "tokens=1 last=timeout auts=1800000000 asl=- reply_at=1799999990"
)


def test_status_reply_is_parsed_into_its_fields():
    status = ReferenceAdapter(CannedLink(GOOD_STATUS)).metrics_status()
    assert status == MetricsStatus("direct", 3, 2, None, 3, 2, 1, 5, 0, 1, "timeout", 1800000000, None, 1799999990)


@pytest.mark.parametrize(
    "call, reply, problem",
    [
        ("metrics_status", GOOD_STATUS.replace(" answered=2", ""), "lacks answered="),
        ("metrics_status", GOOD_STATUS.replace("rc=3", "rc=three"), "non-integer rc="),
        ("metrics_status", GOOD_STATUS.replace("mode=direct", "mode=sideways"), "unknown Metrics mode"),
        ("metrics_format", "OK id=1 interval=60 b64=!!!", "b64= that is not base64"),
        ("metrics_format", "OK id=1 interval=60 b64=WzFd", "not an object"),
        ("metrics_config", "OK mode=direct period=fast sample=1 enc=json auth=ra df=1 url=-", "non-numeric period="),
        ("metrics_export", "OK ct=text/plain rc=1 b64=e30=", "unknown content type"),
    ],
)
def test_malformed_replies_name_port_request_and_reply(call, reply, problem):
    with pytest.raises(ProtocolError) as err:
        getattr(ReferenceAdapter(CannedLink(reply)), call)()
    text = str(err.value)
    assert problem in text and "socket://canned:1" in text and reply in text
    assert f"'METRICS {call.removeprefix('metrics_').upper()}'" in text


def test_import_reply_is_parsed_and_its_tokens_ratio_checked():
    imported = ReferenceAdapter(CannedLink("OK tokens=1/2 rc=7 rows=3")).metrics_import(b"{}", "application/json")
    assert (imported.tokens_accepted, imported.tokens_received, imported.request_count, imported.rows_cleared) == (
        1,
        2,
        7,
        3,
    )
    minimal = ReferenceAdapter(CannedLink("OK tokens=0/0")).metrics_import(b"{}")
    assert minimal.request_count is None and minimal.rows_cleared is None
    with pytest.raises(ProtocolError, match="tokens= that is not <n>/<n>"):
        ReferenceAdapter(CannedLink("OK tokens=two")).metrics_import(b"{}")
