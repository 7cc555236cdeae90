"""The Metrics codec: every key of both spec versions, expansion rules, refusals with a reason,
and requests built for the wire (JSON/CBOR, simple/condensed) that parse back to themselves."""

from __future__ import annotations

import json

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpaygo import MetricsRequestHandler, MetricsResponseHandler

from bench.openpaygo.metrics.codec import MetricsRequest, parse_body, parse_request
from bench.openpaygo.metrics.condense import build_request, condense_row, to_condensed
from bench.openpaygo.metrics.errors import CODES, MetricsError
from bench.openpaygo.metrics.format import DataFormat, VariableType, parse_data_format
from bench.openpaygo.metrics.keys import REPLY_LONG_TO_SHORT, REQUEST_LONG_TO_SHORT
from bench.openpaygo.metrics.wire import Encoding, encoding_of

NOW = 1_700_000_000
FMT = parse_data_format(
    {
        "data_order": ["token_count", "tampered", "firmware_version", "position"],
        "historical_data_order": ["panel_voltage", "battery_voltage", "energy", "overload_alert", "timestamp"],
        "historical_data_interval": 60,
        "variables": {
            "tampered": {"name": "Tampered", "type": "bool"},
            "firmware_version": {"name": "Firmware", "type": "text"},
            "position": {"name": "Position", "type": "gps"},
            "panel_voltage": {"name": "Panel Voltage", "type": "float", "unit": "V"},
            "energy": {"name": "Energy", "type": "integer", "unit": "Wh", "scale_factor": 100},
            "overload_alert": {"name": "Overload", "type": "bool"},
        },
    }
).with_id(7)


def formats(i: int) -> DataFormat | None:
    return FMT if i == 7 else None


def parse(value, **kw) -> MetricsRequest:
    return parse_request(value, formats=formats, received_at=NOW, **kw)


def refused(value, code: str, where: str | None = None, **kw) -> MetricsError:
    with pytest.raises(MetricsError) as info:
        parse(value, **kw)
    assert info.value.code == code, info.value
    assert info.value.status == CODES[code][0]
    if where is not None:
        assert info.value.where == where, info.value
    return info.value


# -- keys ------------------------------------------------------------------------------------


def test_every_short_key_of_both_versions_is_known():
    assert set(REQUEST_LONG_TO_SHORT.values()) == {"sn", "d", "hd", "ts", "rc", "dct", "a", "df", "dfo", "acc"}
    assert set(REPLY_LONG_TO_SHORT.values()) == {"sn", "tkl", "auts", "asl", "st", "ed", "a"}


def test_short_and_long_keys_expand_to_the_same_request():
    short = {
        "sn": "X1",
        "ts": NOW,
        "rc": 5,
        "dct": NOW + 3,
        "a": "sa0",
        "df": 7,
        "d": {"tc": 4, "autsr": True, "aslr": 1},
        "hd": [[1.5]],
        "acc": [{"sn": "TV1", "d": {"on": True}}],
    }
    long = {
        "serial_number": "X1",
        "timestamp": NOW,
        "request_count": 5,
        "data_collection_timestamp": NOW + 3,
        "auth": "sa0",
        "data_format_id": 7,
        "data": {"token_count": 4, "active_until_timestamp_requested": True, "active_seconds_left_requested": 1},
        "historical_data": [[1.5]],
        "accessories": [{"serial_number": "TV1", "data": {"on": True}}],
    }
    a, b = parse(short), parse(long)
    assert a.to_simple() == b.to_simple()
    assert a.condensed_keys and not b.condensed_keys
    assert a.token_count == 4 and a.wants_active_until and a.wants_seconds_left
    assert a.data_collection_timestamp == NOW + 3 and a.auth == "sa0"
    assert a.accessories[0].serial_number == "TV1"


def test_openpaygo_dtc_is_read_as_dct():  # openpaygo's "dtc for dct" (docs/metrics.md)
    assert parse({"sn": "X", "dtc": NOW, "d": {"x": "1"}}).data_collection_timestamp == NOW


def test_short_data_keys_inside_d_objects_are_expanded():  # openpaygo's "Short keys in d" (docs/metrics.md)
    req = parse({"sn": "X", "d": {"tc": 5}})
    assert req.data == {"token_count": 5} and req.token_count == 5


def test_the_same_field_under_both_keys_is_refused():
    refused({"sn": "X", "serial_number": "X", "d": {"a": "1"}}, "duplicate_field")


# -- expansion -------------------------------------------------------------------------------


def test_arrays_follow_the_data_order_and_null_means_not_sent():
    req = parse({"sn": "X", "df": 7, "d": [13, None, "1.2"], "hd": [[17.5, 12.5]]})
    assert req.data == {"token_count": 13, "firmware_version": "1.2"}
    assert req.historical_data == ({"panel_voltage": 17.5, "battery_voltage": 12.5, "timestamp": NOW},)


def test_index_keyed_objects_in_d_and_hd():
    req = parse({"sn": "X", "df": 7, "d": {"2": "1.2", "0": 3}, "hd": [{"3": True}]})
    assert req.data == {"firmware_version": "1.2", "token_count": 3}
    assert req.historical_data[0]["overload_alert"] is True


@pytest.mark.parametrize("interval, times", [(60, [NOW, NOW + 60, NOW + 120]), (-60, [NOW, NOW - 60, NOW - 120])])
def test_historical_data_interval_either_sign(interval, times):
    fmt = {"historical_data_order": ["v"], "historical_data_interval": interval}
    req = parse({"sn": "X", "ts": NOW, "dfo": fmt, "hd": [[1], [2], [3]]})
    assert [r["timestamp"] for r in req.historical_data] == times


def test_an_explicit_row_timestamp_resets_the_interval_base():
    req = parse({"sn": "X", "ts": NOW, "df": 7, "hd": [[1.0], [2.0, 1, 1, 1, 5000], [3.0]]})
    assert [r["timestamp"] for r in req.historical_data] == [NOW, 5000, 5060]


def test_relative_time_counts_from_the_request_then_from_the_previous_row():
    fmt = {"historical_data_order": ["v", "relative_time"]}
    req = parse({"sn": "X", "ts": NOW, "dfo": fmt, "hd": [[1, -10], [2, -30], {"relative_time": 5, "v": 3}]})
    assert [r["timestamp"] for r in req.historical_data] == [NOW - 10, NOW - 40, NOW - 35]
    assert all("relative_time" not in r for r in req.historical_data)


def test_reference_time_is_ts_then_dct_then_reception():
    fmt = {"historical_data_order": ["v"], "historical_data_interval": 10}
    assert parse({"sn": "X", "dfo": fmt, "hd": [[1]]}).historical_data[0]["timestamp"] == NOW
    assert parse({"sn": "X", "dct": 5, "dfo": fmt, "hd": [[1]]}).historical_data[0]["timestamp"] == 5
    assert parse({"sn": "X", "ts": 9, "dct": 5, "dfo": fmt, "hd": [[1]]}).historical_data[0]["timestamp"] == 9


def test_iso_8601_timestamps_v0_11_and_unix_numbers_v1_0():
    a = parse({"sn": "X", "ts": "2021-01-25T13:57:50Z", "d": {"x": "1"}})
    b = parse({"sn": "X", "ts": 1611583070, "d": {"x": "1"}})
    c = parse({"sn": "X", "ts": "2021-01-25T15:57:50+02:00", "d": {"x": "1"}})
    naive = parse({"sn": "X", "ts": "2021-01-25T13:57:50", "d": {"x": "1"}})
    assert a.timestamp == b.timestamp == c.timestamp == naive.timestamp == 1611583070
    row = parse({"sn": "X", "hd": [{"timestamp": "2021-01-25T13:57:50.5Z", "v": 1}]}).historical_data[0]
    assert row["timestamp"] == 1611583070.5


def test_accessories_recursively_with_their_own_formats():
    req = parse(
        {
            "sn": "HUB",
            "d": {"x": "1"},
            "acc": [
                {"sn": "TV", "df": 7, "d": [2]},
                {
                    "sn": "FRIDGE",
                    "dfo": {"data_order": ["temp"]},
                    "d": [4.5],
                    "acc": [{"sn": "COMPRESSOR", "d": {"on": True}}],
                },
            ],
        }
    )
    tv, fridge = req.accessories
    assert tv.data == {"token_count": 2} and fridge.data == {"temp": 4.5}
    assert fridge.accessories[0].data == {"on": True}
    assert req.to_simple()["accessories"][1]["accessories"][0]["serial_number"] == "COMPRESSOR"


def test_accessory_errors_name_the_path():
    refused({"sn": "HUB", "d": {"x": "1"}, "acc": [{"sn": "TV", "d": [1]}]}, "no_data_format", "acc[0].d")


def test_scale_factor_multiplies_for_processing():
    req = parse({"sn": "X", "df": 7, "hd": [{"2": 12}]})
    assert req.historical_data[0]["energy"] == 12
    assert req.scaled(req.historical_data[0])["energy"] == 1200


@pytest.mark.parametrize(
    "index, good, bad",
    [
        (1, [True, False, 0, 1], ["yes", 2, 1.0]),  # bool
        (2, ["1.14.2", ""], [1.14, True]),  # text
        (3, [[36.8, -1.28], [-180, 90]], [[200, 0], [1], "36,-1", [True, 1]]),  # gps [lon, lat]
    ],
)
def test_declared_variable_types(index, good, bad):
    for value in good:
        d = [None] * index + [value]
        parse({"sn": "X", "df": 7, "d": d})
    for value in bad:
        refused({"sn": "X", "df": 7, "d": [None] * index + [value]}, "type_mismatch", f"d.{FMT.data_order[index]}")


def test_integer_and_float_types():
    parse({"sn": "X", "df": 7, "hd": [[1, 2, 3]]})
    refused({"sn": "X", "df": 7, "hd": [[1, 2, 3.5]]}, "type_mismatch", "hd[0].energy")
    refused({"sn": "X", "df": 7, "hd": [["17.5"]]}, "type_mismatch", "hd[0].panel_voltage")
    refused({"sn": "X", "d": {"tc": -1}}, "type_mismatch")
    refused({"sn": "X", "d": {"autsr": "yes"}}, "type_mismatch")


def test_the_compiled_checks_refuse_exactly_what_the_declared_types_do():
    """Rows are checked by each format's compiled checks (one look-up per value), and only a
    failing value goes through the declared-type checks for its refusal: the two must agree."""
    from bench.openpaygo.metrics.rows import _refuse_types

    fmt = parse_data_format(
        {
            "data_order": ["token_count", "active_seconds_left_requested", "timestamp"],
            "variables": {"token_count": {"name": "tc", "type": "float"}, "timestamp": {"name": "t", "type": "text"}},
        }
    )
    pool = [0, 1, 2, -1, 1.5, -0.0, True, False, "x", "", [1, 2], [200, 0], {}, 10**30, float("inf")]
    for f in (FMT, fmt):
        names = [*f.variables, "token_count", "active_until_timestamp_requested", "active_seconds_left_requested"]
        for name in [*names, "timestamp", "undeclared"]:
            for value in pool:
                ok = f.row_checks.get(name, lambda _v: True)(value)
                try:
                    _refuse_types({name: value}, f, "d")
                    refuses = False
                except MetricsError:
                    refuses = True
                assert ok != refuses, (name, value)


def test_variable_type_object_fields():
    vt = parse_data_format(
        {
            "variables": {
                "p": {
                    "name": "Power Used",
                    "type": "float",
                    "unit": "Wh",
                    "description": "d",
                    "scale_factor": 100,
                    "aggregation_method": "sum",
                }
            }
        }
    ).variables["p"]
    assert vt == VariableType("Power Used", "float", "Wh", "d", 100, "sum")
    for bad, code in [
        ({"type": "float"}, "missing_field"),
        ({"name": "n", "type": "date"}, "bad_value"),
        ({"name": "n", "aggregation_method": "median"}, "bad_value"),
        ({"name": "n", "scale_factor": "x"}, "wrong_type"),
        ({"name": "n", "colour": 1}, "unknown_field"),
    ]:
        with pytest.raises(MetricsError) as info:
            parse_data_format({"variables": {"p": bad}})
        assert info.value.code == code


def test_index_keyed_orders_are_positions():
    fmt = parse_data_format({"data_order": {"1": "token_count", "2": "firmware_version"}})
    assert fmt.data_order == (None, "token_count", "firmware_version")
    req = parse({"sn": "X", "dfo": {"data_order": {"1": "token_count"}}, "d": [None, 4]})
    assert req.token_count == 4
    refused({"sn": "X", "dfo": {"data_order": {"1": "token_count"}}, "d": [3]}, "bad_index", "d[0]")


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, code, where",
    [
        ({"sn": "X", "df": 7, "dfo": {}, "d": {"a": "1"}}, "both_data_formats", "dfo"),
        ({"sn": "X"}, "no_data", "$"),
        ({"sn": "X", "d": {}, "hd": []}, "no_data", "$"),
        ({"sn": "X", "d": [1]}, "no_data_format", "d"),
        ({"sn": "X", "hd": [[1]]}, "no_data_format", "hd[0]"),
        ({"sn": "X", "hd": [{"0": 1}]}, "no_data_format", "hd[0].0"),
        ({"sn": "X", "d": {"7": 1}}, "no_data_format", "d.7"),
        ({"sn": "X", "df": 7, "d": [1, 2, 3, 4, 5]}, "bad_index", "d[4]"),
        ({"sn": "X", "df": 7, "hd": [{"9": 1}]}, "bad_index", "hd[0].9"),
        ({"sn": "X", "d": {"-1": 1}}, "integer_name", "d.-1"),
        ({"sn": "X", "d": {"07": 1}}, "integer_name", "d.07"),
        ({"sn": "X", "dfo": {"data_order": ["a", "12"]}, "d": [1]}, "integer_name", "dfo.data_order[1]"),
        ({"sn": "X", "dfo": {"variables": {"3": {"name": "n"}}}, "d": {"a": "1"}}, "integer_name", "dfo.variables.3"),
        ({"sn": "X", "dfo": {"data_order": ["a", "a"]}, "d": [1]}, "duplicate_variable", "dfo.data_order[1]"),
        ({"sn": "X", "df": 7, "d": {"0": 1, "tc": 2}}, "duplicate_variable", "d.tc"),
        ({"sn": 12, "d": {"a": "1"}}, "wrong_type", "sn"),
        ({"sn": "", "d": {"a": "1"}}, "bad_value", "sn"),
        ({"d": {"a": "1"}}, "missing_field", "sn"),
        ({"sn": "X", "ts": True, "d": {"a": "1"}}, "wrong_type", "ts"),
        ({"sn": "X", "ts": -5, "d": {"a": "1"}}, "bad_value", "ts"),
        ({"sn": "X", "ts": "yesterday", "d": {"a": "1"}}, "bad_value", "ts"),
        ({"sn": "X", "rc": 1.5, "d": {"a": "1"}}, "wrong_type", "rc"),
        ({"sn": "X", "rc": -1, "d": {"a": "1"}}, "wrong_type", "rc"),
        ({"sn": "X", "a": 5, "d": {"a": "1"}}, "wrong_type", "a"),
        ({"sn": "X", "df": "7", "d": {"a": "1"}}, "wrong_type", "df"),
        ({"sn": "X", "df": 99, "d": {"a": "1"}}, "unknown_data_format", "df"),
        ({"sn": "X", "d": "hello"}, "wrong_type", "d"),
        ({"sn": "X", "hd": {"a": 1}}, "wrong_type", "hd"),
        ({"sn": "X", "hd": [5]}, "wrong_type", "hd[0]"),
        ({"sn": "X", "hd": [{"v": 1}]}, "no_time", "hd[0]"),
        ({"sn": "X", "hd": [{"relative_time": "1", "v": 1}]}, "wrong_type", "hd[0].relative_time"),
        ({"sn": "X", "d": {"a": "1"}, "acc": {"sn": "Y"}}, "wrong_type", "acc"),
        ({"sn": "X", "d": {"a": "1"}, "token_count": 3}, "unknown_field", "token_count"),
        ([1, 2], "not_an_object", "$"),
    ],
)
def test_refusals_name_the_field(value, code, where):
    refused(value, code, where)


def test_absurd_accessory_nesting_is_refused():
    req: dict = {"sn": "L0", "d": {"a": "1"}}
    for i in range(1, 7):
        req = {"sn": f"L{i}", "d": {"a": "1"}, "acc": [req]}
    refused(req, "too_deep")


def test_openpaygo_empty_historical_data_object_is_tolerated():
    assert parse({"serial_number": "X", "data": {"a": "1"}, "historical_data": {}}).historical_data == ()


# -- bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header, enc",
    [
        ("application/json", Encoding.JSON),
        ("json", Encoding.JSON),
        ("Application/JSON; charset=utf-8", Encoding.JSON),
        ("application/cbor", Encoding.CBOR),
        ("cbor", Encoding.CBOR),
    ],
)
def test_content_types(header, enc):
    assert encoding_of(header) is enc


@pytest.mark.parametrize(
    "header", [None, "", "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"]
)
def test_unsupported_content_types(header):
    with pytest.raises(MetricsError) as info:
        encoding_of(header)
    assert info.value.status == 415


def body_error(body: bytes, ctype: str = "application/json") -> MetricsError:
    with pytest.raises(MetricsError) as info:
        parse_body(body, ctype, formats=formats, received_at=NOW)
    return info.value


def test_malformed_bodies():
    assert body_error(b"").code == "bad_json"
    assert body_error(b'{"sn":"X",}').where == "line 1 column 11"
    assert body_error(b'{"sn":"X","sn":"Y","d":{"a":1}}').code == "bad_json"
    assert body_error(b'{"sn":"X","d":{"v":NaN}}').code == "bad_json"
    assert body_error(b'{"sn":"X","d":{"v":1e999}}').code == "bad_json"
    assert body_error(b"\xff\xfe").code == "bad_json"
    assert body_error(b"[" * 100000 + b"]" * 100000).code == "too_deep"
    assert body_error(b'{"sn":"X","d":' + b'{"a":' * 40 + b"1" + b"}" * 41).code == "too_deep"
    assert body_error(b"\x81" * 100000 + b"\x01", "cbor").code == "too_deep"
    assert body_error(cbor2.dumps({"sn": "X"}) + b"\x00", "cbor").code == "bad_cbor"
    assert body_error(cbor2.dumps({"sn": "X", "d": {"t": cbor2.CBORTag(1, 5)}}), "cbor").code == "bad_cbor"
    assert body_error(cbor2.dumps({"sn": "X", "d": {"b": b"bytes"}}), "cbor").code == "bad_cbor"
    assert body_error(b"\xa1\x61a", "cbor").code == "bad_cbor"  # truncated


def test_oversize_bodies_are_413():
    big = b'{"sn":"X","d":{"blob":"' + b"x" * (4096 * 1024) + b'"}}'
    err = body_error(big)
    assert (err.status, err.code) == (413, "too_large")


def test_cbor_and_json_give_the_same_request_and_cbor_may_use_integer_index_keys():
    value = {"sn": "X", "ts": NOW, "df": 7, "d": [3, True], "hd": [{"0": 1.5}, [2.5]]}
    j = parse_body(json.dumps(value).encode(), "json", formats=formats, received_at=NOW)
    c = parse_body(cbor2.dumps(value), "cbor", formats=formats, received_at=NOW)
    cint = parse_body(cbor2.dumps({**value, "hd": [{0: 1.5}, [2.5]]}), "cbor", formats=formats, received_at=NOW)
    assert j.to_simple() == c.to_simple() == cint.to_simple()


# -- condensing and building -----------------------------------------------------------------


def test_condense_row_picks_the_shorter_form():
    order = ("a", "b", "c", "d", "e", "f", "overload")
    assert condense_row({"a": 1, "b": 2}, order) == [1, 2]
    assert condense_row({"overload": 1}, order) == {"6": 1}
    assert condense_row({"a": 1, "token_count": 3}, order) == {"0": 1, "tc": 3}


@pytest.mark.parametrize("condensed", [True, False])
@pytest.mark.parametrize("encoding", [Encoding.JSON, Encoding.CBOR])
def test_built_requests_parse_back(condensed, encoding):
    data = {"token_count": 5, "tampered": False, "position": [36.8, -1.3]}
    rows = [{"panel_voltage": 17.5, "energy": 3}, {"overload_alert": True}, {"timestamp": 5000, "energy": 1}]
    built = build_request(
        "SN1",
        data=data,
        historical_data=rows,
        timestamp=NOW,
        request_count=9,
        data_format=FMT,
        condensed=condensed,
        encoding=encoding,
    )
    assert built.content_type == f"application/{encoding.value}"
    req = parse_body(built.body, built.content_type, formats=formats, received_at=NOW + 5)
    assert req.data == data and req.request_count == 9 and req.condensed_keys == condensed
    if condensed:
        assert built.payload["hd"] == [[17.5, None, 3], {"3": True}, {"4": 5000, "2": 1}]
    else:
        rows = [{**rows[0], "timestamp": NOW}, {**rows[1], "timestamp": NOW + 60}, rows[2]]
        built = build_request(
            "SN1",
            data=data,
            historical_data=rows,
            timestamp=NOW,
            request_count=9,
            data_format=FMT,
            condensed=False,
            encoding=encoding,
        )
        req = parse_body(built.body, built.content_type, formats=formats, received_at=NOW + 5)
    assert [r["timestamp"] for r in req.historical_data] == [NOW, NOW + 60, 5000]


def test_a_simple_request_without_a_format_keeps_names():
    built = build_request("SN1", data={"token_count": 2, "x": "y"}, condensed=True)
    assert built.payload == {"sn": "SN1", "d": {"tc": 2, "x": "y"}}


def test_openpaygo_reads_our_condensed_requests_the_same_way():
    fmt = {
        "id": 7,
        "data_order": list(FMT.data_order),
        "historical_data_order": list(FMT.historical_data_order),
        "historical_data_interval": 60,
    }
    built = build_request(
        "SN1",
        data={"token_count": 5, "firmware_version": "2"},
        timestamp=NOW,
        historical_data=[{"panel_voltage": 1.5}, {"panel_voltage": 2.5}],
        data_format=FMT,
    )
    lib = MetricsResponseHandler(built.body.decode(), data_format=fmt).get_simple_metrics()
    ours = parse_body(built.body, built.content_type, formats=formats, received_at=NOW).to_simple()
    assert {k: v for k, v in lib["data"].items() if v is not None} == ours["data"]
    assert lib["historical_data"] == ours["historical_data"]


def test_openpaygo_requests_parse():
    fmt = {
        "id": 7,
        "data_order": ["token_count", "tampered"],
        "historical_data_order": ["panel_voltage"],
        "historical_data_interval": 60,
    }
    h = MetricsRequestHandler("SN1", data_format=fmt)
    h.set_timestamp(NOW)
    h.set_data({"token_count": 2, "tampered": False})
    h.set_historical_data([{"panel_voltage": 1.0}, {"panel_voltage": 2.0}])
    for payload in (h.get_simple_request_payload(), h.get_condensed_request_payload()):
        req = parse_body(payload.encode(), "json", formats=formats, received_at=NOW)
        assert req.token_count == 2 and [r["panel_voltage"] for r in req.historical_data] == [1.0, 2.0]


_names = st.sampled_from(["v1", "v2", "v3", "temp", "alarm"])
_values = st.one_of(
    st.integers(-(10**6), 10**6), st.floats(-1e6, 1e6, allow_nan=False), st.text(max_size=5), st.booleans()
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    order=st.lists(_names, min_size=1, max_size=5, unique=True),
    interval=st.one_of(st.none(), st.integers(-3600, 3600)),
    rows=st.lists(st.dictionaries(_names, _values, min_size=1, max_size=4), max_size=6),
    times=st.lists(st.one_of(st.none(), st.integers(0, 2**31)), min_size=6, max_size=6),
    encoding=st.sampled_from(list(Encoding)),
)
def test_expand_condense_round_trip(order, interval, rows, times, encoding):
    fmt = DataFormat(tuple(order), tuple(order), interval, {}, 3)
    timed = []
    for r, t in zip(rows, times):
        if t is None and interval is None:
            t = 1  # without an interval every row must carry its time
        timed.append(dict(r, timestamp=t) if t is not None else dict(r))
    rows = timed
    look = {3: fmt}.get
    built = build_request(
        "SN", data={"token_count": 1}, historical_data=rows, timestamp=NOW, data_format=fmt, encoding=encoding
    )
    first = parse_body(built.body, built.content_type, formats=look, received_at=NOW)
    again = json.dumps(to_condensed(first)).encode()
    second = parse_body(again, "json", formats=look, received_at=NOW)
    assert first.to_simple() == second.to_simple()
    assert len(first.historical_data) == len(rows)
