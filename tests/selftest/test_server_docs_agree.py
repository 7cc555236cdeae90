"""docs/server.md and the running server agree: the authentication table under every policy
("a credential that is present must be valid"), `POST /data_format` with a non-object, CBOR
tags (refused, every one), and every documented status code provoked over real HTTP with its
JSON `error`."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import cbor2
import pytest

from bench.openpaygo.metrics.condense import build_request
from bench.openpaygo.metrics.errors import CODES, MetricsError
from bench.openpaygo.metrics.wire import decode_cbor
from bench.secret import Secret
from bench.server.config import MetricsServerConfig
from bench.server.jwt_auth import make_jwt

SELFTEST = Path(__file__).resolve().parent
DOC = (SELFTEST.parents[1] / "docs" / "server.md").read_text()
SECRET = Secret("k" * 48 + "-docs-agree-jwt", "jwt")
OTHER_KEY = "0123456789abcdef0123456789abcdef"  # a well-formed key that is not the device's
STRANGER = "NOT-IN-REGISTRY"


def refusal(answer) -> dict:
    """The JSON error body; its status is the one docs/server.md gives the code."""
    body = json.loads(answer.body)
    assert set(body) == {"error", "message", "where"}, body
    assert CODES[body["error"]][0] == answer.status, (answer.status, body)
    return body


def outcome(server, answer) -> str:
    """`auth` of the stored row when accepted (201), else the error code: one word per case."""
    row = server.requests()[-1]
    if answer.status == 201:
        assert row.verdict == "accepted"
        return row.auth
    assert row.error_code == refusal(answer)["error"]
    return refusal(answer)["error"]


# -- authentication: every policy, `a` valid/invalid/unverifiable/malformed/absent ------------


def a_body(kind: str, serial: str, dut_key: Secret, rc: int) -> bytes:
    ts = int(time.time())
    if kind == "absent":
        return build_request(serial, data={"x": "1"}, timestamp=ts, request_count=rc).body
    if kind in ("malformed", "malformed, unknown device"):
        sn = serial if kind == "malformed" else STRANGER
        return json.dumps({"sn": sn, "ts": ts, "rc": rc, "d": {"x": "1"}, "a": "zz0123"}).encode()
    key = {"valid": dut_key, "invalid": OTHER_KEY, "unknown device": OTHER_KEY}[kind]
    sn = STRANGER if kind == "unknown device" else serial
    return build_request(sn, data={"x": "1"}, timestamp=ts, request_count=rc, auth_method="ca", key=key).body


A_KINDS = ("valid", "invalid", "unknown device", "malformed", "malformed, unknown device", "absent")
JWT_HEADERS = {
    "jwt valid": lambda: {"Authorization": f"JWT {make_jwt(SECRET, {'exp': time.time() + 60})}"},
    "jwt invalid": lambda: {"Authorization": "JWT x.y.z"},
    "jwt absent": lambda: {},
}
PRESENT_A_MUST_BE_VALID = {  # whatever the policy, an `a` that is there must verify
    "invalid": "auth_invalid",
    "unknown device": "unknown_device",
    "malformed": "auth_malformed",
    "malformed, unknown device": "auth_malformed",
}
EXPECTED = {
    "payload": {
        "jwt absent": {"valid": "ca", **PRESENT_A_MUST_BE_VALID, "absent": "auth_missing"},
    },
    "none": {
        "jwt absent": {"valid": "ca", **PRESENT_A_MUST_BE_VALID, "absent": "none"},
    },
    "jwt": {
        "jwt valid": {"valid": "ca+jwt", **PRESENT_A_MUST_BE_VALID, "absent": "jwt"},
        "jwt invalid": dict.fromkeys(A_KINDS, "jwt_invalid"),
        "jwt absent": dict.fromkeys(A_KINDS, "auth_missing"),
    },
    "either": {
        "jwt valid": {"valid": "ca+jwt", **PRESENT_A_MUST_BE_VALID, "absent": "jwt"},
        "jwt invalid": dict.fromkeys(A_KINDS, "jwt_invalid"),
        "jwt absent": {"valid": "ca", **PRESENT_A_MUST_BE_VALID, "absent": "auth_missing"},
    },
}


@pytest.mark.parametrize("policy", list(EXPECTED))
def test_every_policy_with_every_kind_of_credential(start_metrics_server, policy):
    secret = SECRET if policy in ("jwt", "either") else None
    server = start_metrics_server(MetricsServerConfig(auth=policy, jwt_secret=secret))
    dut = server.registry.get(server.registry.serials()[0])
    rcs = count(1)  # every request a new rc: an accepted one is never refused as a replay
    seen = {
        jwt: {
            kind: outcome(
                server, server.post("/dd", a_body(kind, dut.serial_number, dut.key, next(rcs)), headers=header())
            )
            for kind in A_KINDS
        }
        for jwt, header in JWT_HEADERS.items()
        if jwt in EXPECTED[policy]
    }
    assert seen == EXPECTED[policy]


@pytest.mark.parametrize("policy", ["payload", "none"])
def test_a_jwt_sent_to_a_server_without_a_jwt_secret_is_refused(start_metrics_server, policy):
    """It cannot be checked, and a credential that is present must be valid."""
    server = start_metrics_server(MetricsServerConfig(auth=policy))
    dut = server.registry.get(server.registry.serials()[0])
    body = a_body("valid", dut.serial_number, dut.key, 1)
    token = make_jwt(Secret("z" * 40, "other"))
    answer = server.post("/dd", body, headers={"Authorization": f"JWT {token}"})
    assert answer.status == 403 and refusal(answer)["error"] == "jwt_invalid"
    assert refusal(answer)["where"] == "Authorization" and token not in answer.body.decode()
    assert server.post("/dd", body).status == 201  # the same request without the header
    fmt = b'{"data_order":["a"]}'
    for admin in (
        server.post("/data_format", fmt, headers={"Authorization": f"JWT {token}"}),
        server.get("/dd", headers={"Authorization": "JWT x"}),
    ):
        assert admin.status == 403 and refusal(admin)["error"] == "jwt_invalid"
    assert server.post("/data_format", fmt).status == 201 and server.get("/dd").status == 200  # open without one


def test_an_unverifiable_signature_names_the_serial_and_is_stored_refused(start_metrics_server):
    server = start_metrics_server(MetricsServerConfig(auth="none"))
    answer = server.post("/dd", a_body("unknown device", STRANGER, Secret(OTHER_KEY), 1))  # signed with a key
    body = refusal(answer)
    assert (answer.status, body["error"], body["where"]) == (403, "unknown_device", "sn")
    assert STRANGER in body["message"] and OTHER_KEY not in answer.body.decode()
    row = server.requests()[-1]
    assert (row.verdict, row.serial_number, row.simple) == ("rejected", STRANGER, None)


# -- POST /data_format: the top level must be an object -----------------------------------------


@pytest.mark.parametrize(
    "body, ctype",
    [
        (b'[{"data_order":["a"]}]', "application/json"),
        (b'"data_order"', "application/json"),
        (b"7", "json"),
        (cbor2.dumps([{"data_order": ["a"]}]), "application/cbor"),
    ],
)
def test_data_format_that_is_not_an_object_is_422_not_an_object(metrics_server, body, ctype):
    answer = metrics_server.post("/data_format", body, ctype)
    err = refusal(answer)
    assert (answer.status, err["error"], err["where"]) == (422, "not_an_object", "$")
    assert metrics_server.requests()[-1].error_code == "not_an_object"


# -- CBOR: no tags, whatever the tag -------------------------------------------------------------


def cbor_request(value) -> bytes:
    return cbor2.dumps({"sn": "SIM000001", "ts": int(time.time()), "d": {"x": value}})


@pytest.mark.parametrize(
    "body, where, tag",
    [
        (cbor_request(2**70), "d.x", 2),  # cbor2 writes an integer beyond 64 bits as a bignum
        (cbor_request(cbor2.CBORTag(2, b"\x01")), "d.x", 2),  # a bignum holding 1
        (cbor_request(-(2**70)), "d.x", 3),
        (cbor_request(cbor2.CBORTag(3, b"\x00")), "d.x", 3),  # -1
        (cbor_request(cbor2.CBORTag(0, "2024-01-01T00:00:00Z")), "d.x", 0),
        (cbor_request(cbor2.CBORTag(1, 1_700_000_000)), "d.x", 1),
        (
            cbor2.dumps(
                {
                    "sn": "SIM000001",
                    "ts": 1_700_000_000,
                    "hd": [{"v": 1, "timestamp": 1_699_999_000}, {"v": cbor2.CBORTag(2, b"\x05"), "relative_time": 60}],
                }
            ),
            "hd[1].v",
            2,
        ),
        (cbor2.dumps(cbor2.CBORTag(55799, {"sn": "SIM000001", "d": {"x": 1}})), "$", 55799),  # self-described
        (cbor_request(cbor2.CBORTag(28, "shared")), "d.x", 28),  # value sharing
        (cbor_request(cbor2.CBORTag(4000, [1, 2])), "d.x", 4000),  # a tag cbor2 does not know
    ],
)
def test_every_cbor_tag_is_400_bad_cbor_naming_where(metrics_server, body, where, tag):
    answer = metrics_server.post("/dd", body, "application/cbor")
    err = refusal(answer)
    assert (answer.status, err["error"], err["where"]) == (400, "bad_cbor", where)
    assert f"tag {tag}" in err["message"]
    assert metrics_server.requests()[-1].error_code == "bad_cbor"


def test_a_tag_in_a_data_format_is_refused_too(metrics_server):
    answer = metrics_server.post("/data_format", cbor2.dumps({"historical_data_interval": 2**64}), "cbor")
    err = refusal(answer)
    assert (answer.status, err["error"], err["where"]) == (400, "bad_cbor", "historical_data_interval")


def tag_numbers() -> Iterator[int]:
    """Every tag up to 1100 (cbor2 decodes some 20 of them into Python objects), the
    self-described CBOR and complex-number tags, and the largest tags CBOR can write."""
    yield from range(1101)
    yield from (43000, 55799, 2**32 - 1, 2**64 - 1)


def test_the_decoder_refuses_every_tag_number():
    accepted = []
    for tag in tag_numbers():
        for value in (1, "2024-01-01T00:00:00Z", b"\x01", [1, 2], {"a": 1}):
            try:
                decode_cbor(cbor2.dumps({"x": cbor2.CBORTag(tag, value)}))
            except MetricsError as e:
                if e.code != "bad_cbor" or e.where != "x":
                    accepted.append((tag, value, e.code, e.where))
            else:
                accepted.append((tag, value))
    assert accepted == []


def test_cbor_without_tags_is_still_accepted():
    body = cbor2.dumps({"sn": "SIM000001", "ts": int(time.time()), "d": {"x": 2**64 - 1, "y": -(2**64)}})
    assert decode_cbor(body)["d"] == {"x": 2**64 - 1, "y": -(2**64)}  # the largest CBOR integers, untagged


# -- every documented status, over HTTP ---------------------------------------------------------

FMT_V = {"data_order": ["v"], "variables": {"v": {"name": "V", "type": "integer"}}}


def nested_acc(levels: int) -> dict:
    item: dict = {"sn": f"ACC{levels}", "d": {"x": "1"}}
    for i in range(levels):
        item = {"sn": f"ACC{i}", "d": {"x": "1"}, "acc": [item]}
    return item


@pytest.mark.parametrize(
    "payload, code, where",
    [
        ({"sn": "SIM000001", "d": {"x": json.loads("[" * 40 + "]" * 40)}}, "too_deep", None),
        (nested_acc(5), "too_deep", "acc[0].acc[0].acc[0].acc[0].acc"),
        ({"sn": "SIM000001", "ts": 5, "d": {"x": "1"}, "a": "xx12"}, "auth_malformed", "a"),
        ({"d": {"x": "1"}}, "missing_field", "sn"),
        ({"sn": "SIM000001", "d": {"x": "1"}, "zz": 1}, "unknown_field", "zz"),
        ({"sn": "SIM000001", "serial_number": "SIM000001", "d": {"x": "1"}}, "duplicate_field", "serial_number"),
        ({"sn": 5, "d": {"x": "1"}}, "wrong_type", "sn"),
        ({"sn": "SIM000001", "ts": "last tuesday", "d": {"x": "1"}}, "bad_value", "ts"),
        ({"sn": "SIM000001", "dfo": {"data_order": ["a"]}, "d": [1, 2]}, "bad_index", "d[1]"),
        ({"sn": "SIM000001", "dfo": {"data_order": ["a"]}, "d": {"a": 1, "0": 2}}, "duplicate_variable", "d.0"),
        ({"sn": "SIM000001", "hd": [{"a": 1}]}, "no_time", "hd[0]"),
        ({"sn": "SIM000001", "dfo": FMT_V, "d": {"v": "seven"}}, "type_mismatch", "d.v"),
    ],
)
def test_the_device_data_codes_no_other_self_test_provokes(metrics_server, payload, code, where):
    answer = metrics_server.post("/dd", json.dumps(payload).encode())
    err = refusal(answer)
    assert err["error"] == code and (where is None or err["where"] == where), err
    assert metrics_server.requests()[-1].error_code == code


@pytest.mark.parametrize(
    "fmt, code, where",
    [
        ({"variables": {"v": {"type": "float"}}}, "missing_field", "variables.v"),
        ({"data_order": ["a"], "zz": 1}, "unknown_field", "zz"),
        ({"data_order": "a"}, "wrong_type", "data_order"),
    ],
)
def test_data_format_codes(metrics_server, fmt, code, where):
    answer = metrics_server.post("/data_format", json.dumps(fmt).encode())
    err = refusal(answer)
    assert (err["error"], err["where"]) == (code, where), err


def test_from_after_to_is_bad_query(metrics_server):
    answer = metrics_server.get("/dd", {"from_datetime": "2024-01-02T00:00:00Z", "to_datetime": "2024-01-01T00:00:00Z"})
    assert answer.status == 400 and refusal(answer)["error"] == "bad_query"


def test_every_documented_code_is_provoked_over_http_by_a_server_self_test():
    """A code added to the table needs a test that makes the server answer it."""
    table = [code for _status, code in re.findall(r"^\| (\d{3}) \| `(\w+)` \|", DOC, re.M)]
    assert set(table) == set(CODES)
    tests = "".join(p.read_text() for p in SELFTEST.glob("test_server*.py"))
    assert [code for code in table if f'"{code}"' not in tests] == []
