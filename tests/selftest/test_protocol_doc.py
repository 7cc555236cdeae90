"""docs/protocol.md's statements that an implementation written from the document alone got wrong,
checked against its reference implementation (the simulated firmware, bench/sim/firmware.py)
request by request: each test fails if the simulator disagrees with the document.

Expected tokens come from the bench's TokenGenerator, expected replies from the document's text."""

from __future__ import annotations

import base64
import json

import pytest

from bench.openpaygo.metrics.format import parse_data_format
from bench.openpaygo.tokens import TokenGenerator, TokenKind
from bench.sim.eeprom import Eeprom
from bench.sim.firmware import Firmware
from bench.sim.firmware_config import FirmwareConfig
from bench.sim.nvstate import RecordStore
from bench.sim.rtc import Rtc

KEY = "a29ab82edc5fbbc41ec9530f6dac86b1"
SC = 123456789
SN = "SIM000001"
T0 = 1_700_000_000
ADD, SET, SYNC = TokenKind.ADD_TIME, TokenKind.SET_TIME, TokenKind.COUNTER_SYNC


class Device:
    """The reference firmware on an EEPROM image, its RTC and MCU tick on a clock the test moves."""

    def __init__(self, tmp_path, **config) -> None:
        self.t = 5000.0
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.store = RecordStore(Eeprom(tmp_path / "e.bin", page_write_s=0))
        self.rtc = Rtc(start=T0, clock=self.clock)
        self.config = FirmwareConfig(**config)
        self.boot()

    def clock(self) -> float:
        return self.t

    def boot(self) -> None:
        self.fw = Firmware(self.store, self.rtc, self.config, "power", clock=self.clock)

    def __call__(self, line: str) -> str:
        return self.fw.handle(line).line

    def ok(self, line: str) -> dict[str, str]:
        reply = self(line)
        assert reply == "OK" or reply.startswith("OK "), f"{line!r} -> {reply!r}"
        return dict(w.split("=", 1) for w in reply.split()[1:])

    def advance(self, seconds: int) -> None:
        for _ in range(seconds):
            self.t += 1
            self.fw.tick()


def provisioned(tmp_path, count: int | None = 1, extra: str = "", **config) -> Device:
    d = Device(tmp_path, **config)
    line = f"PROV sn={SN} key={KEY} sc={SC}" + (f" count={count}" if count is not None else "") + extra
    assert d(line) == f"OK sn={SN}"
    return d


def token(kind: TokenKind, count: int, value: int | None = 1, **gen) -> str:
    return TokenGenerator(KEY, SC, **gen).at_count(kind, None if kind is SYNC else value, count).code


# -- "Tokens": count= is the token's own count ----------------------------------------------------


def test_token_reply_count_is_the_tokens_own_count(tmp_path):
    """The document's example: on a device at count 10, an ADD generated at count 8 answers
    `count=8` while STATUS still says `count=10`; a newer token moves STATUS to its count; a
    COUNTER_SYNC sets STATUS to its own count, down too."""
    d = provisioned(tmp_path, count=10)
    assert d(f"TOKEN {token(ADD, 8)}") == "OK result=accepted type=ADD_TIME value=1 count=8"
    assert d.ok("STATUS")["count"] == "10"
    assert d(f"TOKEN {token(ADD, 14)}").endswith(" count=14")
    assert d(f"TOKEN {token(ADD, 12)}").endswith(" count=12")
    assert d.ok("STATUS")["count"] == "14"
    assert d(f"TOKEN {token(SYNC, 6)}") == "OK result=accepted type=COUNTER_SYNC value=- count=6"
    assert d.ok("STATUS")["count"] == "6"


# -- "Provisioning": the counts after PROV count=N ------------------------------------------------


def test_prov_count_n_example(tmp_path):
    """The document's example for `count=10`, in its order."""
    d = provisioned(tmp_path, count=10)
    st = d.ok("STATUS")
    assert (st["payg"], st["active_until"], st["left"], st["count"], st["invalid"], st["locked"]) == (
        "inactive",
        "0",
        "0",
        "10",
        "0",
        "0",
    )
    assert d(f"TOKEN {token(ADD, 8)}").startswith("OK result=accepted type=ADD_TIME value=1 count=8")
    assert d(f"TOKEN {token(ADD, 8)}") == "OK result=already_used"
    assert d(f"TOKEN {token(ADD, 6)}").endswith(" count=6")
    assert d(f"TOKEN {token(ADD, 12)}").endswith(" count=12")
    assert d(f"TOKEN {token(SET, 9)}") == "OK result=already_used"


def test_prov_count_n_used_and_unused_counts(tmp_path):
    """After `PROV count=20`: 20 and every odd count below it are used; the even counts 6..18
    (20 - 16 < c < 20) are not; 4 is outside the window. Without count= the count is 1."""
    d = provisioned(tmp_path, count=20)
    for kind, count in ((ADD, 20), (SET, 19), (SET, 7), (ADD, 4)):
        assert d(f"TOKEN {token(kind, count)}") == "OK result=already_used", (kind, count)
    for count in range(6, 20, 2):
        assert d(f"TOKEN {token(ADD, count)}").endswith(f" count={count}"), count
    assert d.ok("STATUS")["count"] == "20"
    fresh = provisioned(tmp_path / "default", count=None)
    assert fresh.ok("STATUS")["count"] == "1"
    assert fresh(f"TOKEN {token(ADD, 2)}").endswith(" count=2")


# -- "Tokens": accepted lengths -------------------------------------------------------------------


def test_token_lengths_standard_device(tmp_path):
    d = provisioned(tmp_path)
    for code in ("12345678", "1234567890", "123456789012"):
        assert d(f"TOKEN {code}") == "ERR 400 a token has 9 digits", code
    assert d("TOKEN 12345678a") == "ERR 400 TOKEN takes one argument of digits"
    assert d.ok("STATUS")["invalid"] == "0"  # an ERR changes no token state
    gen = TokenGenerator(KEY, SC)
    zero = next(c for v in range(1, 200) if (c := gen.at_count(ADD, v, 2).code).startswith("0"))
    assert d(f"TOKEN {zero}").startswith("OK result=accepted type=ADD_TIME")  # leading zero kept


def test_token_lengths_extended_device(tmp_path):
    d = provisioned(tmp_path, extended_tokens=True)
    assert d("TOKEN 1234567890") == "ERR 400 a token has 9 or 12 digits"
    assert d("TOKEN 123456789012") == "OK result=invalid"
    assert d(f"TOKEN {token(ADD, 2, extended=True)}").startswith("OK result=accepted type=ADD_TIME value=1 count=2")


def test_token_lengths_restricted_device(tmp_path):
    """rd=1: 15 digits (20 with extended tokens); a digit outside 1-4 is an invalid token, counted."""
    d = provisioned(tmp_path, extra=" rd=1")
    assert d("TOKEN 123456789") == "ERR 400 a token has 15 digits"
    assert d.ok("STATUS")["invalid"] == "0"
    assert d("TOKEN 123412341234125") == "OK result=invalid"
    assert d.ok("STATUS")["invalid"] == "1"
    code = token(ADD, 2, restricted_digits=True)
    assert len(code) == 15 and d(f"TOKEN {code}").endswith(" count=2")
    x = provisioned(tmp_path / "x", extra=" rd=1", extended_tokens=True)
    assert x("TOKEN 1234567890") == "ERR 400 a token has 15 or 20 digits"


# -- "Non-volatile memory": blank NVM ------------------------------------------------------------


def test_nvm_on_a_blank_part_and_after_prov(tmp_path):
    d = Device(tmp_path)
    assert d.fw.banner().endswith(" nvm=blank")
    assert d("NVM") == "OK slot=- seq=0 crc=bad writes=0 size=4096"
    assert d("STATUS") == "ERR 409 not provisioned"
    d(f"PROV sn={SN} key={KEY} sc={SC}")
    nvm = d.ok("NVM")
    assert (nvm["slot"], nvm["seq"], nvm["crc"]) == ("A", "1", "ok") and int(nvm["writes"]) > 0
    assert d("NVM ERASE") == "OK"
    d.boot()
    assert d.fw.banner().endswith(" nvm=blank")
    assert d("NVM") == "OK slot=- seq=0 crc=bad writes=0 size=4096"


# -- "Metrics sessions": METRICS FORMAT -----------------------------------------------------------


def test_metrics_format_object_has_the_documented_members(tmp_path):
    d = Device(tmp_path, metrics_sample_s=60)
    line = d("METRICS FORMAT")  # before PROV
    assert 1024 < len(line) <= 8192  # the framing's exception for this reply
    f = d.ok("METRICS FORMAT")
    assert (f["id"], f["interval"]) == ("0", "60")
    fmt = json.loads(base64.b64decode(f["b64"], validate=True))
    assert set(fmt) == {"data_order", "historical_data_order", "historical_data_interval", "variables"}
    assert fmt["historical_data_interval"] == 60
    assert "token_count" in fmt["data_order"] and "timestamp" in fmt["historical_data_order"]
    names = set(fmt["data_order"]) | set(fmt["historical_data_order"])
    assert names - {"timestamp", "relative_time"} <= set(fmt["variables"])
    assert all(isinstance(v.get("name"), str) for v in fmt["variables"].values())
    parse_data_format(fmt)  # the bench's server takes it


def test_metrics_format_interval_does_not_follow_config_sample(tmp_path):
    """After `METRICS CONFIG sample=2` on a build sampling every second, FORMAT still says 1, and
    every row of the next request carries its timestamp (rows are 2 s apart, not 1); on the
    build's own interval only a request's first row does."""
    d = provisioned(tmp_path, metrics_mode="bridge", metrics_sample_s=1, metrics_first_row_at_start=True)
    d.advance(6)
    build = _rows(d)
    assert len(build) >= 4 and len(build[0]) == 6 and all(len(r) == 5 for r in build[1:]), build
    assert d.ok("METRICS CONFIG sample=2")["sample"] == "2"
    f = d.ok("METRICS FORMAT")
    assert f["interval"] == "1"
    assert json.loads(base64.b64decode(f["b64"]))["historical_data_interval"] == 1
    d.advance(9)
    rows = _rows(d)
    assert len(rows) >= 3 and all(len(r) == 6 for r in rows), rows
    times = [r[5] for r in rows]
    assert all(b - a == 2 for a, b in zip(times, times[1:])), times


def _rows(d: Device) -> list[list]:
    """The rows of a request exported now, its reply imported so they are not sent again."""
    e = d.ok("METRICS EXPORT")
    body = json.loads(base64.b64decode(e["b64"]))
    reply = base64.b64encode(b"{}").decode()  # "nothing to say": a valid answer
    assert d(f"METRICS IMPORT b64={reply}").startswith("OK tokens=0/0")
    return body.get("hd", [])


# -- "Framing": a value is never empty; url=- clears the base URL -------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "METRICS CONFIG url=",
        "METRICS CONFIG df=",
        "METRICS CONFIG url= df=1 auth=ra",
    ],
)
def test_an_empty_value_is_malformed(tmp_path, line):
    d = provisioned(tmp_path, metrics_mode="direct")
    d.ok("METRICS CONFIG url=http://127.0.0.1:9/x")
    reply = d(line)
    assert reply.startswith("ERR 400 ") and "has no value" in reply, reply
    assert d.ok("METRICS CONFIG")["url"] == "http://127.0.0.1:9/x"  # nothing changed


def test_url_dash_clears_the_base_url(tmp_path):
    d = provisioned(tmp_path, extra=" url=http://127.0.0.1:9/x", metrics_mode="direct")
    assert d.ok("METRICS CONFIG")["url"] == "http://127.0.0.1:9/x"
    assert d.ok("METRICS CONFIG url=- df=3 auth=ra")["url"] == "-"
    d.boot()  # in NVM
    assert d.ok("METRICS CONFIG")["url"] == "-"
    assert d.store.load().state.metrics_url == ""
    fresh = Device(tmp_path / "fresh")
    assert fresh(f"PROV sn={SN} key={KEY} sc={SC} url=").startswith("ERR 400 url= has no value")
    assert fresh(f"PROV sn={SN} key={KEY} sc={SC} url=ftp://x").startswith("ERR 400 url= must be")
    assert fresh(f"PROV sn={SN} key={KEY} sc={SC} url=-") == f"OK sn={SN}"
    assert fresh.ok("METRICS CONFIG")["url"] == "-"
