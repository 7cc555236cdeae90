"""The simulator's width defects (docs/tokens.md "Stored widths"), line by line on the reference
firmware with a tick clock that drives both its uptime and the RTC: each value is right in RAM
and wrong only once it passes its edge and the device restarts (or, for the expiry timer, stays
off). Without the fault the same steps keep the value. The decoder's count_wraps_u16 runs with
the top of the count lowered, so no test hashes 65535 steps."""

from __future__ import annotations

import re

import pytest

from bench.openpaygo.tokens import MAX_ACTIVATION_VALUE, TokenGenerator, TokenKind
from bench.sim import token_decoder
from bench.sim.eeprom import Eeprom
from bench.sim.firmware import Firmware
from bench.sim.firmware_config import FirmwareConfig
from bench.sim.nvstate import RecordStore
from bench.sim.rtc import Rtc
from bench.sim.token_decoder import TokenState, decode

KEY = "a29ab82edc5fbbc41ec9530f6dac86b1"
SC = 123456789
T0 = 1_700_000_000
DAY = 86400
ADD = TokenKind.ADD_TIME
STATUS = re.compile(r"OK payg=(\w+) active_until=(-?\d+) left=(-?\d+) count=(\d+) invalid=(\d+) locked=(\d+)")


class Device:
    """NVM and an RTC outliving firmware runs, on one tick clock."""

    def __init__(self, tmp_path, faulty: bool, fault: str, count: int = 1) -> None:
        self.t = 5000.0
        self.store = RecordStore(Eeprom(tmp_path / "e.bin", page_write_s=0))
        self.rtc = Rtc(start=T0, clock=lambda: self.t)
        self.config = FirmwareConfig(faults=frozenset({fault} if faulty else ()))
        self.boot()
        assert self(f"PROV sn=SIM1 key={KEY} sc={SC} count={count}").startswith("OK")

    def boot(self) -> None:
        self.fw = Firmware(self.store, self.rtc, self.config, "power", clock=lambda: self.t)

    def __call__(self, line: str) -> str:
        return self.fw.handle(line).line

    def token(self, code: str) -> str:
        return re.search(r"result=(\w+)", self(f"TOKEN {code}")).group(1)

    def off(self, seconds: float = 1.0) -> None:
        self.fw.tick()
        self.t += seconds
        self.boot()

    def status(self) -> dict[str, object]:
        m = STATUS.fullmatch(self("STATUS"))
        assert m, self("STATUS")
        payg, *numbers = m.groups()
        return dict(zip(("payg", "end", "left", "count", "invalid", "locked"), [payg, *map(int, numbers)]))


@pytest.mark.parametrize("faulty", [False, True])
def test_count_stored_u8(tmp_path, faulty):
    d = Device(tmp_path, faulty, "count_stored_u8", count=250)
    t = TokenGenerator(KEY, SC, 250).at_count(ADD, 1, 256)
    assert d.token(t.code) == "accepted" and d.status()["count"] == 256  # right in RAM
    d.off()
    assert d.status()["count"] == (0 if faulty else 256)
    assert d.token(t.code) == ("invalid" if faulty else "already_used")  # 256 is beyond 0 + 64


@pytest.mark.parametrize("faulty", [False, True])
def test_used_mask_stored_u8(tmp_path, faulty):
    d = Device(tmp_path, faulty, "used_mask_stored_u8")
    g = TokenGenerator(KEY, SC, 1)
    newest, oldest = g.at_count(ADD, 1, 40), g.at_count(ADD, 1, 26)  # 26: bit 13 of the mask
    assert d.token(newest.code) == d.token(oldest.code) == "accepted"
    d.off()
    assert d.token(oldest.code) == ("accepted" if faulty else "already_used")


@pytest.mark.parametrize("faulty", [False, True])
def test_credit_end_int32(tmp_path, faulty):
    d = Device(tmp_path, faulty, "credit_end_int32")
    d(f"RTC SET {2**31 - 3600}")
    assert d.token(TokenGenerator(KEY, SC, 1).add_days(1).code) == "accepted"
    assert d.status()["end"] == 2**31 - 3600 + DAY  # right in RAM
    d.off()
    assert d.status()["payg"] == ("inactive" if faulty else "active")


@pytest.mark.parametrize("faulty", [False, True])
def test_credit_compare_int32(tmp_path, faulty):
    d = Device(tmp_path, faulty, "credit_compare_int32")
    g = TokenGenerator(KEY, SC, 1)
    for _ in range(24):
        assert (
            d.token(g.at_count(ADD, MAX_ACTIVATION_VALUE, g.count + 2 - g.count % 2, advance=True).code) == "accepted"
        )
    assert d.status()["payg"] == "active"  # 24 x 995 days: just under 2^31 s
    assert d.token(g.at_count(ADD, MAX_ACTIVATION_VALUE, g.count + 2, advance=True).code) == "accepted"
    assert d.status()["payg"] == ("inactive" if faulty else "active")


@pytest.mark.parametrize("faulty", [False, True])
def test_streak_stored_3_bits(tmp_path, faulty):
    d = Device(tmp_path, faulty, "streak_stored_3_bits")
    g = TokenGenerator(KEY, SC, 1)
    for seed in range(12):
        d(f"RTC SET {int(d.rtc.now()) + d.status()['locked'] + 1}")  # past any lock
        assert d.token(g.invalid(seed=seed)) == "invalid"
    assert d.status()["invalid"] == 11  # capped, right in RAM
    d.off()
    assert d.status()["invalid"] == (3 if faulty else 11)


@pytest.mark.parametrize("faulty", [False, True])
def test_expiry_timer_u16(tmp_path, faulty):
    """Above 2^16 s left the credit runs on the RTC, unpowered too; once below, the faulty one's
    last stretch stops while unpowered, and a token giving more credit puts it back on the RTC."""
    d = Device(tmp_path, faulty, "expiry_timer_u16")
    g = TokenGenerator(KEY, SC, 1)
    assert d.token(g.add_days(1).code) == "accepted"
    d.off(1000)
    assert d.status()["left"] == DAY - 1000  # above 2^16: both charged the off time
    d.t += DAY - 1000 - 60_000  # powered: 60000 s left
    d.fw.tick()
    d.off(1000)
    assert d.status()["left"] == (60_000 if faulty else 59_000)
    assert d.token(g.add_days(1).code) == "accepted"
    d.off(1000)
    assert d.status()["left"] == (60_000 if faulty else 59_000) + DAY - 1000


@pytest.mark.parametrize("faulty", [False, True])
def test_count_wraps_u16(monkeypatch, faulty):
    """With the top lowered to 127: the good decoder does not look past it; the faulty one takes a
    token at 128 and stores count 0 (modulo 128, as modulo 65536 at the real top)."""
    monkeypatch.setattr(token_decoder, "MAX_COUNT", 127)
    g = TokenGenerator(KEY, SC, 100)
    faults = frozenset({"count_wraps_u16"} if faulty else ())
    result, state = decode(g.at_count(ADD, 1, 128).code, bytes.fromhex(KEY), SC, TokenState(100, 0), faults=faults)
    if faulty:
        assert (result.outcome, result.count, state.last_count) == ("accepted", 128, 0)
    else:
        assert result.outcome != "accepted" and state == TokenState(100, 0)
