"""Every example payload of both spec versions (tests/selftest/data/metrics/, provenance in its
README) through the real server: accepted or refused as the spec's text implies, and the
simple and condensed examples round-trip to the same data."""

from __future__ import annotations

import json
from pathlib import Path

import cbor2
import pytest

from bench.openpaygo.metrics.format import parse_data_format, parse_variable
from bench.openpaygo.metrics.reply import parse_reply
from bench.secret import Secret
from bench.server.config import MetricsServerConfig
from bench.server.devices import Device

DATA = Path(__file__).parent / "data" / "metrics"
VERSIONS = ["v1.0", "v0.11"]
T = 1611583070  # the examples' request time


def example(version: str, name: str) -> bytes:
    return (DATA / version / name).read_bytes()


def without_trailing_commas(body: bytes) -> bytes:
    import re

    return re.sub(rb",(\s*[\]}])", rb"\1", body)


@pytest.fixture
def server(start_metrics_server):
    """Open policy (the examples are unsigned) with the examples' format registered as id 12."""
    handle = start_metrics_server(MetricsServerConfig(auth="none"), devices=[])
    handle.store.add_data_format(parse_data_format(json.loads(example("v1.0", "data_format_register.json"))), id=12)
    return handle


def stored(server) -> dict:
    row = server.requests()[-1]
    assert row.verdict == "accepted", (row.error_code, row.error_message, row.error_where)
    return row.simple


@pytest.mark.parametrize("version", VERSIONS)
def test_registering_the_example_format_answers_201_with_its_id(server, version):
    answer = server.post("/data_format", example(version, "data_format_register.json"))
    assert answer.status == 201  # the text says "a code 200"; the route section says 201
    assert json.loads(answer.body) == {"id": 12} and set(json.loads(example(version, "data_format_reply.json"))) == {
        "id"
    }


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("encoding", ["json", "cbor"])
def test_the_simple_example_is_stored_as_sent(server, version, encoding):
    body = example(version, "simple_request.json")
    value = json.loads(body)
    answer = server.post("/dd", body if encoding == "json" else cbor2.dumps(value), encoding)
    assert answer.status == 201  # token_count was sent: the reply is a (here empty) token list
    reply = json.loads(answer.body) if encoding == "json" else cbor2.loads(answer.body)
    assert reply == {"serial_number": "A111222", "token_list": []}
    simple = stored(server)
    assert simple["data"] == value["data"] and simple["historical_data"] == value["historical_data"]
    assert simple["data_format"]["variables"] == value["data_format"]["variables"]
    got = json.loads(server.get("/dd", {"from_datetime": "2021-01-25T13:56:50Z"}).body)
    assert got[-1]["historical_data"] == value["historical_data"]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_condensed_example_expands_to_the_simple_one(server, version):
    condensed = json.loads(example(version, "condensed_request.json"))
    simple = json.loads(example(version, "simple_request.json"))
    # the condensed example leaves ts out ("using the timestamp of the request itself"): give it
    # the simple example's, and its rows land on the simple example's times (interval -60)
    assert server.post("/dd", json.dumps({**condensed, "ts": T}).encode()).status == 201
    got = stored(server)
    assert got["historical_data"] == simple["historical_data"]
    # tampered: the condensed example sends 0 where the simple one has false (no type declared)
    assert got["data"] == {**simple["data"], "tampered": 0}
    assert server.post("/dd", example(version, "condensed_request.json")).status == 201  # no ts: reception time
    rows = stored(server)["historical_data"]
    assert rows[0]["timestamp"] - rows[1]["timestamp"] == 60


def test_the_v1_request_object_example_is_refused_verbatim_and_accepted_fixed(server):
    body = example("v1.0", "request_object_example.json")
    answer = server.post("/dd", body)
    assert answer.status == 400
    assert json.loads(answer.body)["error"] == "bad_json" and json.loads(answer.body)["where"] == "line 10 column 4"
    assert server.post("/dd", without_trailing_commas(body)).status == 201
    rows = stored(server)["historical_data"]
    assert rows[2] == {"timestamp": 1611583055, "overload_alert": 1}  # {"7":...,"6":1}: index keys
    assert rows[3]["timestamp"] == 1611583055 - 60 and rows[3]["usb_load_1_current"] == 0.8  # base reset


@pytest.mark.parametrize("version", VERSIONS)
def test_the_data_format_object_example_with_relative_time(server, version):
    body = example(version, "data_format_object.json")
    assert server.post("/data_format", body).status == 400  # trailing comma as published
    answer = server.post("/data_format", without_trailing_commas(body))
    fid = json.loads(answer.body)["id"]
    request = {"sn": "A111222", "ts": T + 100, "df": fid, "hd": [[17.5, 12.5, 2.2, 3.2, 0, 0, 0, -30], [15.7]]}
    assert server.post("/dd", json.dumps(request).encode()).status == 201
    assert [r["timestamp"] for r in stored(server)["historical_data"]] == [T + 70, T + 10]


@pytest.mark.parametrize("version", VERSIONS)
def test_device_data_objects_and_arrays(server, version):
    sent = []

    def rows(*fragments: str) -> list[dict]:
        hd = [json.loads(example(version, f)) for f in fragments]
        sent.append(len(sent))
        body = {"sn": f"A111222-{len(sent)}", "ts": T, "df": 12, "hd": hd}  # one device each: same ts
        assert server.post("/dd", json.dumps(body).encode()).status == 201
        return stored(server)["historical_data"]

    named, indexed = rows("device_data_object.json", "device_data_object_indexed.json")
    assert named == indexed
    full, short = rows("device_data_array.json", "device_data_array_short.json")
    assert full["timestamp"] == 1611583070 and full["usb_load_2_current"] == 0
    assert short["timestamp"] == 1611583070 - 60  # "the timestamp that is not needed"
    (sparse,) = rows("device_data_object_sparse.json")
    assert sparse["overload_alert"] == 1


def test_the_v0_11_iso_timestamp(server):
    assert server.post("/dd", example("v0.11", "iso_timestamp_request.json")).status == 201
    got = stored(server)
    assert got["timestamp"] == 1530403139  # 2018-06-30T23:58:59Z
    assert got["historical_data"][1]["timestamp"] == 1530403139 - 60


def test_the_variable_type_example():
    vt = parse_variable(json.loads(example("v1.0", "variable_type.json")), "variables.power_used")
    assert (vt.type, vt.unit, vt.aggregation_method, vt.scaled(12)) == ("float", "Wh", "sum", 1200)


@pytest.mark.parametrize(
    "version, name",
    [
        ("v1.0", "reply_tokens.json"),
        ("v1.0", "reply_timestamp.json"),
        ("v1.0", "reply_seconds_left.json"),
        ("v1.0", "reply_settings.json"),
        ("v1.0", "reply_extra_data.json"),
        ("v0.11", "reply_tokens.json"),
        ("v0.11", "reply_timestamp.json"),
    ],
)
def test_reply_examples_parse(version, name):
    reply = parse_reply(json.loads(example(version, name)))
    assert reply is not None and reply.has_content()
    assert all(isinstance(t, int) for t in reply.token_list or ())


def test_the_signed_round_trip_request_of_the_reference(start_metrics_server):
    """docs/metrics.md "Reference vectors": this exact body verifies with all 5 methods; a replay is
    refused."""
    key = Secret("dac86b1a29ab82edc5fbbc41ec9530f6")
    handle = start_metrics_server(devices=[Device("A111222", key, 123456789)])
    handle.store.add_data_format(parse_data_format(json.loads(example("v1.0", "data_format_register.json"))), id=12)
    body = (
        b'{"sn":"A111222","df":12,"ts":1611583070,"rc":5,"d":[13,false,"1.14.2"],'
        b'"hd":[[17.5,12.5,2.2,3.2],[15.7,12.6,2.2,3.2,0.7]],"a":"ra2e37b33141627b39"}'
    )
    answer = handle.post("/dd", body)
    assert answer.status == 201
    assert json.loads(answer.body)["sn"] == "A111222" and "tkl" in json.loads(answer.body)
    assert handle.post("/dd", body).status == 409
