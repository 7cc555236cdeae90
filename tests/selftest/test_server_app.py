"""The Metrics server over real HTTP on loopback with a real SQLite file: routes, encodings,
payload auth with every method, replay, tokens, replies, errors, storage and secrecy."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta

import cbor2
import openpaygo
import pytest
from openpaygo import MetricsRequestHandler, TokenType

from bench.openpaygo.metrics.condense import build_request
from bench.openpaygo.metrics.errors import CODES
from bench.openpaygo.metrics.format import parse_data_format
from bench.openpaygo.metrics.reply import decode_reply
from bench.openpaygo.metrics.wire import Encoding
from bench.server.config import MetricsServerConfig
from bench.server.devices import Device

FMT = {
    "data_order": ["token_count", "tampered", "firmware_version"],
    "historical_data_order": ["panel_voltage", "battery_voltage"],
    "historical_data_interval": -60,
}


@pytest.fixture
def dut(metrics_server) -> Device:
    (serial,) = metrics_server.registry.serials()
    return metrics_server.registry.get(serial)


def register(server, fmt=FMT) -> int:
    answer = server.post("/data_format", json.dumps(fmt).encode())
    assert answer.status == 201, answer.body
    return json.loads(answer.body)["id"]


def signed(dut, method="ra", **kw):
    kw.setdefault("data", {"token_count": 1})
    kw.setdefault("timestamp", int(time.time()))
    return build_request(dut.serial_number, auth_method=method, key=dut.key, **kw)


def error_of(answer) -> str:
    body = json.loads(answer.body)
    assert set(body) == {"error", "message", "where"}, body
    assert CODES[body["error"]][0] == answer.status
    return body["error"]


def test_device_data_201_empty_object_and_the_row_is_stored(metrics_server, dut):
    built = signed(dut, data={"firmware": "1.0"})
    answer = metrics_server.post("/dd", built.body, built.content_type)
    assert (answer.status, answer.body, answer.content_type) == (201, b"{}", "application/json")
    (row,) = metrics_server.requests()
    assert (row.status, row.verdict, row.serial_number, row.auth, row.body) == (
        201,
        "accepted",
        dut.serial_number,
        "ra",
        built.body,
    )
    assert row.simple["data"] == {"firmware": "1.0"} and row.reply == b"{}"
    assert row.received_at.endswith("Z") and row.remote == "127.0.0.1" and row.route == "/dd"


@pytest.mark.parametrize("route", ["/dd", "/device_data"])
@pytest.mark.parametrize("encoding", [Encoding.JSON, Encoding.CBOR])
def test_both_routes_json_and_cbor_with_a_registered_format(metrics_server, dut, route, encoding):
    fid = register(metrics_server)
    fmt = parse_data_format(FMT).with_id(fid)
    built = signed(
        dut,
        data={"token_count": 1, "firmware_version": "2.0"},
        data_format=fmt,
        encoding=encoding,
        historical_data=[{"panel_voltage": 17.5}, {"battery_voltage": 12.5}],
    )
    answer = metrics_server.post(route, built.body, built.content_type)
    assert answer.status == 201 and answer.content_type == encoding.content_type
    reply = decode_reply(answer.body, answer.content_type, expected_serial=dut.serial_number)
    assert reply.token_list == ()  # token_count sent: tkl always answered, empty without a target
    row = metrics_server.requests()[-1]
    assert [r["timestamp"] for r in row.simple["historical_data"]] == [built.payload["ts"], built.payload["ts"] - 60]


@pytest.mark.parametrize("method", ["sa", "ta", "ca", "da", "ra"])
@pytest.mark.parametrize("simple", [True, False])
def test_openpaygo_requests_are_accepted_with_each_method(metrics_server, dut, method, simple):
    fid = register(metrics_server)
    h = MetricsRequestHandler(
        dut.serial_number, data_format={**FMT, "id": fid}, secret_key=dut.key.reveal(), auth_method=method
    )
    h.set_timestamp(int(time.time()))
    h.set_request_count(7)
    h.set_data({"token_count": 1, "tampered": False, "firmware_version": "1.14.2"})
    h.set_historical_data([{"panel_voltage": 17.5, "battery_voltage": 12.5}, {"panel_voltage": 15.7}])
    payload = h.get_simple_request_payload() if simple else h.get_condensed_request_payload()
    answer = metrics_server.post("/dd", payload.encode())
    assert answer.status == 201, answer.body
    assert metrics_server.requests()[-1].auth == method


def test_a_forged_signature_is_403_and_stored(metrics_server, dut):
    built = signed(dut, "da")
    forged = built.body.replace(b'"tc":1', b'"tc":2')
    answer = metrics_server.post("/dd", forged)
    assert answer.status == 403 and error_of(answer) == "auth_invalid"
    row = metrics_server.requests()[-1]
    assert (row.verdict, row.error_code, row.body, row.simple) == ("rejected", "auth_invalid", forged, None)


@pytest.mark.parametrize(
    "payload, code",
    [
        ({"sn": "SIM000001", "d": {"tc": 1}}, "auth_missing"),
        ({"sn": "NOBODY", "ts": 5, "d": {"tc": 1}, "a": "sa1234"}, "unknown_device"),
        ({"sn": "NOBODY", "d": {"tc": 1}}, "unknown_device"),
    ],
)
def test_payload_policy_refusals(metrics_server, payload, code):
    answer = metrics_server.post("/dd", json.dumps(payload).encode())
    assert answer.status == 403 and error_of(answer) == code


def test_a_signed_request_without_ts_or_rc_is_refused(metrics_server, dut):
    built = build_request(dut.serial_number, data={"x": "1"}, auth_method="sa", key=dut.key)
    answer = metrics_server.post("/dd", built.body)
    assert answer.status == 403 and error_of(answer) == "auth_unprotected"


def test_replays_are_409(metrics_server, dut):
    """Under ra the guard is rc: an equal rc is a replay whatever the ts."""
    ts = int(time.time())
    first = signed(dut, timestamp=ts, request_count=5)
    assert metrics_server.post("/dd", first.body).status == 201
    for again in (
        first,
        signed(dut, timestamp=ts + 1, request_count=5),
        signed(dut, timestamp=ts + 1, request_count=4),
    ):
        answer = metrics_server.post("/dd", again.body)
        assert answer.status == 409 and error_of(answer) == "replay"
    assert metrics_server.post("/dd", signed(dut, timestamp=ts + 1, request_count=6).body).status == 201
    assert [r.status for r in metrics_server.requests()] == [201, 409, 409, 409, 201]


@pytest.mark.parametrize("method", ["ra", "da", "ca", "sa"])
def test_a_same_second_request_with_a_higher_rc_is_accepted(metrics_server, dut, method):
    """rc guards ra, da, ca and sa requests that carry it: a retry in the same second is no replay."""
    ts = int(time.time())
    for rc in (1, 2, 3):
        assert metrics_server.post("/dd", signed(dut, method, timestamp=ts, request_count=rc).body).status == 201
    assert metrics_server.post("/dd", signed(dut, method, timestamp=ts, request_count=3).body).status == 409


def test_ta_is_guarded_by_ts(metrics_server, dut):
    """Timestamp auth signs ts: a same-second request is a replay even with a higher rc, and a
    higher ts is accepted even with a lower rc."""
    ts = int(time.time())
    assert metrics_server.post("/dd", signed(dut, "ta", timestamp=ts, request_count=5).body).status == 201
    answer = metrics_server.post("/dd", signed(dut, "ta", timestamp=ts, request_count=6).body)
    assert answer.status == 409 and error_of(answer) == "replay"
    assert json.loads(answer.body)["where"] == "ts"
    assert metrics_server.post("/dd", signed(dut, "ta", timestamp=ts + 1, request_count=2).body).status == 201


def test_a_ts_going_back_with_a_higher_rc_is_accepted_and_the_highest_are_kept(metrics_server, dut):
    """Under ra a clock that went back (a device whose RTC was lost) is not a replay; the server
    keeps the highest ts and rc it accepted, so a later ta request must still beat the highest ts."""
    ts = int(time.time())
    assert metrics_server.post("/dd", signed(dut, timestamp=ts, request_count=1).body).status == 201
    assert metrics_server.post("/dd", signed(dut, timestamp=ts - 3600, request_count=2).body).status == 201
    state = metrics_server.store.device_state(dut.serial_number)
    assert (state.last_timestamp, state.last_request_count) == (ts, 2)
    assert metrics_server.post("/dd", signed(dut, "ta", timestamp=ts, request_count=3).body).status == 409
    assert metrics_server.post("/dd", signed(dut, "ta", timestamp=ts + 1, request_count=3).body).status == 201


def test_an_unsigned_request_without_rc_is_guarded_by_ts(start_metrics_server):
    handle = start_metrics_server(config=MetricsServerConfig(auth="none"))
    body = json.dumps({"sn": "ANYONE", "ts": 1_700_000_000, "d": {"tc": 1}}).encode()
    assert handle.post("/dd", body).status == 201
    answer = handle.post("/dd", body)
    assert answer.status == 409 and json.loads(answer.body)["where"] == "ts"


def test_replay_state_survives_a_restart(start_metrics_server, tmp_path, rig):
    first = start_metrics_server(db=tmp_path / "same.db")
    dut = first.registry.get(first.registry.serials()[0])
    built = signed(dut, request_count=3)
    assert first.post("/dd", built.body).status == 201
    first.server.stop()
    second = start_metrics_server(db=tmp_path / "same.db")
    assert second.post("/dd", built.body).status == 409


def test_tokens_bring_the_device_to_its_target(metrics_server, dut):
    target = datetime.now(UTC) + timedelta(days=3)
    metrics_server.registry.set_target(dut.serial_number, target)
    count = metrics_server.registry.count(dut.serial_number)
    built = signed(dut, data={"token_count": count}, request_count=1)
    answer = metrics_server.post("/dd", built.body)
    reply = decode_reply(answer.body, answer.content_type, expected_serial=dut.serial_number)
    assert reply.verify(dut.key, request_timestamp=built.payload["ts"], request_count=1)
    (code,) = reply.token_list
    value, kind, new_count, _ = openpaygo.decode_token(
        token=str(code).zfill(9),
        secret_key=dut.key.reveal(),
        count=count,
        used_counts=[count],
        starting_code=dut.starting_code,
        value_divider=dut.time_divider,
    )
    assert (kind, value) == (TokenType.SET_TIME, 3.0)
    assert metrics_server.registry.count(dut.serial_number) == new_count  # advanced and persisted
    # the device entered it: the next report needs no token
    nxt = signed(dut, data={"token_count": new_count}, request_count=2, timestamp=built.payload["ts"] + 1)
    assert decode_reply(metrics_server.post("/dd", nxt.body).body, "json").token_list == ()


def test_auts_and_asl_are_signed_integers(metrics_server, dut):
    target = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    metrics_server.registry.set_target(dut.serial_number, target)
    built = signed(dut, data={"active_until_timestamp_requested": True, "active_seconds_left_requested": 1})
    answer = json.loads(metrics_server.post("/dd", built.body).body)
    assert answer["sn"] == dut.serial_number and answer["auts"] == int(target.timestamp())
    assert isinstance(answer["asl"], int) and 3590 <= answer["asl"] <= 3600
    reply = decode_reply(json.dumps(answer).encode(), "json")
    assert reply.verify(dut.key, request_timestamp=built.payload["ts"])


def test_a_simple_request_gets_a_simple_reply(metrics_server, dut):
    built = signed(dut, data={"active_until_timestamp_requested": True}, condensed=False)
    answer = json.loads(metrics_server.post("/dd", built.body).body)
    assert set(answer) == {"serial_number", "active_until_timestamp", "auth"}


def test_settings_base_url_is_announced_and_signed(start_metrics_server):
    server = start_metrics_server(MetricsServerConfig(announce_base_url="https://new.example/metrics/"))
    dut = server.registry.get(server.registry.serials()[0])
    built = signed(dut, data={"x": "1"}, request_count=4)
    reply = decode_reply(server.post("/dd", built.body).body, "json")
    assert reply.settings == {"base_url": "https://new.example/metrics/"}
    assert reply.verify(dut.key, request_timestamp=built.payload["ts"], request_count=4)


def test_base_url_announced_at_run_time_and_withdrawn(start_metrics_server):
    """A migration while devices report: replies carry st from the moment it is announced."""
    server = start_metrics_server()
    dut = server.registry.get(server.registry.serials()[0])
    t = int(time.time())
    reply = decode_reply(
        server.post("/dd", signed(dut, data={"x": "1"}, request_count=1, timestamp=t).body).body, "json"
    )
    assert reply is None or reply.settings is None
    server.announce_base_url("http://127.0.0.1:1/next")
    built = signed(dut, data={"x": "1"}, request_count=2, timestamp=t + 1)
    reply = decode_reply(server.post("/dd", built.body).body, "json")
    assert reply.settings == {"base_url": "http://127.0.0.1:1/next"}
    assert reply.verify(dut.key, request_timestamp=built.payload["ts"], request_count=2)
    server.announce_base_url(None)
    reply = decode_reply(
        server.post("/dd", signed(dut, data={"x": "1"}, request_count=3, timestamp=t + 2).body).body, "json"
    )
    assert reply is None or reply.settings is None


def test_base_path(start_metrics_server):
    server = start_metrics_server(MetricsServerConfig(base_path="/metrics/v1/"))
    dut = server.registry.get(server.registry.serials()[0])
    assert server.url.endswith("/metrics/v1")
    assert server.post("/dd", signed(dut).body).status == 201
    from bench.fixtures.metrics_server import http_request

    answer = http_request(server.server.url + "/dd", "POST", signed(dut).body, {"Content-Type": "json"})
    assert answer.status == 404 and error_of(answer) == "not_found"


def test_unknown_routes_and_methods_are_json_and_stored(metrics_server):
    for answer, code in (
        (metrics_server.post("/nope", b"{}"), "not_found"),
        (metrics_server.post("/", b"{}"), "not_found"),
        (metrics_server.get("/data_format"), "method_not_allowed"),
    ):
        assert error_of(answer) == code
    assert [r.error_code for r in metrics_server.requests()] == ["not_found", "not_found", "method_not_allowed"]


@pytest.mark.parametrize(
    "body, ctype, status, code",
    [
        (b'{"sn":', "application/json", 400, "bad_json"),
        (b"\xa1\x62sn", "application/cbor", 400, "bad_cbor"),
        (b"{}", "text/plain", 415, "unsupported_media_type"),
        (b"{}", None, 415, "unsupported_media_type"),
        (b'{"sn":"SIM000001","df":1,"dfo":{},"d":[1]}', "json", 422, "both_data_formats"),
        (b'{"sn":"SIM000001"}', "json", 422, "no_data"),
        (b'{"sn":"SIM000001","d":[1]}', "json", 422, "no_data_format"),
        (b'{"sn":"SIM000001","df":404,"d":[1]}', "json", 422, "unknown_data_format"),
        (b"[1]", "json", 422, "not_an_object"),
    ],
)
def test_malformed_requests(metrics_server, body, ctype, status, code):
    answer = metrics_server.post("/dd", body, ctype)
    assert (answer.status, error_of(answer)) == (status, code)
    assert metrics_server.requests()[-1].error_code == code


def test_data_format_registration(metrics_server):
    first = register(metrics_server)
    assert register(metrics_server) == first  # the same format keeps its id
    other = register(metrics_server, {"data_order": ["a"]})
    assert other != first
    cbor = metrics_server.post("/data_format", cbor2.dumps({"data_order": ["b"]}), "cbor")
    assert cbor.status == 201 and cbor2.loads(cbor.body)["id"] not in (first, other)
    bad = metrics_server.post("/data_format", b'{"data_order":["1"]}')
    assert bad.status == 422 and error_of(bad) == "integer_name"


def test_get_device_data_by_time_range_in_the_simple_format(metrics_server, dut):
    fid = register(metrics_server)
    fmt = parse_data_format(FMT).with_id(fid)
    t0 = 1_700_000_000
    rows = [{"panel_voltage": float(i)} for i in range(5)]
    built = signed(dut, data={"token_count": 1}, timestamp=t0, data_format=fmt, historical_data=rows)
    assert metrics_server.post("/dd", built.body).status == 201
    answer = metrics_server.get(
        "/device_data", {"from_datetime": "2023-11-14T22:11:00Z", "to_datetime": "2023-11-14T22:12:00Z"}
    )
    assert answer.status == 200
    (obj,) = json.loads(answer.body)
    assert obj["serial_number"] == dut.serial_number and "data" not in obj  # t0 = 22:13:20
    assert obj["historical_data"] == [{"panel_voltage": 2.0, "timestamp": t0 - 120}]  # rows 60 s apart, newest first
    whole = json.loads(metrics_server.get("/dd", {"from_datetime": "2023-11-14T22:13:20Z"}).body)
    assert whole[0]["data"] == {"token_count": 1}
    assert json.loads(metrics_server.get("/dd", {"to_datetime": "2000-01-01T00:00:00"}).body) == []
    bad = metrics_server.get("/dd", {"from_datetime": "last tuesday"})
    assert bad.status == 400 and error_of(bad) == "bad_query"


def test_policy_none_accepts_unknown_devices_and_still_stores(start_metrics_server):
    server = start_metrics_server(MetricsServerConfig(auth="none"))
    answer = server.post("/dd", b'{"sn":"STRANGER","d":{"tc":4,"aslr":1}}')
    assert answer.status == 201
    assert json.loads(answer.body) == {"sn": "STRANGER", "tkl": [], "asl": 0}
    assert server.requests()[-1].auth == "none"


def test_secrets_never_reach_rows_logs_or_replies(start_metrics_server, caplog, tmp_path):
    jwt_secret = "j" * 40
    from bench.secret import Secret

    server = start_metrics_server(
        MetricsServerConfig(auth="either", jwt_secret=Secret(jwt_secret)), db=tmp_path / "secret.db"
    )
    dut = server.registry.get(server.registry.serials()[0])
    caplog.set_level(logging.DEBUG)
    bodies = [
        server.post("/dd", signed(dut).body).body,
        server.post("/dd", signed(dut, "da").body.replace(b"tc", b"TC")).body,
        server.post("/dd", b'{"sn":"X","d":{"a":1}}', headers={"Authorization": "JWT abc.def.ghi"}).body,
        server.post("/dd", b"\x00garbage").body,
    ]
    server.server.stop()
    server.store.close()
    blob = (tmp_path / "secret.db").read_bytes() + b"".join(bodies) + caplog.text.encode()
    for wal in tmp_path.glob("secret.db*"):
        blob += wal.read_bytes()
    for secret in (dut.key.reveal(), jwt_secret):
        assert secret.encode() not in blob and secret.upper().encode() not in blob


def test_an_unexpected_exception_is_logged_masked_stored_and_answered_400(metrics_server, dut, caplog, monkeypatch):
    def explode(_id):
        raise RuntimeError(f"disk on fire near key {dut.key.reveal()}")

    monkeypatch.setattr(metrics_server.store, "data_format", explode)
    caplog.set_level(logging.ERROR, logger="bench.server")
    answer = metrics_server.post("/dd", b'{"sn":"SIM000001","df":1,"d":[1]}')
    assert answer.status == 400 and error_of(answer) == "bad_request"
    assert b"Traceback" not in answer.body and b"fire" not in answer.body
    assert "RuntimeError" in caplog.text and dut.key.reveal() not in caplog.text and "***" in caplog.text
    assert metrics_server.requests()[-1].error_code == "bad_request"


def test_a_request_that_cannot_be_stored_is_not_answered_201(metrics_server, monkeypatch):
    def broken(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(metrics_server.store, "transaction", broken)
    monkeypatch.setattr(metrics_server.store, "record", broken)
    answer = metrics_server.post("/dd", b'{"sn":"X","d":{"a":"1"}}')
    assert answer.status == 503 and error_of(answer) == "storage_unavailable"
