"""The simulated device's Metrics sessions (bench/sim/metrics/session.py through the firmware's
METRICS commands) against the real Metrics server over real HTTP: rows delivered once, rc strictly
increasing, rows kept through every server fault, tokens applied, base URL followed, the bridge.

The firmware runs on a tick clock the test moves (the RTC runs on the same clock), so a session
every 60 "seconds" takes no time; the HTTP exchanges are real, on loopback, with real timeouts.
Server faults come from a real TCP proxy in front of the real server (refuse, 500, slow, drop).
The last test runs the whole thing in a separate virtual-rig process, through its UART and PSU.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import socketserver
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from bench.dut.adapter import Provisioning
from bench.dut.link import SerialLink
from bench.dut.reference import ReferenceAdapter, parse_fields
from bench.dut.traffic import TrafficLog
from bench.power.driver import Psu
from bench.server.config import MetricsServerConfig
from bench.sim.eeprom import Eeprom
from bench.sim.firmware import Firmware
from bench.sim.firmware_config import FirmwareConfig
from bench.sim.nvstate import RecordStore
from bench.sim.rtc import Rtc
from bench.station.virtual_rig import start_virtual_rig

T0 = 1_700_000_000
SAMPLE = 60


class TickClock:
    """The MCU's tick, moved by the test (the RTC counts on it too)."""

    def __init__(self) -> None:
        self.t = 5000.0

    def __call__(self) -> float:
        return self.t


class Sim:
    """One simulated device: firmware on an EEPROM image, an RTC and a tick clock that outlive it."""

    def __init__(self, tmp_path, dut, **config) -> None:
        self.clock = TickClock()
        self.store = RecordStore(Eeprom(tmp_path / "e.bin", page_write_s=0))
        self.rtc = Rtc(start=T0, clock=self.clock)
        self.config = FirmwareConfig(**{"metrics_sample_s": SAMPLE, "metrics_reply_timeout_s": 2.0, **config})
        self.dut = dut
        self.events: list[str] = []
        self.boot()

    def boot(self) -> None:
        self.fw = Firmware(self.store, self.rtc, self.config, "power", clock=self.clock)

    def __call__(self, line: str) -> str:
        reply = self.fw.handle(line)
        self.tick()
        return reply.line

    def ok(self, line: str) -> dict[str, str]:
        reply = self(line)
        assert reply.startswith("OK"), f"{line!r} -> {reply!r}"
        return parse_fields(reply[2:])

    def tick(self) -> list[str]:
        lines = self.fw.tick()
        self.events += lines
        return lines

    def advance(self, seconds: float, step: float = SAMPLE) -> None:
        """Let tick time pass (sampling on the way), one step at a time."""
        left = seconds
        while left > 0:
            dt = min(step, left)
            self.clock.t += dt
            left -= dt
            self.tick()

    def provision(self, url: str = "", auth: str = "ra", **metrics) -> None:
        d = self.dut
        assert (
            self(
                f"PROV sn={d.serial_number} key={d.key.reveal()} sc={d.starting_code} count=1 "
                f"td={d.time_divider} auth={auth}"
            )
            == f"OK sn={d.serial_number}"
        )
        settings = {"mode": "direct", "period": 3600, **metrics}
        if url:
            settings["url"] = url
        self.ok("METRICS CONFIG " + " ".join(f"{k}={v}" for k, v in settings.items()))

    def session(self, timeout_s: float = 5.0) -> dict[str, str]:
        """Force a session and wait (real time) for its end; the fields of its last event."""
        self.clock.t += 1  # a new RTC second: ts must go up
        first = len(self.events)
        self.ok("METRICS REPORT")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.tick()
            ends = [e for e in self.events[first:] if e.startswith(("! EVT metrics_done", "! EVT metrics_failed"))]
            if ends:
                return {"event": ends[-1].split()[2], **parse_fields(ends[-1].split(" ", 3)[3])}
            time.sleep(0.005)
        raise AssertionError(f"no end of session within {timeout_s} s; events: {self.events[first:]}")

    def status(self) -> dict[str, str]:
        return self.ok("METRICS STATUS")

    def format_json(self) -> dict:
        return json.loads(base64.b64decode(self.ok("METRICS FORMAT")["b64"]))


def register(server, fmt: dict) -> int:
    answer = server.post("/data_format", json.dumps(fmt).encode())
    assert answer.status == 201, answer.body
    return json.loads(answer.body)["id"]


@pytest.fixture
def sim(tmp_path, server, server_dut) -> Sim:
    s = Sim(tmp_path, server_dut)
    s.provision(server.url, df=register(server, s.format_json()))
    return s


def accepted(server) -> list:
    return [r for r in server.requests() if r.kind == "device_data" and r.verdict == "accepted"]


def row_times(server) -> list[int]:
    return [row["timestamp"] for r in accepted(server) for row in r.simple.get("historical_data", [])]


# -- a real TCP proxy that misbehaves like a sick server or network ---------------------------------


class FaultProxy:
    """Between the device and the server. mode: pass | http500 | slow (holds the request past the
    device's timeout, never forwards it) | drop (closes without forwarding) | drop_after (forwards,
    the server commits, then closes without relaying the reply)."""

    def __init__(self, upstream: str, hold_s: float = 3.0) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self.hold_s = hold_s
        self.forwarded = 0
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _serve(self, sock: socket.socket) -> None:
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = sock.recv(4096)
            if not chunk:
                return
            raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
        while len(body) < int(headers.get("content-length", "0")):
            body += sock.recv(65536)
        mode = self.mode
        if mode == "http500":
            sock.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        if mode == "slow":
            time.sleep(self.hold_s)
            return
        if mode == "drop":
            return
        parts = self.upstream.split("//", 1)[1]
        host, port = parts.split("/", 1)[0].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("POST", lines[0].split()[1], body=body, headers={"Content-Type": headers["content-type"]})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        self.forwarded += 1
        if mode == "drop_after":
            return
        sock.sendall(
            f"HTTP/1.1 {resp.status} X\r\nContent-Type: {resp.getheader('Content-Type')}\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data
        )


@pytest.fixture
def proxy(server):
    p = FaultProxy(server.url)
    yield p
    p.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- direct mode --------------------------------------------------------------------------------


def test_sessions_deliver_each_row_once_with_increasing_rc(sim, server):
    sim.advance(3 * SAMPLE)
    first = sim.session()
    assert (first["event"], first["rc"], first["rows"], first["via"]) == ("metrics_done", "1", "3", "201")
    sim.advance(2 * SAMPLE)
    second = sim.session()
    assert (second["rc"], second["rows"]) == ("2", "2")
    reqs = accepted(server)
    assert [r.simple["request_count"] for r in reqs] == [1, 2] and {r.auth for r in reqs} == {"ra"}
    times = row_times(server)
    assert times == [T0 + SAMPLE * i for i in range(1, 6)]  # the device's sample times, each once
    data = reqs[-1].simple["data"]
    assert (data["token_count"], data["firmware_version"], data["rows_dropped"]) == (1, "1.0.0", 0)
    assert reqs[-1].simple["timestamp"] > reqs[0].simple["timestamp"]
    st = sim.status()
    assert (st["rc"], st["rows"], st["requests"], st["answered"], st["sent_rows"], st["last"]) == (
        "2",
        "0",
        "2",
        "2",
        "5",
        "ok",
    )
    assert st["auts"] == "0"  # asked every session; no target on the server yet
    assert sim.store.load().state.metrics_rc == 2  # in NVM


def test_a_late_pass_of_the_loop_takes_the_rows_it_missed_at_their_seconds(sim, server):
    """A stalled simulator (a loaded host) must not make the good device lose rows: one late pass
    takes every row due meanwhile, each at its own RTC second (seen: a self-test session's rows
    test failing the good build's run for two rows missing)."""
    sim.advance(SAMPLE)  # the first row, on time
    sim.advance(3.5 * SAMPLE, step=3.5 * SAMPLE)  # the loop comes back 3.5 sample intervals later
    assert sim.session()["rows"] == "4"
    assert row_times(server) == [T0 + SAMPLE * i for i in range(1, 5)]


@pytest.mark.parametrize("method", ["sa", "ta", "ca", "da"])
def test_every_auth_method_is_accepted(tmp_path, server, server_dut, method):
    s = Sim(tmp_path, server_dut)
    s.provision(server.url, auth=method, df=register(server, s.format_json()))
    s.advance(2 * SAMPLE)
    assert s.session()["event"] == "metrics_done"
    assert accepted(server)[-1].auth == method


def test_cbor_and_an_embedded_format(tmp_path, server, server_dut):
    s = Sim(tmp_path, server_dut)
    s.provision(server.url, enc="cbor")  # df=0: the format travels in the request (dfo)
    s.advance(2 * SAMPLE)
    assert s.session()["event"] == "metrics_done"
    (row,) = accepted(server)
    assert row.content_type == "application/cbor" and row.simple["data_format"]["historical_data_interval"] == SAMPLE
    assert [r["timestamp"] for r in row.simple["historical_data"]] == [T0 + SAMPLE, T0 + 2 * SAMPLE]


def test_an_unsigned_device_is_refused_and_keeps_its_rows(tmp_path, server, server_dut):
    s = Sim(tmp_path, server_dut)
    s.provision(server.url, auth="none", df=register(server, s.format_json()))
    s.advance(2 * SAMPLE)
    end = s.session()
    assert (end["event"], end["reason"], end["kept"]) == ("metrics_failed", "http_403", "2")
    assert server.requests()[-1].error_code == "auth_missing"


def test_server_faults_lose_no_row_and_duplicate_none(tmp_path, server, server_dut, proxy):
    """Refused, 500, slow past the device's timeout, dropped: each session fails, the rows stay
    and are sent again in a NEW request (new rc, new ts) once the server answers; the server has
    every row once and has seen rc strictly increasing."""
    sim = Sim(tmp_path, server_dut, metrics_reply_timeout_s=0.6)
    sim.provision(server.url, df=register(server, sim.format_json()))
    proxy.hold_s = 0.9
    sim.ok(f"METRICS CONFIG url=http://127.0.0.1:{free_port()}")  # nothing listens: refused
    sim.advance(SAMPLE)
    assert sim.session()["reason"] == "refused"
    sim.ok(f"METRICS CONFIG url={proxy.url}")
    reasons = []
    for mode in ("http500", "slow", "drop"):
        proxy.mode = mode
        sim.advance(SAMPLE)
        end = sim.session(timeout_s=8)
        reasons.append(end["reason"])
        assert end["event"] == "metrics_failed" and end["kept"] == str(len(reasons) + 1)
    assert reasons == ["http_500", "timeout", "dropped"]
    assert accepted(server) == [] and proxy.forwarded == 0
    proxy.mode = "pass"
    done = sim.session()
    assert (done["event"], done["rc"], done["rows"]) == ("metrics_done", "5", "4")
    assert row_times(server) == [T0 + SAMPLE * i for i in range(1, 5)]
    sim.advance(SAMPLE)
    assert sim.session()["rows"] == "1"
    assert row_times(server) == [T0 + SAMPLE * i for i in range(1, 6)]
    rcs = [r.simple["request_count"] for r in accepted(server)]
    assert rcs == [5, 6] and sim.status()["failed"] == "4"


def test_a_reply_lost_after_the_server_committed_means_the_rows_come_again_with_their_times(sim, server, proxy):
    """At least once: the device cannot know the server kept a request whose reply never came;
    the rows come again in the next request, with the same absolute times."""
    sim.ok(f"METRICS CONFIG url={proxy.url}")
    sim.advance(2 * SAMPLE)
    proxy.mode = "drop_after"
    assert sim.session()["reason"] == "dropped" and proxy.forwarded == 1
    proxy.mode = "pass"
    assert sim.session()["rows"] == "2"
    times = row_times(server)
    assert times == [T0 + SAMPLE, T0 + 2 * SAMPLE] * 2
    assert [r.simple["request_count"] for r in accepted(server)] == [1, 2]


def test_rows_sampled_while_a_request_is_in_flight_stay_for_the_next(tmp_path, server, server_dut, proxy):
    sim = Sim(tmp_path, server_dut, metrics_reply_timeout_s=120.0)  # the tick clock jumps a minute at a time
    sim.provision(proxy.url, df=register(server, sim.format_json()))
    sim.advance(2 * SAMPLE)
    proxy.hold_s = 0.0
    gate = threading.Event()
    original = proxy._serve

    def held(sock):
        gate.wait(5)
        original(sock)

    proxy._serve = held
    sim.clock.t += 1
    sim.ok("METRICS REPORT")
    sim.tick()
    assert any(e.startswith("! EVT metrics_sent rc=1 rows=2") for e in sim.events)
    sim.advance(SAMPLE)  # a row while the request is in flight
    assert sim.status()["rows"] == "3" and sim.status()["inflight"] == "1"
    gate.set()
    deadline = time.monotonic() + 5
    while not any(e.startswith("! EVT metrics_done") for e in sim.events) and time.monotonic() < deadline:
        sim.tick()
        time.sleep(0.005)
    assert sim.status()["rows"] == "1"  # only the two in flight were cleared
    proxy._serve = original
    assert sim.session()["rows"] == "1"
    assert row_times(server) == [T0 + SAMPLE, T0 + 2 * SAMPLE, T0 + 3 * SAMPLE]  # stamped at their tick


def test_a_full_buffer_drops_the_oldest_row_not_in_flight_and_says_so(tmp_path, server, server_dut, proxy):
    s = Sim(tmp_path, server_dut, metrics_buffer_rows=4, metrics_request_rows=2, metrics_reply_timeout_s=600.0)
    s.provision(proxy.url, df=register(server, s.format_json()))
    s.advance(3 * SAMPLE)  # rows 1 2 3
    proxy.mode = "slow"
    proxy.hold_s = 0.3  # then it closes the connection: dropped
    s.clock.t += 1
    s.ok("METRICS REPORT")
    s.tick()  # rows 1 2 in flight
    s.advance(4 * SAMPLE)  # rows 4 5 6 7: 3, 4, 5 dropped in turn
    st = s.status()
    assert (st["rows"], st["dropped"], st["inflight"]) == ("4", "3", "1")
    deadline = time.monotonic() + 6
    while not any(e.startswith("! EVT metrics_failed") for e in s.events) and time.monotonic() < deadline:
        s.tick()
        time.sleep(0.01)
    proxy.mode = "pass"
    assert s.session()["rows"] == "2"
    assert s.session()["rows"] == "2"
    times = row_times(server)
    assert times == [T0 + 60, T0 + 120, T0 + 360, T0 + 420]  # 180, 240, 300 were dropped
    assert accepted(server)[-1].simple["data"]["rows_dropped"] == 3


def test_tokens_in_the_reply_are_entered_and_auts_recorded(sim, server, server_dut):
    target = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    server.registry.set_target(server_dut.serial_number, target)
    done = sim.session()
    assert done["tokens"] == "1/1"
    status = sim.ok("STATUS")
    count = str(server.registry.count(server_dut.serial_number))  # a SET_TIME token: the next odd count
    assert status["payg"] == "active" and int(status["left"]) >= 3 * 86400 - 5 and status["count"] == count
    assert sim.status()["auts"] == str(int(target.timestamp()))
    assert sim.session()["tokens"] == "0/0"  # the device reported the new count: nothing more to send
    sim.fw = Firmware(sim.store, sim.rtc, sim.config, "power", clock=sim.clock)
    assert sim.ok("STATUS")["count"] == count  # entered through the token path: in NVM


def test_a_new_base_url_is_followed_and_kept(tmp_path, start_metrics_server, server_dut):
    new = start_metrics_server()
    old = start_metrics_server(MetricsServerConfig(announce_base_url=new.url))
    s = Sim(tmp_path, server_dut)
    s.provision(old.url)  # df=0: no format to register on either server
    s.advance(SAMPLE)
    assert s.session()["event"] == "metrics_done"
    assert f"! EVT metrics_settings base_url={new.url}" in s.events
    assert s.store.load().state.metrics_url == new.url
    s.advance(SAMPLE)
    assert s.session()["rows"] == "1"
    assert len(accepted(old)) == 1 and len(accepted(new)) == 1
    s.boot()  # a power cycle: the URL is in NVM, the mode is the build's again
    assert s.ok("METRICS CONFIG")["url"] == new.url and s.ok("METRICS CONFIG")["mode"] == "off"


def test_rc_and_ts_keep_increasing_across_a_power_cycle(sim, server):
    sim.advance(SAMPLE)
    assert sim.session()["rc"] == "1"
    sim.boot()  # RAM lost: mode back to the build's, rows gone; rc and url in NVM
    sim.ok("METRICS CONFIG mode=direct")
    assert sim.session()["rc"] == "2"
    reqs = accepted(server)
    assert [r.simple["request_count"] for r in reqs] == [1, 2]
    assert reqs[1].simple["timestamp"] > reqs[0].simple["timestamp"]


def test_metrics_off_changes_nothing(tmp_path, server_dut):
    s = Sim(tmp_path, server_dut)
    d = server_dut
    assert s(f"PROV sn={d.serial_number} key={d.key.reveal()} sc={d.starting_code}").startswith("OK")
    s.advance(10 * SAMPLE)
    assert s.events == [] and "metrics_report" not in s.ok("ID")["caps"]
    assert s("METRICS REPORT").startswith("ERR 409")
    assert s.status()["rows"] == "0"


@pytest.mark.parametrize(
    "line, code",
    [
        ("METRICS CONFIG mode=fast", 400),
        ("METRICS CONFIG period=0", 400),
        ("METRICS CONFIG period=1e3", 400),
        ("METRICS CONFIG sample=0", 400),
        ("METRICS CONFIG enc=xml", 400),
        ("METRICS CONFIG url=ftp://x", 400),
        ("METRICS CONFIG auth=zz", 400),
        ("METRICS CONFIG colour=red", 400),
        ("METRICS IMPORT b64=e30=", 409),
        ("METRICS IMPORT b64=e30= x=1", 400),
        ("METRICS NOW", 400),
    ],
)
def test_metrics_command_errors(sim, line, code):
    assert sim(line).startswith(f"ERR {code} ")


def test_a_bad_build_config_is_refused():
    with pytest.raises(ValueError, match="mode"):
        FirmwareConfig(metrics_mode="sometimes")
    with pytest.raises(ValueError, match="per request"):
        FirmwareConfig(metrics_buffer_rows=4, metrics_request_rows=4)


# -- bridge mode ---------------------------------------------------------------------------------


def relay(sim: Sim, server, export: dict[str, str]) -> str:
    """What the bench relay does: POST the exported request, IMPORT the reply."""
    answer = server.post("/dd", base64.b64decode(export["b64"]), export["ct"])
    assert answer.status == 201, answer.body
    return sim(f"METRICS IMPORT b64={base64.b64encode(answer.body).decode()} ct={answer.content_type}")


def test_bridge_announces_exports_and_clears_on_import(tmp_path, server, server_dut):
    s = Sim(tmp_path, server_dut)
    s.provision(df=register(server, s.format_json()), mode="bridge", period=600)
    s.advance(600)  # 10 rows, then the session: a request made and announced
    assert s.events[-1].startswith("! EVT metrics_pending rc=1 rows=10 bytes=")
    s.advance(600)  # nobody took it: announced again, same rc; the new rows wait behind it
    assert s.events[-1].startswith("! EVT metrics_pending rc=1 rows=10")
    export = s.ok("METRICS EXPORT")
    assert export["rc"] == "1" and export["ct"] == "application/json"
    s.advance(SAMPLE)
    assert relay(s, server, export) == "OK tokens=0/0 rc=1 rows=10"
    assert s.status()["rows"] == "11"
    export = s.ok("METRICS EXPORT")  # nothing announced: a request now
    assert export["rc"] == "2"
    assert relay(s, server, export).endswith("rc=2 rows=11")
    assert row_times(server) == [T0 + SAMPLE * i for i in range(1, 22)]
    assert s("METRICS IMPORT b64=e30=").startswith("ERR 409")  # nothing awaits a reply now


def test_bridge_refuses_a_reply_that_is_not_its_own_and_keeps_waiting(tmp_path, server, server_dut):
    s = Sim(tmp_path, server_dut)
    s.provision(mode="bridge")
    s.advance(SAMPLE)
    export = s.ok("METRICS EXPORT")
    other = json.dumps({"sn": "SOMEONE", "tkl": []}).encode()
    assert s(f"METRICS IMPORT b64={base64.b64encode(other).decode()}").startswith("ERR 422 reply refused: not_own")
    forged = json.dumps({"sn": server_dut.serial_number, "auts": T0, "a": "da0123"}).encode()
    assert s(f"METRICS IMPORT b64={base64.b64encode(forged).decode()}").startswith("ERR 422 reply refused: bad_auth")
    assert s.status()["inflight"] == "1"
    assert relay(s, server, export).endswith("rc=1 rows=1")


@pytest.mark.parametrize("auth", ["ta", "ra"])
def test_two_exports_in_one_second(tmp_path, server, server_dut, auth):
    """A second EXPORT supersedes the first (new rc). Under timestamp auth, made in the same RTC
    second, it takes the next second for its ts and is handed over when the RTC gets there; under
    any other auth rc guards it, so it carries the same second and leaves at once."""
    s = Sim(tmp_path, server_dut)
    s.provision(mode="bridge", auth=auth)
    s.advance(SAMPLE)
    first = json.loads(base64.b64decode(s.ok("METRICS EXPORT")["b64"]))
    reply = s.fw.handle("METRICS EXPORT")
    second = json.loads(base64.b64decode(parse_fields(reply.line[2:])["b64"]))
    assert second["rc"] == first["rc"] + 1 and second["hd"] == first["hd"]  # the same rows, once each per request
    if auth == "ta":
        assert second["ts"] == first["ts"] + 1 and 0 < reply.delay_s <= 1
    else:
        assert second["ts"] == first["ts"] and reply.delay_s == 0


def _session_end(s: Sim, since: int, timeout_s: float) -> bool:
    """Tick (real time) until a session ended after event `since`; False if none did in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        s.tick()
        if any(e.startswith(("! EVT metrics_done", "! EVT metrics_failed")) for e in s.events[since:]):
            return True
        time.sleep(0.005)
    return False


@pytest.mark.parametrize("auth", ["ta", "ra"])
def test_sessions_in_one_rtc_second(tmp_path, server, server_dut, auth):
    """At a sub-second period a device under ra reports as often as its period says, each
    request in the same RTC second with a higher rc, and the server takes every one; under ta a
    session waits for the next RTC second (ts is the guard there)."""
    s = Sim(tmp_path, server_dut)
    s.provision(server.url, auth=auth, period=0.25)
    s.advance(SAMPLE)  # rows, and the first session (rc 1), in RTC second T0 + SAMPLE
    assert _session_end(s, 0, 5.0)
    for _ in range(3):
        s.clock.t += 0.25
        assert _session_end(s, len(s.events), 5.0 if auth == "ra" else 0.3) is (auth == "ra")
    assert int(s.rtc.now()) == T0 + SAMPLE  # all within one RTC second
    reqs = accepted(server)
    assert [r.simple["request_count"] for r in reqs] == ([1, 2, 3, 4] if auth == "ra" else [1])
    assert {r.simple["timestamp"] for r in reqs} == {T0 + SAMPLE}


# -- end to end: a virtual rig process, its UART and its PSU, and the server over HTTP -----------


def test_end_to_end_through_a_virtual_rig_process(server, server_dut):
    proc = start_virtual_rig({"psu_decay_s": 0.0, "boot_delay_s": 0.01})
    link = SerialLink(proc.port, log=TrafficLog(), poll_s=0.01).open()
    psu = Psu.open(proc.visa, "paygo-sim", proc.channel)
    try:
        psu.set_voltage(12.0)
        adapter = ReferenceAdapter(link, reply_timeout_s=2.0)
        since = time.monotonic()
        psu.output(True)
        adapter.wait_boot(5.0, since=since)
        adapter.provision(
            Provisioning(
                server_dut.serial_number, server_dut.key, server_dut.starting_code, metrics_url=server.url, auth="ra"
            )
        )
        assert link.request("METRICS CONFIG mode=direct period=0.2 sample=1", 2.0).startswith("OK mode=direct")
        for rc in (1, 2):
            done = link.wait_event("! EVT metrics_done", 6.0)
            assert f"rc={rc} " in done, done
        reqs = accepted(server)
        assert [r.simple["request_count"] for r in reqs][:2] == [1, 2]
        times = row_times(server)
        assert len(times) == len(set(times))  # no row twice
        status = parse_fields(link.request("METRICS STATUS", 2.0)[2:])
        assert int(status["rc"]) >= 2 and status["last"] == "ok"
    finally:
        psu.output(False)
        psu.close()
        link.close()
        proc.stop()
