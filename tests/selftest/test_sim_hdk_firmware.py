"""The simulated OpenPAYGO HDK firmware (bench/sim/hdk_firmware.py) driven line by line.

Each request goes through `HdkFirmware.handle`, as the board feeds it from the UART; a restart is a
new `HdkFirmware` on the same NVM image and RTC. The expected behaviour is the HDK's source as
docs/protocol.md "Other protocols: the OpenPAYGO HDK" describes it; tokens come from
`TokenGenerator`, not the firmware.
"""

from __future__ import annotations

import pytest

from bench.openpaygo.tokens import TokenGenerator, TokenKind
from bench.sim.eeprom import Eeprom
from bench.sim.firmware_config import FirmwareConfig
from bench.sim.hdk_firmware import BOOT_EPOCH, HdkFirmware, HdkTiming
from bench.sim.nvstate import RecordStore
from bench.sim.request_line import Reply
from bench.sim.rtc import Rtc

KEY = "a29ab82edc5fbbc41ec9530f6dac86b1"
PRINTED_KEY = "A29AB82EDC5FBBC41EC953F6DAC86B1"  # Serial.print(byte, HEX): 0x0F prints as "F"
SC = 123456789
SETUP = f"#SETUP;42;{SC};{KEY}"
TIMING = HdkTiming(blink_s=0.01, read_timeout_s=0.02)


class Hdk:
    """One simulated HDK: an EEPROM image and an RTC that outlive firmware runs."""

    def __init__(self, tmp_path, **config) -> None:
        self.store = RecordStore(Eeprom(tmp_path / "e.bin", page_write_s=0))
        self.rtc = Rtc(start=1_700_000_000)
        self.config = FirmwareConfig(**config)
        self.restart()

    def restart(self) -> HdkFirmware:
        self.fw = HdkFirmware(self.store, self.rtc, self.config, "power", timing=TIMING)
        return self.fw

    def __call__(self, line: str) -> Reply:
        return self.fw.handle(line)


@pytest.fixture
def hdk(tmp_path) -> Hdk:
    return Hdk(tmp_path)


@pytest.fixture
def configured(hdk) -> Hdk:
    hdk(SETUP)
    hdk.restart()
    return hdk


@pytest.fixture
def gen() -> TokenGenerator:
    return TokenGenerator(KEY, SC, count=0)


def test_banner_says_whether_setup_is_done(hdk):
    """openpaygo-hdk.ino setup(): Starting..., the setup state, Started! (println: \\r\\n)."""
    lines = hdk.fw.banner().split("\n")
    assert lines[0] == "INFO: OpenPAYGO-HDK Starting...\r" and lines[-1] == "INFO: OpenPAYGO-HDK Started!\r"
    assert "INFO: Factory setup NOT done\r" in lines
    hdk(SETUP)
    assert "INFO: Factory setup done\r" in hdk.restart().banner().split("\n")


def test_setup_answers_with_info_lines_only_and_echoes_the_key(hdk):
    """factory_setup.cpp: no reply line, INFO lines ending 'Setup complete. RESTART DEVICE.';
    the key is echoed upper case without zero padding."""
    r = hdk(SETUP)
    assert r.line == ""
    assert r.before == (
        "INFO: Setup Data Received\r",
        f"INFO: SN: 42, SC: {SC}, KEY: {PRINTED_KEY}\r",
        "INFO: Setup data saved\r",
        "INFO: Setup complete. RESTART DEVICE.\r",
    )
    st = hdk.store.load().state
    assert (st.provisioned, st.serial, st.starting_code, st.key_hex, st.last_count) == (True, "42", SC, KEY, 0)


@pytest.mark.parametrize(
    "sn,sc,key,want",
    [
        ("  42abc", "+123456789", KEY, ("42", SC, KEY)),  # %d: blanks, sign, digits up to a non-digit
        ("SIM000001", "0123", KEY, ("0", 123, KEY)),  # no digits: the global stays 0
        ("-1", str(SC), KEY, (str(2**32 - 1), SC, KEY)),  # into a uint32
        ("7", str(SC), KEY[:30], ("7", SC, KEY[:30] + "00")),  # a short key: the missing byte reads 0
        ("7", str(SC), KEY + "ff", ("7", SC, KEY)),  # only the first 32 characters
    ],
)
def test_setup_parses_like_the_c_code(hdk, sn, sc, key, want):
    hdk(f"#SETUP;{sn};{sc};{key}")
    st = hdk.store.load().state
    assert (st.serial, st.starting_code, st.key_hex) == want


def test_unconfigured_answers_invalid_to_everything_but_setup(hdk):
    assert hdk("#TOKEN;662486790").line == "#INVALID\r"
    assert hdk("#STATUS;").line == "#INVALID\r"
    assert not hdk.store.load().state.provisioned


def test_setup_only_while_unconfigured(configured):
    r = configured(f"#SETUP;99;1;{'0' * 32}")
    assert (r.before, r.line) == (("INFO: Received Command: SETUP\r",), "#INVALID\r")
    assert configured.store.load().state.serial == "42"


def test_command_without_semicolon_times_out_then_invalid(configured):
    """readStringUntil(';') runs into its timeout and keeps the newline: '#STATUS' is #INVALID."""
    r = configured("#STATUS")
    assert r.line == "INFO: Received Command: STATUS\n\r\n#INVALID\r" and r.delay_s == TIMING.read_timeout_s


def test_bytes_before_the_hash_are_dropped(configured):
    assert configured("PING").line == "" and configured("PING").before == ()
    assert configured("xx#STATUS;").line == "#STATUS;INACTIVE"


def test_replies_blinks_and_newlines(configured, gen):
    """Reply shapes, LED blink delays (invalid 5, used 1, add/set 2, sync 3, disable 5) and the
    two replies that go out without a newline."""
    add = gen.add_days(1)
    r = configured(f"#TOKEN;{add.code}")
    assert r.line == "#TOKEN;VALID;86400" and not r.newline and r.delay_s == pytest.approx(2 * TIMING.blink_s)
    assert r.before[0] == "INFO: Received Command: TOKEN\r"
    assert r.before[1] == f"INFO: Token received: {int(add.code)} | Token Value: 1 | Token Count: 2 | Max Count: 2\r"
    r = configured(f"#TOKEN;{add.code}")
    assert (r.line, r.newline, r.delay_s) == ("#TOKEN;ALREADY_USED\r", True, pytest.approx(TIMING.blink_s))
    r = configured(f"#TOKEN;{gen.invalid(seed=1)}")
    assert (r.line, r.delay_s) == ("#TOKEN;INVALID\r", pytest.approx(5 * TIMING.blink_s))
    assert configured("#STATUS;").line.startswith("#STATUS;ACTIVE;")
    r = configured(f"#TOKEN;{gen.disable().code}")
    assert (r.line, r.delay_s) == ("#TOKEN;PAYG_DISABLED\r", pytest.approx(5 * TIMING.blink_s))
    assert configured("#STATUS;").line == "#STATUS;PAYG_DISABLED\r"
    r = configured(f"#TOKEN;{gen.set_days(0).code}")
    assert r.line == "#TOKEN;VALID;0"
    r = configured("#STATUS;")
    assert (r.line, r.newline) == ("#STATUS;INACTIVE", False)


def test_seconds_left_wraps_once_expired(configured, gen):
    """A COUNTER_SYNC leaves activeUntil (0 after boot) alone: 0 - now as a uint32."""
    r = configured(f"#TOKEN;{gen.counter_sync().code}")
    left = int(r.line.rsplit(";", 1)[1])
    assert left >= 2**31 and (2**32 - left) == pytest.approx(BOOT_EPOCH, abs=2)
    assert r.delay_s == pytest.approx(3 * TIMING.blink_s)


def test_nvm_keeps_count_but_not_credit_and_rtc_restarts(configured, gen):
    """storage.cpp keeps lastCount/usedTokens/paygDisabled, not activeUntil; hal.cpp sets the RTC
    to a fixed epoch at every boot."""
    add = gen.add_days(1)
    assert configured(f"#TOKEN;{add.code}").line == "#TOKEN;VALID;86400"
    assert configured.store.load().state.active_until == 0
    configured.restart()
    assert int(configured.rtc.now()) in (BOOT_EPOCH, BOOT_EPOCH + 1)
    assert configured("#STATUS;").line == "#STATUS;INACTIVE"
    assert configured(f"#TOKEN;{add.code}").line == "#TOKEN;ALREADY_USED\r"


def test_disable_is_not_saved(configured, gen):
    """The PAYG_DISABLED path returns before saveActivationData(): after a restart the device is
    back under PAYG and the same DISABLE token is accepted again."""
    off = gen.disable()
    assert configured(f"#TOKEN;{off.code}").line == "#TOKEN;PAYG_DISABLED\r"
    configured.restart()
    assert configured("#STATUS;").line == "#STATUS;INACTIVE"
    assert configured(f"#TOKEN;{off.code}").line == "#TOKEN;PAYG_DISABLED\r"
    configured(f"#TOKEN;{gen.add_days(1).code}")  # a saved token takes the flag and count along
    configured.restart()
    assert configured("#STATUS;").line == "#STATUS;PAYG_DISABLED\r"


def test_no_lockout(configured, gen):
    """tokenEntryAllowed() is never called: invalid tokens never lock entry."""
    for seed in range(12):
        assert configured(f"#TOKEN;{gen.invalid(seed=seed)}").line == "#TOKEN;INVALID\r"
    assert configured(f"#TOKEN;{gen.add_days(1).code}").line.startswith("#TOKEN;VALID;")


def test_token_read_with_percent_d(configured, gen):
    """sscanf %d: leading zeros go (a leading-zero token still decodes); junk reads as nothing."""
    token = next(t for c in range(2, 64, 2) if (t := gen.at_count(TokenKind.ADD_TIME, 1, c)).code[0] == "0")
    r = configured(f"#TOKEN; {token.code}")
    assert r.line.startswith("#TOKEN;VALID;") and f"Token received: {int(token.code)} |" in r.before[1]
    assert configured("#TOKEN;abc").line == "#TOKEN;INVALID\r"
    assert configured("#TOKEN;123456789012").line == "#TOKEN;INVALID\r"


# -- the corrected build (hdk_fixed) ------------------------------------------------------------


@pytest.fixture
def fixed(tmp_path) -> Hdk:
    h = Hdk(tmp_path, hdk_fixed=True, lockout_unit_s=1.0)
    h(SETUP)
    h.restart()
    return h


def past_lock(h: Hdk) -> None:
    """Move the RTC past the stored lock end, as waiting would."""
    h.rtc.set(max(h.rtc.now(), h.store.load().state.locked_until) + 1)


def test_fixed_locks_entry_on_the_reference_schedule_and_saves_it(fixed, gen):
    """Errors 1-2 free, error 3 locks 2 units, error 4 (after the lock) 4 units; streak and lock
    end are in NVM after every invalid token."""
    for n, lock_s in ((1, 0), (2, 0), (3, 2), (4, 4)):
        now = int(fixed.rtc.now())
        assert fixed(f"#TOKEN;{gen.invalid(seed=n)}").line == "#TOKEN;INVALID\r"
        st = fixed.store.load().state
        assert st.invalid_streak == n
        if lock_s:
            assert st.locked_until - now in (lock_s, lock_s + 1)  # the RTC second may tick meanwhile
        else:
            assert st.locked_until <= now
        past_lock(fixed)


def test_fixed_locked_entry_looks_invalid_and_is_neither_decoded_nor_counted(fixed, gen):
    """While locked a valid token gets #TOKEN;INVALID after the 5 red blinks, with a debug line
    saying why and no 'Token received' line; the streak stays and the token's count is not
    used, so once the lock has passed the same token is accepted."""
    for seed in range(3):
        fixed(f"#TOKEN;{gen.invalid(seed=seed)}")
    add = gen.add_days(1)
    r = fixed(f"#TOKEN;{add.code}")
    assert (r.line, r.delay_s) == ("#TOKEN;INVALID\r", pytest.approx(5 * TIMING.blink_s))
    assert r.before[0] == "INFO: Received Command: TOKEN\r"
    assert r.before[1] in ("INFO: Token entry locked for 2 s\r", "INFO: Token entry locked for 1 s\r")
    st = fixed.store.load().state
    assert (st.invalid_streak, st.last_count) == (3, 0)
    fixed.restart()  # the lock survives a restart
    assert fixed(f"#TOKEN;{add.code}").line == "#TOKEN;INVALID\r"
    past_lock(fixed)
    assert fixed(f"#TOKEN;{add.code}").line == "#TOKEN;VALID;86400"
    st = fixed.store.load().state
    assert (st.invalid_streak, st.last_count) == (0, 2)


def test_fixed_already_used_neither_counts_nor_ends_the_streak(fixed, gen):
    add = gen.add_days(1)
    fixed(f"#TOKEN;{add.code}")
    fixed(f"#TOKEN;{gen.invalid(seed=1)}")
    for _ in range(3):
        assert fixed(f"#TOKEN;{add.code}").line == "#TOKEN;ALREADY_USED\r"
    assert fixed.store.load().state.invalid_streak == 1


def test_fixed_keeps_credit_clock_and_disable_through_a_restart(fixed, gen):
    """activeUntil is saved and loaded, the RTC is not set at boot (it runs on), DISABLE_PAYG is
    saved: after a restart the credit is what it was, minus the time that passed."""
    assert fixed(f"#TOKEN;{gen.add_days(1).code}").line == "#TOKEN;VALID;86400"
    end = fixed.store.load().state.active_until
    assert end == int(fixed.rtc.now()) + 86400 or end == int(fixed.rtc.now()) + 86399
    off_at = fixed.rtc.now()
    fixed.rtc.set(off_at + 600)  # time passes while it is off
    fixed.restart()
    assert fixed.rtc.now() == pytest.approx(off_at + 600, abs=1)  # not set to the fixed epoch
    left = int(fixed("#STATUS;").line.split(";")[2])
    assert 86400 - 602 <= left <= 86400 - 599
    assert fixed(f"#TOKEN;{gen.disable().code}").line == "#TOKEN;PAYG_DISABLED\r"
    fixed.restart()
    assert fixed("#STATUS;").line == "#STATUS;PAYG_DISABLED\r"


def test_unfixed_ignores_the_lockout_unit_and_keeps_nothing_of_it(configured, gen):
    """The published build with the same settings as the fixed one's rig: no lock, no streak in
    NVM, whatever lockout_unit_s says."""
    h = configured
    for seed in range(5):
        assert h(f"#TOKEN;{gen.invalid(seed=seed)}").line == "#TOKEN;INVALID\r"
    st = h.store.load().state
    assert (st.invalid_streak, st.locked_until) == (0, 0)
    assert h(f"#TOKEN;{gen.add_days(1).code}").line.startswith("#TOKEN;VALID;")
