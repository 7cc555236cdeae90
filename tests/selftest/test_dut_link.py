"""The host side of the UART: SerialLink, the reference protocol adapter, the traffic log and the
link errors, against a scripted fake device on a REAL pty (and on a loopback TCP socket for
`socket://` URLs). The fake device is a thread that reads request lines from the pty master and
writes back scripted bytes: events, noise, late replies, garbage, or it hangs up.
"""

from __future__ import annotations

import os
import re
import select
import socket
import threading
import time
import tty
from collections.abc import Callable, Iterable

import pytest

from bench.dut.adapter import Provisioning
from bench.dut.errors import (
    DeviceRefused,
    DutError,
    LinkSilent,
    PortOpenError,
    PortVanished,
    ProtocolError,
    RigBroken,
    WaitAborted,
)
from bench.dut.link import SerialLink
from bench.dut.reference import ReferenceAdapter
from bench.dut.traffic import TrafficLog
from bench.secret import Secret

KEY = "a29ab82edc5fbbc41ec9530f6dac86b1"

CLOSE = object()  # script step: the device hangs up (pty master / socket closed)
Step = bytes | float | object  # bytes: write them; float: sleep; CLOSE: hang up
Handler = Callable[[str], Iterable[Step]]


class FakeDevice:
    """A scripted device on one end of a real byte pipe. `handler(request) -> steps`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.received: list[str] = []
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    # subclasses: url, _read(timeout) -> bytes | None (None: gone), _write(data), _hangup()
    def start(self) -> FakeDevice:
        self._thread.start()
        return self

    def send(self, data: bytes) -> None:
        """Unsolicited bytes (e.g. a boot banner) outside any request."""
        self._write(data)

    def _run(self) -> None:
        buf = b""
        while not self._stop.is_set() and not self._closed:
            data = self._read(0.02)
            if data is None:
                return
            buf += data
            while b"\n" in buf and not self._closed:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode("ascii", "replace")
                self.received.append(line)
                for step in self.handler(line):
                    if step is CLOSE:
                        self._closed = True
                        self._hangup()
                        break
                    if isinstance(step, float):
                        time.sleep(step)
                    else:
                        self._write(step)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        if not self._closed:
            self._closed = True
            self._hangup()


class PtyDevice(FakeDevice):
    def __init__(self, handler: Handler) -> None:
        super().__init__(handler)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no \n -> \r\n rewriting
        self.url = os.ttyname(self.slave)

    def _read(self, timeout: float) -> bytes | None:
        try:
            ready, _, _ = select.select([self.master], [], [], timeout)
            return os.read(self.master, 4096) if ready else b""
        except OSError:
            return None if self._closed else b""

    def _write(self, data: bytes) -> None:
        os.write(self.master, data)

    def _hangup(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


class TcpDevice(FakeDevice):
    def __init__(self, handler: Handler) -> None:
        super().__init__(handler)
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.url = f"socket://127.0.0.1:{self.server.getsockname()[1]}"
        self.conn: socket.socket | None = None

    def _read(self, timeout: float) -> bytes | None:
        if self.conn is None:
            ready, _, _ = select.select([self.server], [], [], timeout)
            if ready:
                self.conn, _ = self.server.accept()
            return b""
        ready, _, _ = select.select([self.conn], [], [], timeout)
        if not ready:
            return b""
        try:
            data = self.conn.recv(4096)
        except OSError:
            return None
        return data if data else None

    def _write(self, data: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(data)

    def _hangup(self) -> None:
        for s in (self.conn, self.server):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass


def script(table: dict[str, list[Step]]) -> Handler:
    """Replies by request line; unknown requests get nothing (a silent device)."""
    return lambda line: table.get(line, [])


@pytest.fixture
def device_factory():
    made: list[FakeDevice] = []
    links: list[SerialLink] = []

    def make(table_or_handler, kind=PtyDevice) -> tuple[FakeDevice, SerialLink]:
        handler = script(table_or_handler) if isinstance(table_or_handler, dict) else table_or_handler
        dev = kind(handler).start()
        made.append(dev)
        link = SerialLink(dev.url, log=TrafficLog(), poll_s=0.01).open()
        links.append(link)
        return dev, link

    yield make
    for link in links:
        link.close()
        link.log.close()
    for dev in made:
        dev.stop()


# -- replies, events, framing --------------------------------------------------------------------


@pytest.mark.parametrize("kind", [PtyDevice, TcpDevice], ids=["pty", "socket"])
def test_reply_after_interleaved_events(device_factory, kind):
    """Unsolicited '!' lines before the reply are queued as events; the reply is returned."""
    dev, link = device_factory(
        {"ID": [b"! EVT payg state=expired\n", b"! LOG decoding\n", b"OK model=X fw=1 proto=1.0\n"]}, kind
    )
    assert link.request("ID", 1.0) == "OK model=X fw=1 proto=1.0"
    assert [line for _, line in link.events] == ["! EVT payg state=expired", "! LOG decoding"]
    assert dev.received == ["ID"]


def test_reply_split_across_reads(device_factory):
    """A reply arriving in pieces (slow UART) is assembled into one line."""
    _, link = device_factory({"PING": [b"O", 0.03, b"K po", 0.03, b"ng\n"]})
    assert link.request("PING", 1.0) == "OK pong"


def test_noise_before_line_is_ignored(device_factory):
    """NUL/0xFF bytes (a UART around power transitions) around or before a line are dropped,
    and a line of only noise is not a reply."""
    _, link = device_factory({"PING": [b"\x00\x00\xff\xff\n\x00\xff", b"\x00OK\x00\r\n"]})
    assert link.request("PING", 1.0) == "OK"


def test_crlf_endings(device_factory):
    """'\\r\\n' line endings are accepted; the '\\r' is not part of the reply."""
    _, link = device_factory({"A": [b"OK a=1\r\n"], "B": [b"! EVT x\r\nOK b=2\r\n"]})
    assert link.request("A", 1.0) == "OK a=1"
    assert link.request("B", 1.0) == "OK b=2"
    assert link.events[-1][1] == "! EVT x"


def test_empty_lines_are_skipped(device_factory):
    """Blank lines are neither replies nor events."""
    _, link = device_factory({"PING": [b"\n\r\n  \nOK\n"]})
    assert link.request("PING", 1.0) == "OK"
    assert not link.events


def test_non_ascii_reply_is_escaped(device_factory, tmp_path):
    """Non-ASCII bytes in a reply come through backslash-escaped (no crash), also in the log."""
    dev, link = device_factory({"ID": [b"OK model=caf\xc3\xa9 x=\xfe\x80\n"]})
    link.log.to_file(tmp_path / "t.log")
    reply = link.request("ID", 1.0)
    assert reply == "OK model=caf\\xc3\\xa9 x=\\xfe\\x80"
    assert reply.isascii()
    assert "caf\\xc3\\xa9" in (tmp_path / "t.log").read_text()


def test_events_are_timestamped_and_wait_event_skips_stale_ones(device_factory):
    """wait_event('! BOOT', since=t) ignores banners queued before t and waits for a new one."""
    dev, link = device_factory({"ID": [b"! BOOT n=1\nOK\n"], "REBOOT": [b"OK\n", 0.05, b"! BOOT n=2\n"]})
    link.request("ID", 1.0)
    since = time.monotonic()
    link.request("REBOOT", 1.0)
    assert link.wait_event("! BOOT", 1.0, since=since) == "! BOOT n=2"


def test_wait_event_times_out_with_link_silent(device_factory):
    """No banner before the deadline: LinkSilent naming the awaited line."""
    dev, link = device_factory({})
    with pytest.raises(LinkSilent, match="! BOOT"):
        link.wait_event("! BOOT", 0.1)


# -- deadlines and late replies -------------------------------------------------------------------


def test_no_reply_is_link_silent_naming_port_request_and_last_lines(device_factory):
    """A silent device: LinkSilent (not a rig failure) names the port, the request, the deadline
    and the last lines seen."""
    dev, link = device_factory({"ID": [b"! EVT hello\nOK model=X\n"]})
    link.request("ID", 1.0)
    t0 = time.monotonic()
    with pytest.raises(LinkSilent) as ei:
        link.request("STATUS", 0.2)
    assert 0.2 <= time.monotonic() - t0 < 1.0
    e = ei.value
    msg = str(e)
    assert dev.url in msg and "'STATUS'" in msg and "0.2 s" in msg
    assert "OK model=X" in msg and "! EVT hello" in msg
    assert e.port == dev.url and e.timeout_s == 0.2 and "OK model=X" in e.last_lines
    assert not isinstance(e, RigBroken) and isinstance(e, DutError)


def test_abort_when_ends_a_wait_early_and_only_inside(device_factory):
    """abort_when(check): a wait with no input asks check() every poll_s; its first reason
    ends the wait at once with WaitAborted (a LinkSilent) naming the request and the reason. A
    reply that arrives is still a reply; outside the block waits run to their deadline."""
    dev, link = device_factory({"PING": [b"OK pong\n"], "SLOW": [0.3, b"OK late\n"]})
    cut_at = time.monotonic() + 0.05
    calls = []

    def check():
        calls.append(time.monotonic())
        return "the supply was cut" if time.monotonic() >= cut_at else None

    with link.abort_when(check, poll_s=0.002):
        assert link.request("PING", 1.0) == "OK pong"
        t0 = time.monotonic()
        with pytest.raises(WaitAborted) as ei:
            link.request("SLOW", 5.0)
        assert time.monotonic() - t0 < 0.2
        with pytest.raises(RuntimeError, match="nest"):
            with link.abort_when(check):
                pass
    e = ei.value
    assert isinstance(e, LinkSilent) and e.why == "the supply was cut"
    assert "'SLOW'" in str(e) and "the supply was cut" in str(e) and dev.url in str(e)
    assert len(calls) >= 5
    assert link._port.timeout == link.poll_s  # restored
    with pytest.raises(LinkSilent) as again:
        link.request("NOPE", 0.1)
    assert not isinstance(again.value, WaitAborted)


def test_link_silent_before_anything_received(device_factory):
    """With nothing received yet, the message says so."""
    dev, link = device_factory({})
    with pytest.raises(LinkSilent, match="nothing received yet"):
        link.request("PING", 0.1)


def test_late_reply_is_discarded_before_next_request(device_factory):
    """A reply that arrives after its request timed out must not answer the next request."""
    dev, link = device_factory({"SLOW": [0.25, b"OK late\n"], "PING": [b"OK pong\n"]})
    with pytest.raises(LinkSilent):
        link.request("SLOW", 0.1)
    time.sleep(0.35)  # the late reply is now waiting in the port
    assert link.request("PING", 1.0) == "OK pong"


def test_extra_reply_already_buffered_is_discarded(device_factory, tmp_path):
    """A second reply line that arrived with the first (already in the link's buffer) is
    dropped by the next request's drain, noted in the log, and never answers that request."""
    dev, link = device_factory({"ID": [b"OK first\nOK second\n"], "PING": [b"OK pong\n"]})
    link.log.to_file(tmp_path / "t.log")
    assert link.request("ID", 1.0) == "OK first"
    assert link.request("PING", 1.0) == "OK pong"
    text = (tmp_path / "t.log").read_text()
    assert " RX OK second\n" in text
    assert "arrived after its request timed out; discarded" in text
    assert text.index(" RX OK second") < text.index(" TX PING")


# -- the port going away --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [PtyDevice, TcpDevice], ids=["pty", "socket"])
def test_device_hangs_up_is_port_vanished(device_factory, kind):
    """The device end disappears (USB-CDC unplugged / socket closed): PortVanished, a RigBroken,
    naming the port and what the link was doing; the link is closed afterwards."""
    dev, link = device_factory({"ID": [b"OK model=X\n"], "BYE": [CLOSE]}, kind)
    link.request("ID", 1.0)
    with pytest.raises(PortVanished) as ei:
        link.request("BYE", 2.0)
    e = ei.value
    assert isinstance(e, RigBroken)
    assert e.port == dev.url and dev.url in str(e) and "BYE" in str(e)
    assert "OK model=X" in str(e)
    with pytest.raises(PortVanished, match=re.escape(dev.url)):  # and it stays gone
        link.request("ID", 0.5)


def test_port_vanished_on_send_closes_the_link(device_factory):
    """Whichever operation finds the port gone, the link ends up closed (is_open False)."""
    dev, link = device_factory({"ID": [b"OK\n"]})
    link.request("ID", 1.0)
    dev.stop()  # the device end disappears between requests
    time.sleep(0.05)
    with pytest.raises(PortVanished, match="sending 'PING'"):  # found by the pre-request drain or by the write
        link.request("PING", 0.5)
    assert not link.is_open


def test_open_missing_port_is_port_open_error(tmp_path):
    """Opening a serial device that does not exist: PortOpenError (RigBroken) naming the port."""
    path = str(tmp_path / "ttyNOPE")
    with pytest.raises(PortOpenError) as ei:
        SerialLink(path).open()
    assert isinstance(ei.value, RigBroken) and ei.value.port == path and path in str(ei.value)


def test_open_refused_socket_is_port_open_error():
    """A socket:// URL nobody listens on: PortOpenError naming the URL."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    url = f"socket://127.0.0.1:{port}"
    with pytest.raises(PortOpenError, match=re.escape(url)):
        SerialLink(url).open()


def test_send_on_closed_link_is_port_vanished(device_factory):
    """A request on a link that was closed is PortVanished (not an AttributeError)."""
    dev, link = device_factory({"PING": [b"OK\n"]})
    link.close()
    assert not link.is_open
    with pytest.raises(PortVanished, match="closed"):
        link.request("PING", 0.2)


# -- the reference adapter: parsing at the edge ---------------------------------------------------


def adapter_for(device_factory, reply: bytes, request: str) -> tuple[FakeDevice, ReferenceAdapter]:
    dev, link = device_factory({request: [reply]})
    return dev, ReferenceAdapter(link, reply_timeout_s=1.0)


BAD_REPLIES = [
    ("ID", lambda a: a.identify(), "HELLO THERE", "neither"),
    ("ID", lambda a: a.identify(), "OKAY model=X", "neither"),
    ("ID", lambda a: a.identify(), "OK model=X fw=1", "lacks proto=, sn=, caps="),
    ("ID", lambda a: a.identify(), "ERR xyz broken", "without a numeric code"),
    (
        "STATUS",
        lambda a: a.status(),
        "OK payg=active active_until=17x left=0 count=1 invalid=0 locked=0",
        "non-integer",
    ),
    ("STATUS", lambda a: a.status(), "OK payg=maybe active_until=1 left=0 count=1 invalid=0 locked=0", "payg"),
    ("RTC", lambda a: a.rtc_read(), "OK t=noon", "non-numeric"),
    ("NVM", lambda a: a.nvm_info(), "OK slot=A seq=1 crc=ok writes=many size=4096", "non-integer"),
    ("METRICS EXPORT", lambda a: a.metrics_export(), "OK ct=application/json rc=x b64=e30=", "non-integer rc="),
    ("METRICS EXPORT", lambda a: a.metrics_export(), "OK ct=text/plain rc=1 b64=e30=", "unknown content type"),
    ("METRICS EXPORT", lambda a: a.metrics_export(), "OK ct=application/json rc=1 b64=e3!0", "not base64"),
    ("METRICS EXPORT", lambda a: a.metrics_export(), "OK ct=application/json b64=e30=", "lacks rc="),
    ("TOKEN 123456789", lambda a: a.enter_token("123456789"), "OK value=1", "lacks result="),
]

TOKEN_BAD = [
    ("OK result=accepted type=ADD_TIME value=1 count=x", "non-integer count="),
    ("OK result=accepted type=TELEPORT value=1 count=2", "unknown token type"),
    ("OK result=maybe", "unknown result"),
    ("OK result=accepted type=ADD_TIME count=2", "lacks value="),
    ("OK result=locked", "lacks seconds="),
    ("OK result=locked seconds=soon", "non-integer seconds="),
]


@pytest.mark.parametrize("request_line,call,reply,problem", BAD_REPLIES)
def test_malformed_reply_is_protocol_error(device_factory, request_line, call, reply, problem):
    """A reply the adapter cannot parse raises ProtocolError naming port, request, problem."""
    dev, a = adapter_for(device_factory, reply.encode() + b"\n", request_line)
    with pytest.raises(ProtocolError) as ei:
        call(a)
    msg = str(ei.value)
    assert ei.value.port == dev.url and dev.url in msg
    assert request_line in msg and problem in msg, msg


@pytest.mark.parametrize("reply,problem", TOKEN_BAD)
def test_malformed_token_reply_is_protocol_error(device_factory, reply, problem):
    """Bad TOKEN replies (non-integer count, unknown type/result, missing fields) are
    ProtocolError naming port, request and the problem."""
    dev, a = adapter_for(device_factory, reply.encode() + b"\n", "TOKEN 123456789")
    with pytest.raises(ProtocolError) as ei:
        a.enter_token("123456789")
    msg = str(ei.value)
    assert dev.url in msg and "TOKEN 123456789" in msg and problem in msg, msg


@pytest.mark.parametrize(
    "request_line,call,reply",
    [
        pytest.param("ID", lambda a: a.identify(), "OK model=X fw=1", id="ID-missing"),
        pytest.param("ID", lambda a: a.identify(), "HELLO THERE", id="ID-garbage"),
    ]
    + [
        pytest.param(
            "TOKEN 123456789",
            lambda a: a.enter_token("123456789"),
            r,
            id=f"TOKEN-{p}",
        )
        for r, p in TOKEN_BAD
    ]
    + [
        pytest.param(
            "STATUS",
            lambda a: a.status(),
            "OK payg=active active_until=17x left=0 count=1 invalid=0 locked=0",
            id="STATUS-nonint",
        )
    ],
)
def test_protocol_error_carries_the_whole_reply_line(device_factory, request_line, call, reply):
    """ProtocolError.line (and the message) is the reply line as received, so a report shows
    what the device actually said."""
    dev, a = adapter_for(device_factory, reply.encode() + b"\n", request_line)
    with pytest.raises(ProtocolError) as ei:
        call(a)
    assert ei.value.line == reply
    assert repr(reply) in str(ei.value)


def test_good_replies_parse(device_factory):
    """The happy path of every reference command parses into typed values."""
    dev, link = device_factory(
        {
            "ID": [b"OK model=M fw=2 proto=1.3 sn=- caps=token,status,rtc new=ignored\n"],
            "TOKEN 123456789": [b"OK result=accepted type=DISABLE_PAYG value=- count=3\n"],
            "TOKEN 000000000": [b"OK result=locked seconds=42\n"],
            "STATUS": [b"OK payg=active active_until=100 left=5 count=3 invalid=1 locked=0 extra=1\n"],
            "RTC": [b"OK t=1700000000.125\n"],
            "NVM": [b"OK slot=B seq=9 crc=bad writes=3 size=4096\n"],
            "PING": [b"OK\n"],
            "METRICS EXPORT": [b"OK ct=application/cbor rc=7 b64=oWFhAQ==\n"],
        }
    )
    a = ReferenceAdapter(link, reply_timeout_s=1.0)
    ident = a.identify()
    assert (ident.model, ident.protocol, ident.serial_number) == ("M", "1.3", None)
    assert ident.capabilities == frozenset({"token", "status", "rtc"}) == a.capabilities
    out = a.enter_token("123456789")
    assert (out.result, out.kind, out.value, out.count) == ("accepted", "DISABLE_PAYG", None, 3)
    assert a.enter_token("000000000").locked_s == 42
    s = a.status()
    assert (s.payg, s.active_until, s.seconds_left, s.token_count, s.invalid_streak) == ("active", 100, 5, 3, 1)
    assert a.rtc_read() == 1700000000.125
    n = a.nvm_info()
    assert (n.slot, n.seq, n.crc_ok, n.writes) == ("B", 9, False, 3)
    m = a.metrics_export()
    assert (m.content_type, m.request_count, m.payload) == ("application/cbor", 7, b"\xa1aa\x01")
    a.ping()


def test_err_409_is_device_refused(device_factory):
    """ERR <code> <reason> becomes DeviceRefused with the code and reason, port and request."""
    dev, a = adapter_for(device_factory, b"ERR 409 not provisioned\n", "STATUS")
    with pytest.raises(DeviceRefused) as ei:
        a.status()
    e = ei.value
    assert (e.code, e.reason, e.port, e.request) == (409, "not provisioned", dev.url, "STATUS")
    assert "ERR 409 not provisioned" in str(e) and not isinstance(e, RigBroken)


# -- the traffic log ------------------------------------------------------------------------------

LOG_LINE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) \+\s*(\d+\.\d{6}) (TX|RX|EV|--) (.*)")


def test_traffic_log_stamps_directions_and_masks_the_key(device_factory, tmp_path):
    """The log file has a UTC and a monotonic stamp and a direction on every line; the key is
    masked in TX (PROV) and in an RX line that echoes it, and that RX line is recorded as a leak.
    The wire itself carried the real key (masking is for the log only)."""
    dev, link = device_factory(
        lambda line: [b"! EVT prov\n", f"OK sn=SIM1 key={KEY.upper()}\n".encode()] if line.startswith("PROV") else []
    )
    path = tmp_path / "logs" / "serial.log"
    link.log.to_file(path)
    a = ReferenceAdapter(link, reply_timeout_s=1.0)
    assert a.provision(Provisioning("SIM1", Secret(KEY, "device key"), 123456789)) == "SIM1"
    link.log.close()
    assert dev.received and f"key={KEY}" in dev.received[0]  # the device got the real key

    text = path.read_text()
    assert KEY not in text.lower()
    entries = [LOG_LINE.fullmatch(line) for line in text.splitlines()]
    assert all(entries), text
    directions = [m.group(3) for m in entries]
    assert ["TX", "EV", "RX"] == [d for d in directions if d != "--"]
    tx = next(m.group(4) for m in entries if m.group(3) == "TX")
    rx = next(m.group(4) for m in entries if m.group(3) == "RX")
    assert tx.startswith("PROV sn=SIM1 key=*** sc=123456789")
    assert rx == "OK sn=SIM1 key=***"
    offsets = [float(m.group(2)) for m in entries]
    assert offsets == sorted(offsets)
    assert link.log.leaks == ["OK sn=SIM1 key=***"]


def test_traffic_log_without_secret_has_no_leaks(device_factory):
    """Ordinary traffic records no leak."""
    dev, link = device_factory({"PING": [b"OK\n"]})
    link.request("PING", 1.0)
    assert link.log.leaks == [] and list(link.log.recent) == ["OK"]


def test_link_silent_on_prov_masks_the_key(device_factory):
    """An error about a PROV request shows key=***, never the key."""
    dev, link = device_factory({})
    link.log.add_secret(Secret(KEY))
    with pytest.raises(LinkSilent) as ei:
        link.request(f"PROV sn=S key={KEY} sc=1", 0.1)
    assert KEY not in str(ei.value) and "key=***" in str(ei.value)


@pytest.mark.parametrize("reply", [f"ERR 400 bad key {KEY}", f"OK key={KEY}"], ids=["refused", "protocol-error"])
def test_key_echoed_in_bad_reply_is_masked_in_exception(device_factory, reply):
    """Whatever the device answers to PROV, the exception raised never contains the key."""
    dev, link = device_factory(lambda line: [reply.encode() + b"\n"] if line.startswith("PROV") else [])
    a = ReferenceAdapter(link, reply_timeout_s=1.0)
    with pytest.raises((DeviceRefused, ProtocolError)) as ei:
        a.provision(Provisioning("SIM1", Secret(KEY), 123456789))
    assert KEY not in str(ei.value).lower()
    assert link.log.leaks  # the log side did catch it
