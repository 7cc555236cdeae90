"""The device registry (files, rig profile, persisted state) and the token plan."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import openpaygo
import pytest
from openpaygo import TokenType

from bench.rig import virtual_rig
from bench.secret import Secret
from bench.server.activation import active_seconds_left, active_until_timestamp, plan_tokens
from bench.server.devices import Device, DeviceFileError, DeviceRegistry, device_from_profile, load_devices
from bench.server.store import DeviceState, Store

KEY = "bc41ec9530f6dac86b1a29ab82edc5fb"
NOW = 1_800_000_000.0
DEV = Device("TEST220000001", Secret(KEY), 516959010, count=1)


def decode(code: str, count: int, device: Device = DEV):
    value, kind, new_count, _ = openpaygo.decode_token(
        token=code,
        secret_key=device.key.reveal(),
        count=count,
        used_counts=[count],
        starting_code=device.starting_code,
        value_divider=device.time_divider,
        restricted_digit_set=device.restricted_digits,
    )
    return value, kind, new_count


def test_toml_json_and_csv_device_files(tmp_path, monkeypatch):
    (tmp_path / "d.toml").write_text(
        '[[device]]\nserial_number = "A"\nsecret_key = "%s"\nstarting_code = 123456789\n'
        "time_divider = 4\nactive_until = 2030-01-01T00:00:00Z\n"
        '[[device]]\nserial_number = "B"\nsecret_key_env = "B_KEY"\nstarting_code = 5\ncount = 10\n' % KEY
    )
    (tmp_path / "d.json").write_text(
        json.dumps(
            {
                "devices": [
                    {"serial_number": "A", "secret_key": KEY.upper(), "starting_code": 1, "restricted_digits": True}
                ]
            }
        )
    )
    (tmp_path / "d.csv").write_text(
        "Serial Number,Starting Code,Key,Count,Time Divider,Restricted Digit Mode,Hardware Model,Version,Test Code\n"
        f"TEST220000001,516959010,{KEY},1,1,0,,,\nTEST2,432435255,{KEY},10,2,1,M,1.0,\n"
    )
    a, b = load_devices(tmp_path / "d.toml", env={"B_KEY": KEY})
    assert a.time_divider == 4 and a.active_until == datetime(2030, 1, 1, tzinfo=UTC)
    assert b.count == 10 and b.key.reveal() == KEY
    (j,) = load_devices(tmp_path / "d.json")
    assert j.restricted_digits and j.key.reveal() == KEY
    c1, c2 = load_devices(tmp_path / "d.csv")
    assert (c1.serial_number, c1.starting_code, c1.count) == ("TEST220000001", 516959010, 1)
    assert (c2.time_divider, c2.restricted_digits) == (2, True)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('[[device]]\nserial_number = "A"\nstarting_code = 1\n', "exactly one of secret_key"),
        ('[[device]]\nserial_number = "A"\nsecret_key = "abc"\nstarting_code = 1\n', "not 32 hex"),
        ('[[device]]\nserial_number = "A"\nsecret_key = "%s"\nstarting_code = 0\n' % KEY, "starting_code"),
        ('[[device]]\nserial_number = "A"\nsecret_key = "%s"\nstarting_code = 1\ncolour = 1\n' % KEY, "unknown key"),
        ('[[device]]\nserial_number = "A"\nsecret_key = "%s"\nstarting_code = 1\n' % KEY * 2, "listed twice"),
    ],
)
def test_device_file_errors_name_the_key_and_never_show_it(tmp_path, text, fragment):
    (tmp_path / "d.toml").write_text(text)
    with pytest.raises(DeviceFileError) as info:
        load_devices(tmp_path / "d.toml")
    assert fragment in str(info.value) and KEY not in str(info.value)


def test_a_registry_from_the_rig_profile_persists_state(tmp_path):
    device = device_from_profile(virtual_rig().dut)
    with Store(tmp_path / "m.db") as store:
        reg = DeviceRegistry([device], store)
        assert reg.count(device.serial_number) == device.count
        reg.set_target(device.serial_number, datetime(2030, 1, 1, tzinfo=UTC))
        with pytest.raises(ValueError):
            reg.set_target(device.serial_number, datetime(2030, 1, 1))
    with Store(tmp_path / "m.db") as store:
        reg = DeviceRegistry([device], store)  # the file's count does not overwrite the stored state
        assert reg.state(device.serial_number).target_until == datetime(2030, 1, 1, tzinfo=UTC).timestamp()
        assert "***" in repr(reg.get(device.serial_number)) and device.key.reveal() not in repr(
            reg.get(device.serial_number)
        )


def test_one_set_time_token_for_the_remaining_time():
    state = DeviceState(DEV.serial_number, 1, target_until=NOW + 3 * 86400 - 5)
    tokens, new = plan_tokens(DEV, state, 1, NOW)
    assert [(t.kind, t.value) for t in tokens] == [("set_time", 3)]  # rounded up: never locked early
    value, kind, count = decode(tokens[0].code, 1)
    assert (value, kind, count) == (3.0, TokenType.SET_TIME, tokens[0].count) and new.token_count == count
    # the device entered it: nothing more to send
    assert plan_tokens(DEV, new, count, NOW + 60) == ([], new)
    # it has not entered it yet: the same token again
    assert plan_tokens(DEV, new, 1, NOW + 60)[0] == tokens


def test_a_new_target_or_a_device_ahead_gets_a_new_token():
    state = DeviceState(DEV.serial_number, 1, target_until=NOW + 86400)
    tokens, state = plan_tokens(DEV, state, 1, NOW)
    moved = DeviceState(**{**state.__dict__, "target_until": NOW + 10 * 86400})
    again, after = plan_tokens(DEV, moved, tokens[0].count, NOW)
    assert again[0].value == 10 and again[0].count > tokens[0].count
    ahead, _ = plan_tokens(DEV, after, after.token_count + 6, NOW)
    assert ahead[0].count > after.token_count + 6


def test_long_targets_add_time_after_the_set_and_past_targets_set_zero():
    state = DeviceState(DEV.serial_number, 1, target_until=NOW + 2000 * 86400)
    tokens, _ = plan_tokens(DEV, state, 1, NOW)
    assert [(t.kind, t.value) for t in tokens] == [("set_time", 995), ("add_time", 995), ("add_time", 10)]
    assert [t.count for t in tokens] == sorted(t.count for t in tokens)
    past, _ = plan_tokens(DEV, DeviceState(DEV.serial_number, 1, target_until=NOW - 5), 1, NOW)
    assert [(t.kind, t.value) for t in past] == [("set_time", 0)]
    assert plan_tokens(DEV, DeviceState(DEV.serial_number, 1), 1, NOW)[0] == []


def test_time_divider_granularity():
    dev = Device("D4", Secret(KEY), 123456789, time_divider=4)
    tokens, _ = plan_tokens(dev, DeviceState("D4", 1, target_until=NOW + 2.5 * 86400), 1, NOW)
    assert tokens[0].value == 10
    assert decode(tokens[0].code, 1, dev)[0] == 2.5


def test_auts_and_asl_are_integers_with_the_right_sign():  # "asl sign", "auts float" (docs/metrics.md)
    state = DeviceState("X", 1, target_until=NOW + 3600.7)
    assert active_until_timestamp(state) == int(NOW + 3600) and isinstance(active_until_timestamp(state), int)
    assert active_seconds_left(state, NOW) == 3600
    assert active_seconds_left(DeviceState("X", 1, target_until=NOW - 3600), NOW) == 0
    assert (active_until_timestamp(DeviceState("X", 1)), active_seconds_left(DeviceState("X", 1), NOW)) == (0, 0)
    assert timedelta(seconds=active_seconds_left(state, NOW)) == timedelta(hours=1)
