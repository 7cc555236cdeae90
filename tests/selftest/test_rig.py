"""The rig file: every rule rejects a bad file with a one-line error naming the key, and keys never leak."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from bench.rig import KNOWN_PSU_PROFILES, Rig, RigError, load_rig, resolve_rig, virtual_rig

DOCS = Path(__file__).resolve().parents[2] / "docs" / "rigs"
KEY = "bc41ec9530f6dac86b1a29ab82edc5fb"  # public OpenPAYGO test key, standing in for a real one
REAL = """
[station]
id = "lab-1"
[link]
port = "/dev/ttyUSB0"
[psu]
resource = "TCPIP0::10.0.0.5::5025::SOCKET"
[dut]
serial_number = "PG0001"
starting_code = 123
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Rig files are written and loaded as "lab.toml", so messages are predictable."""
    monkeypatch.chdir(tmp_path)


def load(text: str, env: dict | None = None, name: str = "lab.toml") -> Rig:
    Path(name).write_text(text, encoding="utf-8")
    return load_rig(name, env=env or {})


def error(text: str, env: dict | None = None) -> str:
    with pytest.raises(RigError) as info:
        load(text, env)
    message = str(info.value)
    assert "\n" not in message and message.startswith("lab.toml: ")
    return message


def without_file(rig: Rig) -> Rig:
    return dataclasses.replace(rig, source=None, sha256="")


# --- the shipped examples ------------------------------------------------------------------------


def test_virtual_toml_is_the_builtin_virtual_rig():
    rig = load_rig(DOCS / "virtual.toml")
    assert without_file(rig) == virtual_rig()
    assert rig.virtual and rig.source == (DOCS / "virtual.toml").resolve()
    assert rig.sha256 == hashlib.sha256((DOCS / "virtual.toml").read_bytes()).hexdigest()


def test_builtin_virtual_rig_defaults():
    rig = virtual_rig()
    assert (rig.source, rig.sha256, rig.station.id, rig.virtual) == (None, "", "virtual", True)
    assert rig.dut.serial_number == "SIM000001" and rig.dut.starting_code == 123456789
    assert rig.dut.secret_key.reveal() == "a29ab82edc5fbbc41ec9530f6dac86b1" and rig.dut.token_count == 1
    assert rig.psu.profile in KNOWN_PSU_PROFILES and rig.psu.safe_state == "off"


def test_lab_example_loads_with_its_key_in_the_environment():
    rig = load_rig(DOCS / "lab-example.toml", env={"PAYGO_DUT_KEY": KEY})
    assert not rig.virtual
    assert rig.link.port.startswith("/dev/serial/by-id/usb-FTDI")
    assert rig.psu.resource == "TCPIP0::192.168.10.21::5025::SOCKET" and rig.psu.profile == "keysight-e36"
    assert rig.dut.secret_key.reveal() == KEY


def test_lab_example_names_the_missing_environment_variable():
    with pytest.raises(RigError, match=r"dut\.secret_key_env: environment variable PAYGO_DUT_KEY is not set"):
        load_rig(DOCS / "lab-example.toml", env={})


def test_device_list_example_rows(tmp_path):
    (tmp_path / "devices.csv").write_bytes((DOCS / "devices-example.csv").read_bytes())
    base = '[station]\nid = "v"\n[dut]\ndevice_list = "devices.csv"\n'
    one = load(base + 'device_serial = "TEST220000001"\n').dut
    two = load(base + 'device_serial = "TEST240000002"\n').dut
    assert (one.serial_number, one.starting_code, one.secret_key.reveal(), one.token_count) == (
        "TEST220000001",
        516959010,
        KEY,
        1,
    )
    assert (two.serial_number, two.starting_code, two.secret_key.reveal(), two.token_count) == (
        "TEST240000002",
        432435255,
        "dac86b1a29ab82edc5fbbc41ec9530f6",
        10,
    )
    assert two.time_divider == 1 and two.restricted_digits is False


# --- structure -------------------------------------------------------------------------------------


def test_a_virtual_rig_may_omit_every_section_but_station():
    rig = load('[station]\nid = "ci-1"\n')
    assert without_file(rig) == dataclasses.replace(virtual_rig(), station=rig.station)
    assert rig.station.id == "ci-1"


def test_station_id_is_required_and_checked():
    assert error("") == "lab.toml: station.id: missing; expected 1..64 characters of A-Z a-z 0-9 _ . -"
    assert error('[station]\nid = "lab 1"\n').startswith("lab.toml: station.id: got 'lab 1' (string)")


def test_unknown_section_is_named_with_the_valid_ones():
    message = error('[station]\nid = "x"\n[powersupply]\n')
    assert message.startswith("lab.toml: powersupply: unknown section; expected one of station, link, psu")


def test_unknown_key_is_named_with_the_valid_keys_of_its_section():
    message = error('[station]\nid = "x"\n[psu]\nvolatge = 5\n')
    assert message.startswith("lab.toml: psu.volatge: unknown key (did you mean voltage?); expected one of ")
    assert "resource, profile, channel, voltage, current_limit" in message


def test_a_section_must_be_a_table():
    assert error('station = "x"\n') == "lab.toml: station: got 'x' (string); expected a table [station]"


def test_toml_syntax_error_gives_line_and_column():
    message = error('[station]\nid = "x"\n[psu]\nvoltage = = 5\n')
    assert message.startswith("lab.toml: line 4, column 11: TOML syntax error: ")


def test_missing_rig_file_is_named():
    with pytest.raises(RigError, match=r"^nope\.toml: not found; expected a rig file"):
        load_rig("nope.toml")


# --- types and ranges ------------------------------------------------------------------------------


def test_wrong_type_names_file_key_value_and_expectation():
    assert error('[station]\nid = "x"\n[psu]\nchannel = "a"\n') == (
        "lab.toml: psu.channel: got 'a' (string); expected an integer 1..8"
    )


def test_a_bool_is_not_an_integer_but_an_integer_is_a_float():
    assert "psu.channel: got true (boolean)" in error('[station]\nid = "x"\n[psu]\nchannel = true\n')
    rig = load('[station]\nid = "x"\n[psu]\nvoltage = 5\n')
    assert rig.psu.voltage == 5.0 and isinstance(rig.psu.voltage, float)
    assert "dut.restricted_digits: got 1 (integer); expected true or false" in error(
        '[station]\nid = "x"\n[dut]\nrestricted_digits = 1\n'
    )


@pytest.mark.parametrize(
    "section, line, key",
    [
        ("link", "baud = 12345", "link.baud"),
        ("link", "reply_timeout_s = 0", "link.reply_timeout_s"),
        ("link", 'port = "ftp://host:21"', "link.port"),
        ("link", 'port = "socket://host"', "link.port"),
        ("psu", 'profile = "hp-6632"', "psu.profile"),
        ("psu", "channel = 9", "psu.channel"),
        ("psu", "voltage = 60.5", "psu.voltage"),
        ("psu", "voltage = nan", "psu.voltage"),
        ("psu", "current_limit = 0", "psu.current_limit"),
        ("psu", "off_threshold_v = 12.0", "psu.off_threshold_v"),
        ("psu", "min_off_s = -1", "psu.min_off_s"),
        ("psu", 'safe_state = "low"', "psu.safe_state"),
        ("dut", 'adapter = "angaza"', "dut.adapter"),
        ("dut", 'serial_number = "SN 1"', "dut.serial_number"),
        ("dut", "starting_code = 1000000000", "dut.starting_code"),
        ("dut", "token_count = 65536", "dut.token_count"),
        ("dut", "time_divider = 0", "dut.time_divider"),
        ("dut", 'capabilities = ["rtc", "Bad-Name"]', "dut.capabilities"),
        ("dut", "rtc_drift_limit_ppm = 0", "dut.rtc_drift_limit_ppm"),
        ("dut", "rtc_drift_limit_ppm = 100001", "dut.rtc_drift_limit_ppm"),
        ("dut", "rtc_drift_observe_s = 0.5", "dut.rtc_drift_observe_s"),
        ("dut", "rtc_drift_observe_s = 86401", "dut.rtc_drift_observe_s"),
        ("dut", "rtc_drift_max_observe_s = 0", "dut.rtc_drift_max_observe_s"),
        ("server", "port = 70000", "server.port"),
        ("server", 'base_path = "api"', "server.base_path"),
        ("sim", "faults = [1]", "sim.faults"),
        ("sim", "rtc_drift_ppm = 20000", "sim.rtc_drift_ppm"),
        ("sim", 'link = "usb"', "sim.link"),
        ("sim", "brownout_v = 0", "sim.brownout_v"),
        ("sim", 'metrics_mode = "wifi"', "sim.metrics_mode"),
        ("sim", "metrics_period_s = 0.01", "sim.metrics_period_s"),
        ("sim", "metrics_sample_s = 1.5", "sim.metrics_sample_s"),
        ("sim", "metrics_sample_s = 0", "sim.metrics_sample_s"),
        ("sim", 'metrics_encoding = "xml"', "sim.metrics_encoding"),
        ("sim", "metrics_reply_timeout_s = 0", "sim.metrics_reply_timeout_s"),
        ("dut", 'metrics_auth = "none"', "dut.metrics_auth"),
        ("dut", 'metrics_auth = "RA"', "dut.metrics_auth"),
        ("dut", "metrics_period_s = 0.5", "dut.metrics_period_s"),
        ("dut", "metrics_budget_bytes_per_month = 0", "dut.metrics_budget_bytes_per_month"),
        ("dut", "metrics_budget_bytes_per_month = 1.5", "dut.metrics_budget_bytes_per_month"),
    ],
)
def test_out_of_range_values_are_named(section, line, key):
    message = error(f'[station]\nid = "x"\n[{section}]\n{line}\n')
    assert message.startswith(f"lab.toml: {key}: got ") and "; expected " in message


@pytest.mark.parametrize(
    "port",
    [
        "/dev/ttyUSB0",
        "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0",
        "COM3",
        "rfc2217://ser2net.lab:4001",
        "socket://10.0.0.7:4001",
        "loop://",
    ],
)
def test_serial_ports_accepted(port):
    assert load(REAL.replace('"/dev/ttyUSB0"', f'"{port}"') + f'secret_key = "{KEY}"\n').link.port == port


@pytest.mark.parametrize(
    "resource",
    [
        "TCPIP0::10.0.0.5::5025::SOCKET",
        "USB0::0x2A8D::0x1202::MY1::INSTR",
        "ASRL/dev/ttyUSB1::INSTR",
        "TCPIP::psu.lab::INSTR",
    ],
)
def test_visa_resources_accepted(resource):
    assert (
        load(REAL.replace("TCPIP0::10.0.0.5::5025::SOCKET", resource) + f'secret_key = "{KEY}"\n').psu.resource
        == resource
    )


def test_visa_resource_checked():
    message = error(REAL.replace("TCPIP0::10.0.0.5::5025::SOCKET", "10.0.0.5") + f'secret_key = "{KEY}"\n')
    assert message.startswith("lab.toml: psu.resource: got '10.0.0.5' (string); expected a VISA resource")


# --- virtual vs real -------------------------------------------------------------------------------


def test_mixing_virtual_and_real_instruments_is_refused():
    message = error('[station]\nid = "x"\n[psu]\nresource = "TCPIP0::10.0.0.5::5025::SOCKET"\n')
    assert message.startswith("lab.toml: link.port/psu.resource: ")
    assert "mixing a virtual and a real instrument is not supported" in message
    assert "mixing" in error('[station]\nid = "x"\n[link]\nport = "/dev/ttyUSB0"\n')


def test_sim_section_is_refused_on_a_real_rig():
    assert error(REAL + f'secret_key = "{KEY}"\n[sim]\nfaults = []\n').startswith("lab.toml: sim: given on a real rig")


@pytest.mark.parametrize(
    "drop, key",
    [
        ('serial_number = "PG0001"\n', "dut.serial_number"),
        ("starting_code = 123\n", "dut.starting_code"),
        ("", "dut.secret_key"),
    ],
)
def test_a_real_dut_has_no_default_identity(drop, key):
    text = REAL.replace(drop, "") + ("" if key == "dut.secret_key" else f'secret_key = "{KEY}"\n')
    assert error(text).startswith(f"lab.toml: {key}: missing (a real DUT has no default identity)")


def test_real_rig_loads():
    rig = load(REAL + f'secret_key = "{KEY.upper()}"\n')
    assert not rig.virtual and rig.dut.secret_key.reveal() == KEY  # normalised to lower case
    assert rig.dut.token_count == 1 and rig.dut.capabilities == frozenset()


def test_rtc_drift_keys_default_by_rig_kind():
    """A real rig measures drift for 10 min (up to 30); the simulator's large drift takes seconds."""
    real = load(REAL + f'secret_key = "{KEY}"\n').dut
    assert (real.rtc_drift_limit_ppm, real.rtc_drift_observe_s, real.rtc_drift_max_observe_s) == (685.0, 600.0, 1800.0)
    virtual = virtual_rig()
    assert (virtual.dut.rtc_drift_observe_s, virtual.dut.rtc_drift_max_observe_s) == (4.0, 45.0)
    assert virtual.sim.rtc_drift_ppm == 250.0 and virtual.dut.rtc_drift_limit_ppm == 685.0


def test_off_times_default_by_rig_kind():
    """A real DUT's capacitors hold it up after the rail reads off: 0.5 s off per cycle and 2 s for
    the timekeeping tests; the simulated rail is down in 0.1 s and its device cannot miss it. A
    rig file's own values stand."""
    real = load(REAL + f'secret_key = "{KEY}"\n')
    assert (real.psu.min_off_s, real.dut.rtc_off_test_s) == (0.5, 2.0)
    virtual = virtual_rig()
    assert (virtual.psu.min_off_s, virtual.dut.rtc_off_test_s, virtual.sim.psu_decay_s) == (0.06, 5.0, 0.04)
    given = load(REAL.replace("[dut]", "[dut]\nrtc_off_test_s = 5") + f'secret_key = "{KEY}"\n')
    assert given.dut.rtc_off_test_s == 5.0


def test_metrics_keys_default_and_reach_the_simulator():
    """[sim] metrics_*: the simulated firmware build's Metrics sessions (the virtual rig reports
    directly every 0.2 s with a row every five minutes, as a product samples; the Metrics tests
    ask it for a row a second); [dut]
    metrics_*: what the bench configures and judges on any DUT (payload auth, the product's
    period, the monthly budget)."""
    from bench.sim.virtual_rig import SimOptions
    from bench.station.virtual_rig import sim_options

    rig = virtual_rig()
    assert (
        rig.sim.metrics_mode,
        rig.sim.metrics_period_s,
        rig.sim.metrics_sample_s,
        rig.sim.metrics_encoding,
        rig.sim.metrics_reply_timeout_s,
    ) == ("direct", 0.2, 300, "json", 1.0)
    assert (rig.dut.metrics_auth, rig.dut.metrics_period_s, rig.dut.metrics_budget_bytes_per_month) == (
        "ra",
        3600.0,
        750_000,
    )
    real = load(
        REAL + f'secret_key = "{KEY}"\nmetrics_auth = "ca"\nmetrics_period_s = 86400\n'
        "metrics_budget_bytes_per_month = 100000\n"
    ).dut
    assert (real.metrics_auth, real.metrics_period_s, real.metrics_budget_bytes_per_month) == ("ca", 86400.0, 100_000)
    bridge = virtual_rig(metrics_mode="bridge", metrics_encoding="cbor", metrics_period_s=0.5, metrics_sample_s=2)
    build = SimOptions.from_dict(sim_options(bridge, "/tmp/unused")).build
    assert (
        build.metrics_mode,
        build.metrics_encoding,
        build.metrics_period_s,
        build.metrics_sample_s,
        build.metrics_reply_timeout_s,
    ) == ("bridge", "cbor", 0.5, 2, 1.0)
    assert load_rig(DOCS / "virtual-bridge.toml").sim == dataclasses.replace(virtual_rig().sim, metrics_mode="bridge")
    assert error('[station]\nid = "x"\n[sim]\nmetrics_mode = "wifi"\n') == (
        'lab.toml: sim.metrics_mode: got \'wifi\' (string); expected one of "off", "direct", "bridge"'
    )


def test_hdk_virtual_rig_still_loads():
    rig = load_rig(DOCS / "hdk-virtual.toml")
    assert rig.dut.adapter == "hdk" and rig.dut.metrics_auth == "ra"


def test_rtc_drift_max_observe_must_cover_observe():
    message = error(REAL + f'secret_key = "{KEY}"\nrtc_drift_observe_s = 3600\n')
    assert message == (
        "lab.toml: dut.rtc_drift_max_observe_s: got 1800 with dut.rtc_drift_observe_s 3600; "
        "expected seconds >= dut.rtc_drift_observe_s"
    )
    rig = load(REAL + f'secret_key = "{KEY}"\nrtc_drift_observe_s = 60\nrtc_drift_max_observe_s = 60\n')
    assert (rig.dut.rtc_drift_observe_s, rig.dut.rtc_drift_max_observe_s) == (60.0, 60.0)


# --- secrets ---------------------------------------------------------------------------------------


def test_exactly_one_key_source():
    message = error(REAL + f'secret_key = "{KEY}"\nsecret_key_env = "K"\n', env={"K": KEY})
    assert message.startswith(
        "lab.toml: dut.secret_key_env: given together with dut.secret_key; "
        "expected exactly one of secret_key, secret_key_env, secret_key_file"
    )


def test_key_from_environment():
    assert load(REAL + 'secret_key_env = "K"\n', env={"K": f" {KEY}\n"}).dut.secret_key.reveal() == KEY
    assert error(REAL + 'secret_key_env = "K"\n').startswith(
        "lab.toml: dut.secret_key_env: environment variable K is not set"
    )


def test_key_from_file_relative_to_the_rig_file(tmp_path):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "k.txt").write_text(f"\n  {KEY}  \n")
    (tmp_path / "keys" / "k.txt").chmod(0o600)  # the owner's alone, as a key file should be (test_key_file.py)
    Path("rigs").mkdir()
    rig = load(REAL + 'secret_key_file = "../keys/k.txt"\n', name="rigs/lab.toml")
    assert rig.dut.secret_key.reveal() == KEY
    message = error(REAL + 'secret_key_file = "missing.txt"\n')
    assert message.startswith("lab.toml: dut.secret_key_file: ") and "missing.txt: not found" in message


BAD_KEY = KEY[:30]  # a leaked-looking but wrong key: must not be shown either


@pytest.mark.parametrize(
    "setup, line, key",
    [
        ({}, f'secret_key = "{BAD_KEY}"', "dut.secret_key"),
        ({"env": {"K": BAD_KEY}}, 'secret_key_env = "K"', "dut.secret_key_env"),
        ({"file": BAD_KEY}, 'secret_key_file = "k.txt"', "dut.secret_key_file"),
    ],
)
def test_a_bad_key_is_counted_never_shown(setup, line, key):
    if "file" in setup:
        Path("k.txt").write_text(setup["file"])
        Path("k.txt").chmod(0o600)
    message = error(REAL + line + "\n", env=setup.get("env"))
    assert message.startswith(f"lab.toml: {key}: ")
    assert "not 32 hex characters (got 30 characters); expected 32 hex characters" in message
    assert BAD_KEY not in message


@pytest.mark.parametrize(
    "text",
    [
        REAL + "secret_key = 12345678901234567890\n",  # wrong type: its value is still not shown
        REAL + f'secret_key = "{KEY}x"\n',
        REAL + f'secret_key = "{KEY}"\n[link2]\n',
        REAL.replace('"PG0001"', f'"{KEY}-"') + f'secret_key = "{KEY}"\n',  # key in the wrong place
        f'[station]\nid = "{KEY}!"\n',
        f'[station]\nid = "x"\n[dut]\ndevice_list = "devices.csv"\ndevice_serial = "{KEY}"\n',
    ],
)
def test_no_error_shows_a_key(text):
    Path("devices.csv").write_bytes((DOCS / "devices-example.csv").read_bytes())
    with pytest.raises(RigError) as info:
        load(text)
    for shown in (str(info.value), repr(info.value), info.value.message):
        assert KEY not in shown and "12345678901234567890" not in shown and KEY[:16] not in shown


def test_repr_describe_and_secrets_mask_the_key():
    rig = load(REAL + f'secret_key = "{KEY}"\n')
    described = json.dumps(rig.describe())
    assert KEY not in repr(rig) and KEY not in str(rig) and KEY not in described
    assert rig.describe()["dut"]["secret_key"] == "***" and rig.describe()["source"] == str(rig.source)
    assert [s.reveal() for s in rig.secrets()] == [KEY]


# --- the device list -------------------------------------------------------------------------------

HEADER = "Serial Number,Starting Code,Key,Count,Time Divider,Restricted Digit Mode,Hardware Model,Version,Test Code\n"
LISTED = REAL.replace(
    'serial_number = "PG0001"\nstarting_code = 123\n', 'device_list = "d.csv"\ndevice_serial = "PG0001"\n'
)


def csv_rows(*rows: str) -> None:
    Path("d.csv").write_text(HEADER + "".join(r + "\n" for r in rows))


def test_blank_cells_take_defaults_or_dut_values():
    csv_rows(f"PG0001,42,{KEY},,,1,SHS-200,2.4.1,")
    dut = load(LISTED).dut
    assert (dut.serial_number, dut.starting_code, dut.token_count, dut.time_divider) == ("PG0001", 42, 1, 1)
    assert dut.restricted_digits and (dut.hardware_model, dut.firmware_version) == ("SHS-200", "2.4.1")
    csv_rows("PG0001,42,,5,4,0,,,")  # blank Key: [dut] supplies it
    dut = load(LISTED + f'secret_key = "{KEY}"\n').dut
    assert (dut.secret_key.reveal(), dut.token_count, dut.time_divider) == (KEY, 5, 4)


def test_device_list_value_given_twice_is_refused():
    csv_rows(f"PG0001,42,{KEY},1,1,0,,,")
    assert error(LISTED + "starting_code = 7\n").startswith(
        "lab.toml: dut.starting_code: also given by the device list row of dut.device_serial"
    )
    assert error(LISTED + f'secret_key = "{KEY}"\n').startswith("lab.toml: dut.secret_key: also given")


def test_serial_missing_from_the_device_list_is_named():
    csv_rows(f"PG0002,42,{KEY},1,1,0,,,")
    assert error(LISTED).startswith("lab.toml: dut.device_serial: no row with Serial Number 'PG0001' (string) in ")


def test_duplicate_serial_in_the_device_list_is_refused():
    csv_rows(f"PG0001,42,{KEY},1,1,0,,,", f"PG0001,43,{KEY},1,1,0,,,")
    with pytest.raises(RigError) as info:  # the one device-list parser: a list naming a device twice is wrong
        load(LISTED)
    assert str(info.value).endswith(
        "d.csv: line 3: Serial Number: 'PG0001' is also on line 2; expected each device once"
    )


def test_device_list_with_wrong_headers_is_named():
    Path("d.csv").write_text(HEADER.replace("Key", "Secret") + f"PG0001,42,{KEY},1,1,0,,,\n")
    with pytest.raises(RigError) as info:
        load(LISTED)
    assert info.value.path.endswith("d.csv") and info.value.key == "header"
    assert "missing Key; unexpected 'Secret'" in info.value.message


def test_device_list_bad_cells_are_named_by_line_and_column():
    csv_rows(f"PG0001,42,{KEY},1,300,0,,,")
    time_divider = r"d\.csv: line 2: Time Divider: got '300' \(string\); expected an integer 1\.\.255"
    with pytest.raises(RigError, match=time_divider):
        load(LISTED)
    csv_rows(f"PG0001,42,{BAD_KEY},1,1,0,,,")
    with pytest.raises(RigError) as info:
        load(LISTED)
    assert info.value.key == "line 2: Key" and "got 30 characters" in str(info.value)
    assert BAD_KEY not in str(info.value)


def test_device_list_file_and_serial_go_together():
    assert error(LISTED).startswith("lab.toml: dut.device_list: ") and "not found" in error(LISTED)
    csv_rows(f"PG0001,42,{KEY},1,1,0,,,")
    assert error(LISTED.replace('device_serial = "PG0001"\n', "")).startswith("lab.toml: dut.device_serial: missing")
    assert error('[station]\nid = "x"\n[dut]\ndevice_serial = "PG0001"\n').startswith(
        "lab.toml: dut.device_serial: given without dut.device_list"
    )


# --- virtual_rig and resolve_rig -------------------------------------------------------------------


def test_virtual_rig_overrides_are_validated():
    assert virtual_rig(faults=["nvm_torn_write"], rtc_drift_ppm=50).sim.faults == ("nvm_torn_write",)
    with pytest.raises(RigError, match=r"^virtual_rig\(\): sim\.fault: unknown key \(did you mean faults"):
        virtual_rig(fault=["x"])
    with pytest.raises(RigError, match=r"^virtual_rig\(\): sim\.link: got 'usb' \(string\)"):
        virtual_rig(link="usb")


def test_resolve_rig_prefers_path_then_environment_then_virtual():
    Path("a.toml").write_text('[station]\nid = "a"\n')
    Path("b.toml").write_text('[station]\nid = "b"\n')
    env = {"PAYGO_BENCH_RIG": "b.toml"}
    assert resolve_rig("a.toml", env=env).station.id == "a"
    assert resolve_rig(None, env=env).station.id == "b"
    assert resolve_rig(None, env={}) == virtual_rig()


def test_one_device_list_parser_serves_the_rig_and_the_metrics_server():
    """The same CSV is read the same way by `run` (a rig's dut.device_list) and `serve --devices`:
    what one accepts the other accepts with the same values, what one refuses the other refuses
    naming the same line and column (a starting code of 0 among them: openpaygo would derive one)."""
    from bench.server.devices import DeviceFileError, load_devices

    csv_rows(f"PG0001,42,{KEY},7,4,1,,,")
    dut = load(LISTED).dut
    (device,) = load_devices("d.csv")
    assert (dut.starting_code, dut.secret_key, dut.token_count, dut.time_divider, dut.restricted_digits) == (
        device.starting_code,
        device.key,
        device.count,
        device.time_divider,
        device.restricted_digits,
    )
    csv_rows(f"PG0001,0,{KEY},1,1,0,,,")
    with pytest.raises(RigError) as rig_error:
        load(LISTED)
    with pytest.raises(DeviceFileError) as server_error:
        load_devices("d.csv")
    for text in (str(rig_error.value), str(server_error.value)):
        assert text.endswith("d.csv: line 2: Starting Code: got '0' (string); expected an integer 1..999999999"), text
