"""PSU profiles are valid data; their reply parsers accept what instruments say, and only that."""

from __future__ import annotations

import dataclasses

import pytest

from bench.power.profiles import (
    PROFILES,
    SCPI_ERROR,
    BoolReply,
    ErrorReply,
    HexBitsReply,
    PsuProfile,
    get_profile,
)

REQUIRED = {
    "generic-scpi",
    "keysight-e36",
    "rigol-dp800",
    "siglent-spd3303x",
    "rs-hmp",
    "aimtti-cpx",
}


def test_required_profiles_exist_and_are_named_by_their_key():
    assert REQUIRED <= set(PROFILES)
    for name, profile in PROFILES.items():
        assert profile.name == name
        assert profile.description
        assert 0 < profile.lan_port < 65536


def test_get_profile_is_case_insensitive_and_lists_known_names():
    assert get_profile(" Rigol-DP800 ") is PROFILES["rigol-dp800"]
    with pytest.raises(ValueError) as err:
        get_profile("keysight-e3600")
    for name in PROFILES:
        assert name in str(err.value)


def test_profiles_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROFILES["keysight-e36"].lan_port = 1  # type: ignore[misc]


@pytest.mark.parametrize("profile", PROFILES.values(), ids=list(PROFILES))
def test_templates_fill_without_leftovers(profile: PsuProfile):
    for field in ("set_voltage", "set_current_limit"):
        cmd = profile.command(getattr(profile, field), 2, 1.5)
        assert "1.5" in cmd and "{" not in cmd
    for field in ("output_on", "output_off", "output_query", "measure_voltage", "measure_current"):
        cmd = profile.command(getattr(profile, field), 2)
        assert "{" not in cmd and cmd.strip() == cmd
        if profile.channel_in_command and field != "output_query":
            assert "2" in cmd


def test_quirks_are_data():
    assert get_profile("rigol-dp800").lan_port == 5555
    assert get_profile("aimtti-cpx").lan_port == 9221
    assert get_profile("siglent-spd3303x").min_cmd_interval_s == pytest.approx(0.020)
    assert get_profile("keysight-e36").select_channel == "INST:NSEL {ch}"
    assert not get_profile("keysight-e36").channel_in_command
    assert get_profile("aimtti-cpx").channel_in_command


def test_profile_without_select_needs_channel_in_commands():
    base = PROFILES["rigol-dp800"]
    with pytest.raises(ValueError, match="set_voltage"):
        dataclasses.replace(base, set_voltage="VOLT {value}")


def test_number_reply_needs_a_value_group():
    with pytest.raises(ValueError, match="value"):
        dataclasses.replace(PROFILES["keysight-e36"], number_reply=r"\d+")


@pytest.mark.parametrize(
    "name,reply,value",
    [
        ("keysight-e36", "+5.00000000E+00", 5.0),
        ("keysight-e36", "-1.5e-3", -0.0015),
        ("keysight-e36", ".5", 0.5),
        ("rigol-dp800", "4.9990", 4.999),
        ("aimtti-cpx", "5.000V", 5.0),
        ("aimtti-cpx", "0.100A", 0.1),
        ("aimtti-cpx", "V1 5.00", 5.0),
    ],
)
def test_number_replies(name, reply, value):
    assert get_profile(name).parse_number(reply) == pytest.approx(value)


@pytest.mark.parametrize(
    "name,reply",
    [
        ("keysight-e36", "ABC"),
        ("keysight-e36", ""),
        ("keysight-e36", "5.0V"),
        ("keysight-e36", "nan"),
        ("keysight-e36", "inf"),
        ("keysight-e36", "5,6"),
        ("aimtti-cpx", "5.000X"),
    ],
)
def test_number_replies_rejected(name, reply):
    with pytest.raises(ValueError):
        get_profile(name).parse_number(reply)


def test_bool_reply():
    p = BoolReply()
    assert p.parse("1", 1) and p.parse("on", 1) and not p.parse("0", 3) and not p.parse("OFF", 1)
    for bad in ("", "2", "YES", "1 1"):
        with pytest.raises(ValueError):
            p.parse(bad, 1)
    assert get_profile("aimtti-cpx").output_state.parse("OP1 1", 1) is True


def test_hex_bits_reply_reads_the_channel_bit():
    p = HexBitsReply(first_bit=4)
    assert p.parse("0x0010", 1) and not p.parse("0x0010", 2)
    assert p.parse("0x0020", 2) and not p.parse("0x0020", 1)
    assert p.parse("30", 1) and p.parse("30", 2)
    with pytest.raises(ValueError):
        p.parse("0xZZ", 1)


def test_error_replies():
    assert SCPI_ERROR.parse('+0,"No error"') == (0, "No error")
    assert SCPI_ERROR.parse('-113,"Undefined header"') == (-113, "Undefined header")
    assert not SCPI_ERROR.is_error(0) and SCPI_ERROR.is_error(-113)
    siglent = get_profile("siglent-spd3303x").error_reply
    assert siglent.parse("0  No Error") == (0, "No Error")
    tti = get_profile("aimtti-cpx").error_reply
    assert tti.parse("0") == (0, "") and tti.parse("116") == (116, "")
    for bad in ("", "No error", '"x",1'):
        with pytest.raises(ValueError):
            SCPI_ERROR.parse(bad)
    with pytest.raises(ValueError):
        ErrorReply(r"(?P<code>\d+)").parse("-1")


def test_siglent_interval_grows_with_command_length():
    p = get_profile("siglent-spd3303x")
    assert p.interval_after("x" * 60) == pytest.approx(0.020 + 60 / 6000)
    assert get_profile("keysight-e36").interval_after("VOLT 5") == 0.0
