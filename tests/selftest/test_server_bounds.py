"""A faulty device must never freeze or fill the bench: whatever count or number a request
carries, the Metrics server answers it at once, keeps serving everyone else, and refuses what it
cannot hold with a 4xx naming the field (docs/server.md "The reply" and "Status codes")."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import openpaygo
import pytest
from openpaygo import TokenType

from bench.openpaygo.metrics.condense import build_request
from bench.openpaygo.metrics.errors import CODES
from bench.openpaygo.metrics.reply import decode_reply
from bench.secret import Secret
from bench.server.activation import MAX_AHEAD, plan_tokens
from bench.server.config import MetricsServerConfig
from bench.server.devices import Device
from bench.server.store import DeviceState

NOT_STUCK_S = 2.0  # a 2**20 count held the server ~20 s, 2**64 for ever; now a few ms
NOW = 1_800_000_000.0
DEV = Device("TEST220000001", Secret("bc41ec9530f6dac86b1a29ab82edc5fb"), 516959010, count=1)


def _device(server):
    return server.registry.get(server.registry.serials()[0])


def _body(server, auth: str, data: dict, rc: int) -> bytes:
    """A device-data body from the server's DUT: signed `ra` under payload auth, plain otherwise."""
    dut = _device(server)
    if auth == "none":
        return json.dumps({"sn": dut.serial_number, "rc": rc, "d": data}).encode()
    return build_request(
        dut.serial_number, auth_method="ra", key=dut.key, data=data, request_count=rc, timestamp=int(time.time())
    ).body


def _timed(call):
    t0 = time.monotonic()
    answer = call()
    return answer, time.monotonic() - t0


def _token_values(server, codes, count: int) -> list[tuple]:
    dut = _device(server)
    out = []
    for code in codes:
        value, kind, count, _ = openpaygo.decode_token(
            token=str(code).zfill(9),
            secret_key=dut.key.reveal(),
            count=count,
            used_counts=[count],
            starting_code=dut.starting_code,
            value_divider=dut.time_divider,
        )
        out.append((kind, value))
    return out


@pytest.mark.parametrize("auth", ["payload", "none"])
@pytest.mark.parametrize("reported", [2**20, 2**64])
def test_a_huge_token_count_is_answered_at_once_and_holds_no_one(start_metrics_server, auth, reported):
    server = start_metrics_server(MetricsServerConfig(auth=auth))
    dut = _device(server)
    server.registry.set_target(dut.serial_number, datetime.now(UTC) + timedelta(days=3))
    before = server.registry.state(dut.serial_number)
    body = _body(server, auth, {"token_count": reported}, rc=1)
    posted: list = []
    post = threading.Thread(target=lambda: posted.append(_timed(lambda: server.post("/dd", body))), daemon=True)
    post.start()
    time.sleep(0.05)  # the POST is in the server: a GET must not wait for it
    got, get_s = _timed(lambda: server.get("/dd"))
    post.join(timeout=15)
    assert got.status == 200 and get_s < NOT_STUCK_S, f"a GET waited {get_s:.1f} s behind the token request"
    assert posted, "the token request got no answer"
    (answer, post_s) = posted[0]
    assert answer.status == 201 and post_s < NOT_STUCK_S, (answer.status, post_s)
    reply = decode_reply(answer.body, answer.content_type, expected_serial=dut.serial_number)
    assert reply.token_list == ()  # no token takes a device from the server's count to there
    # the device's state is intact: same count, same target; the report is stored as sent
    after = server.registry.state(dut.serial_number)
    assert (after.token_count, after.target_until, after.last_tokens) == (
        before.token_count,
        before.target_until,
        before.last_tokens,
    )
    (row,) = [r for r in server.requests() if r.kind == "device_data"]
    assert row.status == 201 and row.simple["data"]["token_count"] == reported
    # and a device reporting its real count still gets its tokens
    honest = _body(server, auth, {"token_count": before.token_count}, rc=2)
    codes = json.loads(server.post("/dd", honest).body)["tkl"]
    assert _token_values(server, codes, before.token_count) == [(TokenType.SET_TIME, 3.0)]


def test_a_count_beyond_the_windows_is_logged_with_why(start_metrics_server, caplog):
    server = start_metrics_server(MetricsServerConfig(auth="none"))
    dut = _device(server)
    server.registry.set_target(dut.serial_number, datetime.now(UTC) + timedelta(days=1))
    count = server.registry.count(dut.serial_number)
    with caplog.at_level("WARNING", logger="bench.server"):
        assert server.post("/dd", _body(server, "none", {"token_count": count + MAX_AHEAD + 1}, 1)).status == 201
    assert any(f"token_count {count + MAX_AHEAD + 1}" in r.getMessage() for r in caplog.records), caplog.text


def test_the_window_edge_a_count_modestly_ahead_still_gets_tokens_above_it():
    state = DeviceState(DEV.serial_number, 1, target_until=NOW + 86400)
    edge, planned = plan_tokens(DEV, state, 1 + MAX_AHEAD, NOW)
    assert [t.kind for t in edge] == ["set_time"] and edge[0].count > 1 + MAX_AHEAD
    assert planned.token_count == edge[0].count
    beyond, unchanged = plan_tokens(DEV, state, 2 + MAX_AHEAD, NOW)
    assert (beyond, unchanged) == ([], state)


UNSTORABLE = [
    # (body, the field the answer must name)
    (b'{"sn":"\\ud800","d":{"v":1}}', "sn"),
    (b'{"sn":"X","d":{"\\ud800":1}}', "d.\\ud800"),
    (b'{"sn":"X","d":{"v":"a\\udc00"}}', "d.v"),
    (b'{"sn":"X","ts":1700000000,"hd":[{"v":1,"relative_time":1e300}]}', "hd[0].relative_time"),
    (
        b'{"sn":"X","ts":1700000000,"hd":[{"v":1,"relative_time":0},{"v":2,"relative_time":18446744073709551615}]}',
        "hd[1].relative_time",
    ),
    (b'{"sn":"X","hd":[{"v":1,"relative_time":-1e300}]}', "hd[0].relative_time"),
    (
        b'{"sn":"X","dfo":{"historical_data_order":["v"],"historical_data_interval":1e300},"hd":[[1],[2]]}',
        "hd[1]",
    ),
    (b'{"sn":"X","rc":18446744073709551615,"d":{"v":1}}', "rc"),
    (b'{"sn":"X","request_count":18446744073709551615,"d":{"v":1}}', "request_count"),
    (b'{"sn":"X","df":18446744073709551615,"d":[1]}', "df"),
]


@pytest.mark.parametrize("body, where", UNSTORABLE, ids=[w for _, w in UNSTORABLE])
def test_values_the_store_cannot_hold_are_refused_naming_the_field(start_metrics_server, body, where):
    server = start_metrics_server(MetricsServerConfig(auth="none"))
    answer = server.post("/dd", body)
    assert 400 <= answer.status < 500, (answer.status, answer.body)
    refusal = json.loads(answer.body)
    assert set(refusal) == {"error", "message", "where"} and CODES[refusal["error"]][0] == answer.status
    assert refusal["where"] == where, refusal
    (row,) = server.requests()
    assert (row.status, row.error_where) == (answer.status, where)  # the refusal is stored
    # and the server keeps working
    fine = server.post("/dd", _body(server, "none", {"v": 1}, rc=1))
    assert fine.status == 201 and server.requests()[-1].serial_number == _device(server).serial_number


def test_a_signed_request_count_the_store_cannot_hold_is_refused(metrics_server):
    dut = _device(metrics_server)
    built = build_request(dut.serial_number, auth_method="ra", key=dut.key, data={"v": 1}, request_count=2**64 - 1)
    answer = metrics_server.post("/dd", built.body)
    assert answer.status == 422 and json.loads(answer.body)["where"] == "rc", answer.body
    assert metrics_server.registry.state(dut.serial_number).last_request_count is None  # nothing kept
    ok = metrics_server.post("/dd", _body(metrics_server, "payload", {"v": 1}, rc=1))
    assert ok.status == 201


def test_a_target_moved_while_tokens_are_planned_is_not_lost(metrics_server, monkeypatch):
    """Planning runs outside the store's lock: a change made meanwhile makes the server plan again
    from the new state instead of writing the old plan over it."""
    dut = _device(metrics_server)
    now = datetime.now(UTC)
    metrics_server.registry.set_target(dut.serial_number, now + timedelta(days=1))
    app = metrics_server.app
    plan = app._reply
    moved = []

    def racing_plan(req, state, at):
        if not moved:  # another client moves the target while this request plans its tokens
            moved.append(True)
            metrics_server.registry.set_target(dut.serial_number, now + timedelta(days=5))
        return plan(req, state, at)

    monkeypatch.setattr(app, "_reply", racing_plan)
    count = metrics_server.registry.count(dut.serial_number)
    codes = json.loads(metrics_server.post("/dd", _body(metrics_server, "payload", {"token_count": count}, 1)).body)
    assert _token_values(metrics_server, codes["tkl"], count) == [(TokenType.SET_TIME, 5.0)]
    state = metrics_server.registry.state(dut.serial_number)
    assert state.target_until == state.synced_target == (now + timedelta(days=5)).timestamp()
