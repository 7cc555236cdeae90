"""The simulated test firmware (bench/sim/firmware.py) driven directly, line by line.

Every request goes through `Firmware.handle`, exactly what the board feeds it from the UART;
a "power cycle" is a new `Firmware` on the same NVM image and RTC (RAM lost, NVM and RTC kept).
Expected outcomes come from docs/protocol.md and from `TokenGenerator`, not from the firmware.
"""

from __future__ import annotations

import base64
import json
import re

import pytest

from bench.openpaygo.tokens import TokenGenerator, TokenKind
from bench.sim.eeprom import Eeprom, PowerLost
from bench.sim.faults import CATALOGUE
from bench.sim.firmware import Firmware
from bench.sim.firmware_config import FirmwareConfig
from bench.sim.nvstate import RecordStore
from bench.sim.request_line import MAX_IMPORT_LINE, MAX_LINE, Reply
from bench.sim.rtc import Rtc

KEY = "a29ab82edc5fbbc41ec9530f6dac86b1"
SC = 123456789
T0 = 1_700_000_000
SN = "SIM000001"
PROV = f"PROV sn={SN} key={KEY} sc={SC} count=1 td=1"
ALL_CAPS = "token,status,rtc,rtc_set,nvm,factory_reset,metrics_bridge"

ERR = re.compile(r"ERR (\d{3}) (\S.*)")
STATUS = re.compile(
    r"OK payg=(active|inactive|disabled) active_until=(\d+) left=(\d+) count=(\d+) invalid=(\d+) locked=(\d+)"
)


class Device:
    """One simulated device: an EEPROM image and a battery-backed RTC outliving firmware runs."""

    def __init__(self, tmp_path, **config) -> None:
        self.store = RecordStore(Eeprom(tmp_path / "e.bin", page_write_s=0))
        self.rtc = Rtc(start=T0)
        self.config = FirmwareConfig(**config)
        self.fw = Firmware(self.store, self.rtc, self.config, "power")
        self.replies: list[str] = []

    def __call__(self, line: str) -> str:
        reply = self.fw.handle(line)
        assert isinstance(reply, Reply)
        assert "\n" not in reply.line and reply.line.isascii(), reply.line
        self.replies.append(reply.line)
        return reply.line

    def power_cycle(self, reason: str = "power") -> Firmware:
        self.fw = Firmware(self.store, self.rtc, self.config, reason)
        return self.fw

    def now(self) -> int:
        return int(self.rtc.now())

    def status(self) -> dict[str, str]:
        line = self("STATUS")
        assert STATUS.fullmatch(line), line
        return dict(w.split("=", 1) for w in line.split()[1:])


@pytest.fixture
def dev(tmp_path) -> Device:
    return Device(tmp_path)


@pytest.fixture
def prov(dev) -> Device:
    assert dev(PROV) == f"OK sn={SN}"
    return dev


@pytest.fixture
def gen() -> TokenGenerator:
    return TokenGenerator(KEY, SC, count=1)


def err(line: str) -> tuple[int, str]:
    m = ERR.fullmatch(line)
    assert m, f"not an ERR line: {line!r}"
    return int(m.group(1)), m.group(2)


def fields(line: str) -> dict[str, str]:
    assert line.startswith("OK"), line
    return dict(w.split("=", 1) for w in line.split()[1:])


# -- errors ---------------------------------------------------------------------------------------

COMMON_ERRORS = [
    ("", 400, "empty"),
    ("FROB", 404, "unknown command 'FROB'"),
    ("frob x", 404, "unknown command 'FROB'"),
    ("PING " + "x" * MAX_LINE, 400, "longer than 1024"),
    ("RTC SET abc", 400, "whole seconds"),
    ("RTC SET -1", 400, "out of range"),
    ("RTC SET 4294967296", 400, "out of range"),
    ("RTC FOO", 400, "usage"),
    ("RTC SET", 400, "usage"),
    ("NVM FOO", 400, "usage"),
    ("NVM ERASE NOW", 400, "usage"),
]


@pytest.mark.parametrize("line,code,reason", COMMON_ERRORS)
def test_errors_in_any_state(dev, line, code, reason):
    """Malformed requests (400) and unknown commands (404) are refused with code and reason."""
    got_code, why = err(dev(line))
    assert got_code == code and reason in why, why


PROV_400 = [
    (f"PROV key={KEY} sc={SC}", "missing sn="),
    (f"PROV sn={SN} sc={SC}", "missing key="),
    (f"PROV sn={SN} key={KEY}", "missing sc="),
    (f"PROV sn={SN} key={KEY} sc={SC} colour=red", "unknown argument colour="),
    (f"PROV sn={SN} key={KEY} sc={SC} nonsense", "argument 4 is not key=value"),
    (f"PROV sn={'S' * 33} key={KEY} sc={SC}", "sn="),
    (f"PROV sn=SIM!1 key={KEY} sc={SC}", "sn="),
    (f"PROV sn= key={KEY} sc={SC}", "sn="),
    (f"PROV sn={SN} key={KEY[:-1]} sc={SC}", "key="),
    (f"PROV sn={SN} key={KEY}0 sc={SC}", "key="),
    (f"PROV sn={SN} key={'g' * 32} sc={SC}", "key="),
    (f"PROV sn={SN} key={KEY} sc=1000000000", "sc= out of range"),
    (f"PROV sn={SN} key={KEY} sc=12a", "sc= must be a whole number"),
    (f"PROV sn={SN} key={KEY} sc=-1", "sc= must be a whole number"),
    (f"PROV sn={SN} key={KEY} sc={SC} td=0", "td= out of range"),
    (f"PROV sn={SN} key={KEY} sc={SC} td=256", "td= out of range"),
    (f"PROV sn={SN} key={KEY} sc={SC} rd=2", "rd= out of range"),
    (f"PROV sn={SN} key={KEY} sc={SC} count=65536", "count= out of range"),
    (f"PROV sn={SN} key={KEY} sc={SC} auth=md5", "auth="),
]


@pytest.mark.parametrize("line,reason", PROV_400)
def test_prov_malformed_is_400_and_leaves_device_unprovisioned(dev, line, reason):
    """Each bad PROV argument is ERR 400 naming it; nothing is stored (ID still sn=-, NVM blank)."""
    code, why = err(dev(line))
    assert code == 400 and reason in why, why
    assert fields(dev("ID"))["sn"] == "-"
    assert dev.store.load().status == "blank"


@pytest.mark.parametrize("line", ["TOKEN 123456789", "STATUS", "METRICS EXPORT", "METRICS IMPORT b64=e30="])
def test_not_provisioned_is_409(dev, line):
    """Token, status and metrics commands need provisioning: ERR 409 not provisioned."""
    assert err(dev(line)) == (409, "not provisioned")


def test_prov_twice_is_409_and_keeps_first(prov):
    """PROV on a provisioned device is ERR 409 already provisioned; the first data stays."""
    assert err(prov(f"PROV sn=OTHER key={'0' * 32} sc=1")) == (409, "already provisioned")
    assert fields(prov("ID"))["sn"] == SN


@pytest.mark.parametrize(
    "line,reason",
    [
        ("TOKEN", "one argument"),
        ("TOKEN 123 456", "one argument"),
        ("TOKEN 12345678a", "digits"),
        ("TOKEN -12345678", "digits"),
        ("TOKEN \u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669", "digits"),  # Arabic-Indic digits
        ("TOKEN 12345678", "9 digits"),
        ("TOKEN 1234567890", "9 digits"),
        ("TOKEN 123456789012", "9 digits"),  # extended tokens not enabled
    ],
)
def test_token_malformed_is_400_and_not_counted(prov, line, reason):
    """Non-digit or wrong-length tokens are ERR 400 and do not count as invalid entries."""
    code, why = err(prov(line))
    assert code == 400 and reason in why, why
    assert prov.status()["invalid"] == "0"


def test_import_errors_are_400(prov):
    """METRICS IMPORT: bad base64, a non-object JSON, a non-list tkl, bad usage: ERR 400."""
    b64 = lambda obj: base64.b64encode(json.dumps(obj).encode()).decode()  # noqa: E731
    for line in (
        "METRICS IMPORT b64=!!!notbase64",
        "METRICS IMPORT b64=abc",  # bad padding
        f"METRICS IMPORT b64={base64.b64encode(b'not json').decode()}",
        f"METRICS IMPORT b64={b64([1, 2])}",
        f"METRICS IMPORT b64={b64({'tkl': 5})}",
        "METRICS IMPORT",
        "METRICS",
        "METRICS SEND",
    ):
        assert err(prov(line))[0] == 400, line


def test_metrics_line_limit_is_8192(prov):
    """METRICS may carry up to 8192 bytes; longer is ERR 400."""
    body = base64.b64encode(json.dumps({"tkl": [], "pad": "x" * 5000}).encode()).decode()
    assert prov(f"METRICS IMPORT b64={body}") == "OK tokens=0/0"
    assert err(prov("METRICS IMPORT b64=" + "A" * MAX_IMPORT_LINE))[0] == 400


# -- identity and provisioning -------------------------------------------------------------------


def test_banner_and_id_before_provisioning(dev):
    """Blank device: banner says nvm=blank; ID has sn=- and the full capability list."""
    assert dev.fw.banner() == "! BOOT model=PAYGO-SIM fw=1.0.0 proto=1.0 reset=power nvm=blank"
    assert dev("ID") == f"OK model=PAYGO-SIM fw=1.0.0 proto=1.0 sn=- caps={ALL_CAPS}"
    assert dev("PING") == "OK"


def test_optional_capabilities_are_listed(tmp_path):
    """rtc_subsecond and extended_tokens configs add their capabilities; RTC gains a fraction."""
    d = Device(tmp_path, rtc_subsecond=True, extended_tokens=True)
    caps = fields(d("ID"))["caps"].split(",")
    assert "rtc_subsecond" in caps and "extended_tokens" in caps
    assert re.fullmatch(r"OK t=\d+\.\d{3}", d("RTC"))


def test_prov_reply_and_id(prov):
    """PROV answers OK sn=<serial> (no key); ID then shows the serial; banner after reboot ok."""
    assert fields(prov("ID"))["sn"] == SN
    prov.power_cycle()
    assert prov.fw.banner().endswith("reset=power nvm=ok")
    assert fields(prov("ID"))["sn"] == SN


def test_prov_accepts_upper_case_key_and_optional_fields(dev):
    """The optional PROV arguments are accepted and stored; the key is stored lower-case."""
    line = f"PROV sn=A-b_9 key={KEY.upper()} sc=0 count=7 td=4 rd=0 url=http://127.0.0.1:5000 df=3 auth=sa"
    assert dev(line) == "OK sn=A-b_9"
    st = dev.store.load().state
    assert (st.key_hex, st.starting_code, st.last_count, st.time_divider) == (KEY, 0, 7, 4)
    assert (st.metrics_url, st.data_format_id, st.auth) == ("http://127.0.0.1:5000", 3, "sa")


# -- tokens ---------------------------------------------------------------------------------------


def test_token_results_for_every_type(prov, gen):
    """ADD, SET, DISABLE and SYNC tokens are accepted with their type, raw value and count."""
    t = gen.add_days(1)
    assert prov(f"TOKEN {t.code}") == "OK result=accepted type=ADD_TIME value=1 count=2"
    t = gen.set_days(3)
    assert prov(f"TOKEN {t.code}") == f"OK result=accepted type=SET_TIME value=3 count={t.count}"
    t = gen.disable()
    assert prov(f"TOKEN {t.code}") == f"OK result=accepted type=DISABLE_PAYG value=- count={t.count}"
    t = gen.counter_sync()
    assert prov(f"TOKEN {t.code}") == f"OK result=accepted type=COUNTER_SYNC value=- count={t.count}"


def test_reused_token_is_already_used(prov, gen):
    """The same token twice: accepted, then already_used, and the credit does not grow."""
    t = gen.add_days(1)
    assert fields(prov(f"TOKEN {t.code}"))["result"] == "accepted"
    until = prov.status()["active_until"]
    assert prov(f"TOKEN {t.code}") == "OK result=already_used"
    assert prov.status()["active_until"] == until


def test_status_after_add(prov, gen):
    """STATUS reflects an ADD 1 day from now: active, active_until = now + 86400, count 2."""
    assert prov.status() == {
        "payg": "inactive",
        "active_until": "0",
        "left": "0",
        "count": "1",
        "invalid": "0",
        "locked": "0",
    }
    now = prov.now()
    prov(f"TOKEN {gen.add_days(1).code}")
    s = prov.status()
    assert s["payg"] == "active" and s["count"] == "2"
    assert int(s["active_until"]) in (now + 86400, now + 86401)
    assert 86398 <= int(s["left"]) <= 86400


def test_status_disabled(prov, gen):
    """After DISABLE_PAYG: payg=disabled, left=0."""
    prov(f"TOKEN {gen.disable().code}")
    s = prov.status()
    assert (s["payg"], s["left"]) == ("disabled", "0")


def test_lockout_after_two_free_invalid_tokens(prov, gen):
    """Invalid tokens 1 and 2 are free; the 3rd locks entry for 120 s; while locked even a valid
    token is refused as locked without being decoded (its count stays unused), and the streak
    does not grow; RTC SET past the lockout lets entry resume."""
    for i in range(2):
        assert prov(f"TOKEN {gen.invalid(i)}") == "OK result=invalid"
        assert prov.status()["locked"] == "0"
    assert prov(f"TOKEN {gen.invalid(2)}") == "OK result=invalid"
    s = prov.status()
    assert s["invalid"] == "3" and 119 <= int(s["locked"]) <= 120
    good = gen.add_days(1)
    reply = prov(f"TOKEN {good.code}")
    m = re.fullmatch(r"OK result=locked seconds=(\d+)", reply)
    assert m and 119 <= int(m.group(1)) <= 120, reply
    assert prov(f"TOKEN {gen.invalid(3)}").startswith("OK result=locked")
    s = prov.status()
    assert (s["invalid"], s["count"]) == ("3", "1")  # nothing decoded or counted while locked
    assert prov(f"RTC SET {prov.now() + 121}").startswith("OK t=")
    assert prov.status()["locked"] == "0"
    assert prov(f"TOKEN {good.code}") == "OK result=accepted type=ADD_TIME value=1 count=2"
    assert prov.status()["invalid"] == "0"


def test_fourth_invalid_doubles_lockout(prov, gen):
    """After a lockout expires, the next invalid token locks for 4 minutes (2^(n-2))."""
    for i in range(3):
        prov(f"TOKEN {gen.invalid(i)}")
    prov(f"RTC SET {prov.now() + 121}")
    assert prov(f"TOKEN {gen.invalid(3)}") == "OK result=invalid"
    assert 239 <= int(prov.status()["locked"]) <= 240


@pytest.mark.parametrize(
    "unit_s,locks", [(1.0, [0, 0, 2, 4, 8]), (0.25, [0, 0, 1, 1, 2]), (60.0, [0, 0, 120, 240, 480])]
)
def test_lockout_unit_scales_the_schedule(tmp_path, gen, unit_s, locks):
    """lockout_unit_s is the build's lockout "minute": error n >= 3 locks 2^(n-2) units (whole
    RTC seconds, rounded up); the clock is set past each lock before the next error."""
    d = Device(tmp_path, lockout_unit_s=unit_s)
    d(PROV)
    for i, want in enumerate(locks):
        assert d(f"TOKEN {gen.invalid(i)}") == "OK result=invalid"
        assert int(d.status()["locked"]) in (want, max(0, want - 1))
        d(f"RTC SET {d.now() + want + 1}")


def test_lockout_schedule_caps_at_512_units_and_streak_11(tmp_path, gen):
    """The reference C caps: the streak stops at 11 and the lock at 2^9 = 512 units."""
    d = Device(tmp_path, lockout_unit_s=1.0)
    d(PROV)
    for i in range(14):
        d(f"RTC SET {d.now() + 513}")  # past any lock
        assert d(f"TOKEN {gen.invalid(i)}") == "OK result=invalid"
    s = d.status()
    assert s["invalid"] == "11" and int(s["locked"]) in (511, 512)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_lockout_unit_must_be_positive(bad):
    with pytest.raises(ValueError, match="lockout_unit_s"):
        FirmwareConfig(lockout_unit_s=bad)


def test_already_used_does_not_count_as_invalid(prov, gen):
    """already_used neither grows the invalid streak nor resets it."""
    t = gen.add_days(1)
    prov(f"TOKEN {t.code}")
    prov(f"TOKEN {gen.invalid(0)}")
    for _ in range(3):
        assert prov(f"TOKEN {t.code}") == "OK result=already_used"
    assert prov.status()["invalid"] == "1"


@pytest.fixture
def restricted(tmp_path) -> Device:
    d = Device(tmp_path)
    assert d(f"PROV sn={SN} key={KEY} sc={SC} rd=1") == f"OK sn={SN}"
    return d


def test_restricted_digit_tokens(restricted):
    """rd=1: 15-digit 1-4 tokens decode; 9-digit ones are ERR 400."""
    g = TokenGenerator(KEY, SC, count=1, restricted_digits=True)
    assert restricted(f"TOKEN {g.add_days(2).code}") == "OK result=accepted type=ADD_TIME value=2 count=2"
    assert err(restricted(f"TOKEN {SC}"))[0] == 400


def test_restricted_out_of_set_token_while_locked_is_locked(restricted):
    """While entry is locked every token is answered result=locked, whatever its digits."""
    g = TokenGenerator(KEY, SC, count=1, restricted_digits=True)
    for i in range(3):
        assert restricted(f"TOKEN {g.invalid(i)}") == "OK result=invalid"
    assert int(restricted.status()["locked"]) > 0
    assert restricted("TOKEN 555555555555555").startswith("OK result=locked")


def test_restricted_out_of_set_token_counts_as_invalid(restricted):
    """An out-of-set 15-digit token is an invalid entry, as the model predicts (streak + 1)."""
    from bench.openpaygo.model import DeviceModel

    model = DeviceModel(KEY, SC, 1, restricted_digits=True)
    assert model.enter("555555555555555", restricted.now()).outcome == "invalid"
    assert restricted("TOKEN 555555555555555") == "OK result=invalid"
    assert int(restricted.status()["invalid"]) == model.invalid_streak == 1


# -- RTC ------------------------------------------------------------------------------------------


def test_rtc_read_and_set(dev):
    """RTC gives whole seconds from the start value; RTC SET moves it and echoes the value."""
    assert dev("RTC") in (f"OK t={T0}", f"OK t={T0 + 1}")
    assert dev("RTC SET 1800000000") == "OK t=1800000000"
    t = int(fields(dev("RTC"))["t"])
    assert 1800000000 <= t <= 1800000001
    assert dev("rtc set 0") == "OK t=0"  # commands are case-insensitive in the simulator


# -- NVM ------------------------------------------------------------------------------------------


def test_nvm_info_blank_then_written(dev):
    """NVM on a blank part: slot=- seq=0; after PROV: slot A seq 1 crc ok, writes > 0."""
    f = fields(dev("NVM"))
    assert (f["slot"], f["seq"], f["writes"], f["size"]) == ("-", "0", "0", "4096")
    dev(PROV)
    f = fields(dev("NVM"))
    assert (f["slot"], f["seq"], f["crc"], f["size"]) == ("A", "1", "ok", "4096")
    assert int(f["writes"]) > 0


def test_nvm_writes_count_since_boot(prov):
    """After a power cycle with no save yet, NVM reports writes=0 (page writes since boot)."""
    assert int(fields(prov("NVM"))["writes"]) > 0
    prov.power_cycle()
    assert fields(prov("NVM"))["writes"] == "0"


def test_nvm_erase_reboots_to_blank(prov, gen):
    """NVM ERASE replies OK with the reboot flag; the next boot is nvm=blank, unprovisioned,
    and the RTC kept running."""
    prov("RTC SET 1750000000")
    reply = prov.fw.handle("NVM ERASE")
    assert reply == Reply("OK", reboot=True)
    fw = prov.power_cycle("soft")
    assert fw.banner() == "! BOOT model=PAYGO-SIM fw=1.0.0 proto=1.0 reset=soft nvm=blank"
    assert fields(prov("ID"))["sn"] == "-"
    assert err(prov(f"TOKEN {gen.add_days(1).code}")) == (409, "not provisioned")
    assert 1750000000 <= int(fields(prov("RTC"))["t"]) <= 1750000001
    assert prov(PROV) == f"OK sn={SN}"  # factory state again: provisioning allowed


# -- metrics bridge -------------------------------------------------------------------------------


def test_metrics_export_counts_requests_across_power_cycles(prov):
    """EXPORT increments the request counter on each request and stores it in NVM."""
    for rc in (1, 2):
        f = fields(prov("METRICS EXPORT"))
        assert f["ct"] == "application/json" and f["rc"] == str(rc)
        body = json.loads(base64.b64decode(f["b64"], validate=True))
        assert body == {"serial_number": SN, "request_count": rc, "data": {"token_count": 1}}
    prov.power_cycle()
    assert fields(prov("METRICS EXPORT"))["rc"] == "3"


def test_metrics_import_applies_tokens(prov, gen):
    """IMPORT applies the reply's tkl tokens as if typed: tokens=<accepted>/<received>."""
    t = gen.add_days(2)
    body = base64.b64encode(json.dumps({"tkl": [int(t.code)]}).encode()).decode()
    assert prov(f"METRICS IMPORT b64={body}") == "OK tokens=1/1"
    s = prov.status()
    assert (s["payg"], s["count"]) == ("active", str(t.count))
    assert prov(f"METRICS IMPORT b64={body}") == "OK tokens=0/1"  # already used
    two = [gen.add_days(1).code, gen.invalid(5)]
    body = base64.b64encode(json.dumps({"tkl": two}).encode()).decode()
    assert prov(f"METRICS IMPORT b64={body}") == "OK tokens=1/2"


# -- persistence (power cycle = new Firmware on the same store) ----------------------------------


def test_token_state_survives_power_cycle(prov, gen):
    """Count, used counts and active_until are in NVM: after a power cycle the same token is
    already_used and STATUS shows the same count and expiry."""
    t = gen.add_days(1)
    prov(f"TOKEN {t.code}")
    before = prov.status()
    prov.power_cycle()
    after = prov.status()
    assert (after["count"], after["active_until"], after["payg"]) == (before["count"], before["active_until"], "active")
    assert prov(f"TOKEN {t.code}") == "OK result=already_used"


def test_older_unused_token_still_accepted_after_power_cycle(prov, gen):
    """The used-count mask persists bit for bit: an older, never-entered ADD is still accepted
    after a cycle, the entered one is not."""
    older, newer = gen.add_days(1), gen.add_days(1)
    prov(f"TOKEN {newer.code}")
    prov.power_cycle()
    assert prov(f"TOKEN {newer.code}") == "OK result=already_used"
    assert fields(prov(f"TOKEN {older.code}"))["result"] == "accepted"
    prov.power_cycle()
    assert prov(f"TOKEN {older.code}") == "OK result=already_used"


def test_lockout_survives_power_cycle(prov, gen):
    """A power cycle does not clear a lockout (brute-force protection)."""
    for i in range(3):
        prov(f"TOKEN {gen.invalid(i)}")
    prov.power_cycle()
    s = prov.status()
    assert s["invalid"] == "3" and int(s["locked"]) > 100
    assert prov(f"TOKEN {gen.add_days(1).code}").startswith("OK result=locked")


def test_disabled_state_survives_power_cycle(prov, gen):
    """PAYG disabled is stored."""
    prov(f"TOKEN {gen.disable().code}")
    prov.power_cycle()
    assert prov.status()["payg"] == "disabled"


# -- the key never leaves a good firmware ---------------------------------------------------------


def _never_shows_key(replies: list[str]) -> None:
    for line in replies:
        texts = [line]
        for word in line.split():
            if word.startswith("b64="):
                texts.append(base64.b64decode(word[4:]).decode("latin-1"))
        for text in texts:
            assert KEY not in text.lower(), f"key in reply {line!r}"
            assert KEY[:16] not in text.lower(), f"half the key in reply {line!r}"


def test_key_never_in_any_reply(dev, gen):
    """A whole session (every command, errors included) never sends the key back."""
    for line in PROV_400:  # every refused PROV while unprovisioned (all carry the key)
        dev(line[0])
    dev(PROV)
    for line in [
        "ID",
        "STATUS",
        "RTC",
        "NVM",
        "METRICS EXPORT",
        f"TOKEN {gen.add_days(1).code}",
        f"TOKEN {gen.invalid(0)}",
        PROV,
        f"PROV sn={SN} key={KEY} sc={SC} bogus=1",
        f"PROV sn={SN} key={KEY} sc=x",
        f"PROV key={KEY}",
        "PING",
        "FOO",
    ]:
        dev(line)
    dev.power_cycle()
    dev.replies.append(dev.fw.banner())
    dev("ID")
    _never_shows_key(dev.replies)


def test_key_not_echoed_in_prov_error(dev):
    """A PROV that carries the key in a malformed word must not get any of it back."""
    line = dev(f"PROV sn={SN} {KEY} sc={SC}")
    assert err(line)[0] == 400
    assert KEY[:16] not in line.lower(), line


# -- fault flags of layer "firmware" --------------------------------------------------------------

FIRMWARE_FAULTS = sorted(n for n, f in CATALOGUE.items() if f.layer == "firmware")
TESTED_FAULTS = {
    "count_not_persisted",
    "provisioning_not_persisted",
    "serial_truncated",
    "key_echoed",
    "key_echoed_base64",
    "key_echoed_decimal",
    "wrong_protocol_major",
    "no_lockout",
    "lockout_not_persisted",
    "streak_saved_late",
    "lock_end_saved_late",
    "used_counts_not_persisted",
    "slow_decode",
    "leading_zero_dropped",
    "set_does_not_relock",
    "add_relocks",
    "metrics_counter_not_persisted",
    "torn_write_corrupts_state",
    "state_not_ab_crc",
    # the Metrics session defects: tests/selftest/test_sim_metrics_faults.py, against the real server
    "metrics_wrong_short_key",
    "metrics_unsigned",
    "metrics_mis_signed",
    "metrics_data_dropped_before_reply",
    "metrics_rows_duplicated_on_retry",
    "metrics_tokens_not_applied",
    "metrics_base_url_not_followed",
    "metrics_auts_ignored",
}
# Firmware defects tested in tests/selftest/test_sim_credit_faults.py, switched on by name in
# FirmwareConfig; the catalogue lists them once device tests that catch them exist.
TESTED_ELSEWHERE = {"credit_runs_on_uptime", "add_counts_expired_days"}
# The width defects (docs/tokens.md "Stored widths"): tests/selftest/test_sim_width_faults.py.
TESTED_ELSEWHERE |= {
    "count_stored_u8",
    "used_mask_stored_u8",
    "credit_end_int32",
    "credit_compare_int32",
    "streak_stored_3_bits",
    "expiry_timer_u16",
}


def test_every_firmware_fault_has_a_test_here():
    """The lists above cover the whole firmware layer of the catalogue (a new fault needs a
    test), and name no fault the catalogue does not have, apart from the uncatalogued ones."""
    assert set(FIRMWARE_FAULTS) <= TESTED_FAULTS | TESTED_ELSEWHERE
    assert TESTED_FAULTS <= set(FIRMWARE_FAULTS)


@pytest.mark.parametrize("faulty", [False, True])
def test_fault_count_not_persisted(tmp_path, faulty):
    """count_not_persisted: after a power cycle the count and used mask are the boot values,
    so an accepted token is accepted again. Without the fault it is already_used."""
    d = Device(tmp_path, faults=frozenset({"count_not_persisted"} if faulty else ()))
    d(PROV)
    d.power_cycle()
    gen = TokenGenerator(KEY, SC, count=1)
    t = gen.add_days(1)
    assert fields(d(f"TOKEN {t.code}"))["result"] == "accepted"
    assert d.status()["count"] == "2"  # RAM is right until the power goes
    d.power_cycle()
    if faulty:  # RAM only: not even PROV's count=1 was ever stored, the blank part's 0 comes back
        assert d.status()["count"] == "0"
        assert fields(d(f"TOKEN {t.code}"))["result"] == "accepted"
    else:
        assert d.status()["count"] == "2"
        assert d(f"TOKEN {t.code}") == "OK result=already_used"


@pytest.mark.parametrize("faulty", [False, True])
def test_fault_provisioning_not_persisted(tmp_path, faulty):
    """provisioning_not_persisted: provisioned until the power goes, then factory state again."""
    d = Device(tmp_path, faults=frozenset({"provisioning_not_persisted"} if faulty else ()))
    assert d(PROV) == f"OK sn={SN}"
    assert fields(d("ID"))["sn"] == SN
    d.power_cycle()
    if faulty:
        assert fields(d("ID"))["sn"] == "-"
        assert err(d("STATUS")) == (409, "not provisioned")
    else:
        assert fields(d("ID"))["sn"] == SN
        assert d.status()["count"] == "1"


@pytest.mark.parametrize("faulty", [False, True])
def test_fault_serial_truncated(tmp_path, faulty):
    """serial_truncated: a 13-character serial comes back as its first 8 characters."""
    d = Device(tmp_path, faults=frozenset({"serial_truncated"} if faulty else ()))
    long_sn = "SIM0000012345"
    want = long_sn[:8] if faulty else long_sn
    assert d(f"PROV sn={long_sn} key={KEY} sc={SC}") == f"OK sn={want}"
    assert fields(d("ID"))["sn"] == want
    d.power_cycle()
    assert fields(d("ID"))["sn"] == want


@pytest.mark.parametrize("faulty", [False, True])
def test_fault_key_echoed(tmp_path, faulty):
    """key_echoed: the PROV reply carries key=<the key>; a good firmware's does not."""
    d = Device(tmp_path, faults=frozenset({"key_echoed"} if faulty else ()))
    reply = d(PROV)
    if faulty:
        assert reply == f"OK sn={SN} key={KEY}"
    else:
        assert reply == f"OK sn={SN}"
        assert KEY not in reply


@pytest.mark.parametrize("faulty", [False, True])
def test_fault_key_echoed_base64(tmp_path, faulty):
    """key_echoed_base64: the PROV reply carries dbg=<the key's bytes in base64>."""
    d = Device(tmp_path, faults=frozenset({"key_echoed_base64"} if faulty else ()))
    b64 = base64.b64encode(bytes.fromhex(KEY)).decode()
    assert d(PROV) == (f"OK sn={SN} dbg={b64}" if faulty else f"OK sn={SN}")


@pytest.mark.parametrize("faulty", [False, True])
def test_fault_key_echoed_decimal(tmp_path, faulty):
    """key_echoed_decimal: once provisioned, ID ends with kid=<the key as a little-endian integer>."""
    d = Device(tmp_path, faults=frozenset({"key_echoed_decimal"} if faulty else ()))
    assert " kid=" not in d("ID")  # nothing to echo before provisioning
    d(PROV)
    kid = str(int.from_bytes(bytes.fromhex(KEY), "little"))
    assert d("ID").endswith(f" kid={kid}") == faulty


@pytest.mark.parametrize("faulty", [False, True])
def test_fault_wrong_protocol_major(tmp_path, faulty):
    """wrong_protocol_major: banner and ID report proto=0.9 instead of 1.0."""
    d = Device(tmp_path, faults=frozenset({"wrong_protocol_major"} if faulty else ()))
    want = "0.9" if faulty else "1.0"
    assert f" proto={want} " in d.fw.banner()
    assert fields(d("ID"))["proto"] == want


@pytest.mark.parametrize("faulty", [False, True])
def test_fault_no_lockout(tmp_path, faulty, gen):
    """no_lockout: the streak is still counted, but entry is never locked (a good firmware locks
    at the third invalid token)."""
    d = Device(tmp_path, faults=frozenset({"no_lockout"} if faulty else ()))
    d(PROV)
    for i in range(4):
        d(f"TOKEN {gen.invalid(i)}")
    s = d.status()
    if faulty:
        assert (s["invalid"], s["locked"]) == ("4", "0")
        assert fields(d(f"TOKEN {gen.add_days(1).code}"))["result"] == "accepted"
    else:
        assert s["invalid"] == "3" and int(s["locked"]) > 0  # the 4th entry was refused as locked
        assert d(f"TOKEN {gen.add_days(1).code}").startswith("OK result=locked")


@pytest.mark.parametrize("faulty", [False, True])
def test_fault_lockout_not_persisted(tmp_path, faulty, gen):
    """lockout_not_persisted: locked until the power goes, then the streak and lockout are the
    boot values (0) again."""
    d = Device(tmp_path, faults=frozenset({"lockout_not_persisted"} if faulty else ()))
    d(PROV)
    for i in range(3):
        d(f"TOKEN {gen.invalid(i)}")
    assert int(d.status()["locked"]) > 100  # RAM is right until the power goes
    d.power_cycle()
    s = d.status()
    if faulty:
        assert (s["invalid"], s["locked"]) == ("0", "0")
    else:
        assert s["invalid"] == "3" and int(s["locked"]) > 100


class LateClock:
    """The firmware's monotonic clock, moved by hand (its main loop's put-off saves)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def late_saving_device(tmp_path, fault: str, faulty: bool) -> tuple[Device, LateClock]:
    d = Device(tmp_path, faults=frozenset({fault} if faulty else ()))
    clock = LateClock()
    d.fw = Firmware(d.store, d.rtc, d.config, "power", clock=clock)
    d(PROV)
    return d, clock


@pytest.mark.parametrize("faulty", [False, True])
def test_fault_streak_saved_late(tmp_path, faulty, gen):
    """streak_saved_late: an invalid entry is answered at once and saved by the main loop a while
    later: a power cut between the two loses the streak the reply acknowledged; once the main
    loop has run past the delay it is kept."""
    d, clock = late_saving_device(tmp_path, "streak_saved_late", faulty)
    assert fields(d(f"TOKEN {gen.invalid(0)}"))["result"] == "invalid"
    assert d.status()["invalid"] == "1"  # what the reply acknowledged
    d.power_cycle()
    assert d.status()["invalid"] == ("0" if faulty else "1")
    d.fw = Firmware(d.store, d.rtc, d.config, "power", clock=clock)
    d(f"TOKEN {gen.invalid(1)}")
    clock.t += 1.5
    d.fw.tick()  # the main loop's pass: the put-off save is made
    d.power_cycle()
    assert d.status()["invalid"] == ("1" if faulty else "2")


@pytest.mark.parametrize("faulty", [False, True])
def test_fault_lock_end_saved_late(tmp_path, faulty, gen):
    """lock_end_saved_late: the entry that starts a lockout is saved late (the entries before it
    are saved at once): a cut right after its reply loses the lock and its streak step."""
    d, _ = late_saving_device(tmp_path, "lock_end_saved_late", faulty)
    for i in range(3):
        d(f"TOKEN {gen.invalid(i)}")
    assert int(d.status()["locked"]) > 100  # acknowledged: locked
    d.power_cycle()
    s = d.status()
    if faulty:
        assert (s["invalid"], s["locked"]) == ("2", "0")
    else:
        assert s["invalid"] == "3" and int(s["locked"]) > 100


@pytest.mark.parametrize("faulty", [False, True])
def test_fault_used_counts_not_persisted(tmp_path, faulty, gen):
    """used_counts_not_persisted: the count survives a power cycle, the used-count mask does not,
    so an older ADD entered out of order is accepted again (the newest one, at the count
    itself, stays used)."""
    d = Device(tmp_path, faults=frozenset({"used_counts_not_persisted"} if faulty else ()))
    d(PROV)
    older, newer = gen.add_days(1), gen.add_days(2)
    d(f"TOKEN {newer.code}")
    assert fields(d(f"TOKEN {older.code}"))["result"] == "accepted"
    d.power_cycle()
    assert d.status()["count"] == "4"
    assert d(f"TOKEN {newer.code}") == "OK result=already_used"
    again = fields(d(f"TOKEN {older.code}"))["result"]
    assert again == ("accepted" if faulty else "already_used")


@pytest.mark.parametrize("faulty", [False, True])
def test_fault_slow_decode(tmp_path, faulty):
    """slow_decode: the reply to TOKEN is delayed by the hash steps walked x 8.6 ms: a token 30
    counts ahead at count ~640 takes more than 5 s, one next to the last count next to
    nothing, an invalid one the whole window from 0; other commands are not delayed."""
    d = Device(tmp_path, faults=frozenset({"slow_decode"} if faulty else ()))
    d(PROV.replace("count=1", "count=613"))
    g = TokenGenerator(KEY, SC, count=613)
    far = d.fw.handle(f"TOKEN {g.at_count(TokenKind.SET_TIME, 1, 643).code}")
    near = d.fw.handle(f"TOKEN {g.at_count(TokenKind.ADD_TIME, 1, 644).code}")
    invalid = d.fw.handle(f"TOKEN {g.invalid(0)}")
    assert fields(far.line)["result"] == "accepted" and fields(near.line)["result"] == "accepted"
    assert invalid.line == "OK result=invalid"
    if faulty:
        assert far.delay_s > 5.0 and near.delay_s < 0.05
        assert invalid.delay_s == pytest.approx((644 + 65) * 0.0086)
    else:
        assert far.delay_s == near.delay_s == invalid.delay_s == 0
    assert d.fw.handle("STATUS").delay_s == 0


@pytest.mark.parametrize("faulty", [False, True])
def test_fault_leading_zero_dropped(tmp_path, faulty):
    """leading_zero_dropped: a token starting with 0 (G8Q `048662027` at count 523 on the V2
    device) is refused as invalid and counts toward the lockout."""
    d = Device(tmp_path, faults=frozenset({"leading_zero_dropped"} if faulty else ()))
    d("PROV sn=V2 key=bc41ec9530f6dac86b1a29ab82edc5fb sc=516959010 count=493")
    reply = d("TOKEN 048662027")
    if faulty:
        assert reply == "OK result=invalid" and d.status()["invalid"] == "1"
    else:
        assert reply == "OK result=accepted type=SET_TIME value=17 count=523"


@pytest.mark.parametrize("faulty", [False, True])
def test_fault_set_does_not_relock(tmp_path, faulty, gen):
    """set_does_not_relock: after DISABLE_PAYG a SET sets the expiry but PAYG stays disabled."""
    d = Device(tmp_path, faults=frozenset({"set_does_not_relock"} if faulty else ()))
    d(PROV)
    d(f"TOKEN {gen.disable().code}")
    assert fields(d(f"TOKEN {gen.set_days(2).code}"))["result"] == "accepted"
    s = d.status()
    assert s["payg"] == ("disabled" if faulty else "active")
    assert int(s["active_until"]) in (d.now() + 2 * 86400, d.now() + 2 * 86400 - 1)


@pytest.mark.parametrize("faulty", [False, True])
def test_fault_add_relocks(tmp_path, faulty, gen):
    """add_relocks: after DISABLE_PAYG an ADD (G11B: ADD 0) re-enables PAYG; a good firmware
    stays disabled."""
    d = Device(tmp_path, faults=frozenset({"add_relocks"} if faulty else ()))
    d(PROV)
    d(f"TOKEN {gen.disable().code}")
    assert fields(d(f"TOKEN {gen.add_days(0).code}"))["result"] == "accepted"
    assert d.status()["payg"] == ("inactive" if faulty else "disabled")


@pytest.mark.parametrize("faulty", [False, True])
def test_fault_metrics_counter_not_persisted(tmp_path, faulty):
    """metrics_counter_not_persisted: the request counter counts on in RAM, but a power cycle
    brings back the stored one, so the next export repeats a count (and a later save, a token
    here, stores the stale one too); a good firmware continues from the last export."""
    d = Device(tmp_path, faults=frozenset({"metrics_counter_not_persisted"} if faulty else ()))
    d(PROV)
    assert [fields(d("METRICS EXPORT"))["rc"] for _ in range(2)] == ["1", "2"]
    d(f"TOKEN {TokenGenerator(KEY, SC, count=1).add_days(1).code}")
    d.power_cycle()
    assert fields(d("METRICS EXPORT"))["rc"] == ("1" if faulty else "3")


def _cuts_through_one_token(tmp_path, faults) -> tuple[dict, dict, list[tuple[int, str, dict | None]]]:
    """Provision, accept ADD 1 day, then enter ADD 2 days with the power cut after k pages for
    every k (the page being written torn in half), each from the same NVM image: the STATUS before
    (old), after an uncut entry (new), and (k, boot nvm= status, STATUS or None if unprovisioned)."""
    d = Device(tmp_path, faults=frozenset(faults))
    d(PROV)
    g = TokenGenerator(KEY, SC, count=1)
    d(f"TOKEN {g.add_days(1).code}")
    old = d.status()
    code = g.add_days(2).code
    image = d.store.eeprom.path
    snapshot = image.read_bytes()
    results = []
    for k in range(64):
        image.write_bytes(snapshot)
        d.power_cycle()
        d.store.eeprom.cut_after_pages = k
        try:
            d(f"TOKEN {code}")
            cut = False
        except PowerLost:
            cut = True
        d.store.eeprom.cut_after_pages = None
        fw = d.power_cycle()
        line = d("STATUS")
        state = dict(w.split("=", 1) for w in line.split()[1:]) if line.startswith("OK") else None
        if not cut:
            return old, state, results
        results.append((k, fw.boot_status, state))
    raise AssertionError("the token's save never completed")


@pytest.mark.parametrize("faulty", [False, True])
def test_fault_torn_write_corrupts_state(tmp_path, faulty):
    """torn_write_corrupts_state: one record overwritten in place; a cut at any page of the
    save leaves it torn, the CRC fails and the device boots `nvm=corrupt`, unprovisioned. The
    good firmware boots `nvm=recovered` in the old state at every cut point."""
    old, new, cuts = _cuts_through_one_token(tmp_path, {"torn_write_corrupts_state"} if faulty else ())
    assert new != old and len(cuts) >= 4
    for k, boot, state in cuts:
        if faulty:
            assert (boot, state) == ("corrupt", None), k
        else:
            assert boot == "recovered" and {**state, "left": "-"} == {**old, "left": "-"}, k


@pytest.mark.parametrize("faulty", [False, True])
def test_fault_state_not_ab_crc(tmp_path, faulty):
    """state_not_ab_crc: one record overwritten in place and read without its CRC: after a cut
    the device boots `nvm=ok` in a state that is neither the old nor the new one (the new
    record's first pages, with the new credit, spliced onto the old count), which would let
    the token be entered again for more credit. The good firmware only ever has old or new."""
    old, new, cuts = _cuts_through_one_token(tmp_path, {"state_not_ab_crc"} if faulty else ())

    def same(a, b):
        return a is not None and b is not None and {**a, "left": "-"} == {**b, "left": "-"}

    garbage = [(k, state) for k, boot, state in cuts if not (same(state, old) or same(state, new))]
    if faulty:
        assert garbage, cuts
        assert any(s and s["count"] == old["count"] and s["active_until"] == new["active_until"] for _, s in garbage)
        assert all(boot == "ok" for _, boot, _ in cuts)
    else:
        assert not garbage
