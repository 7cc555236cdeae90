"""`Authorization: JWT <token>` on the Metrics server: HS256 with the server's secret only."""

from __future__ import annotations

import json
import time

import jwt
import pytest

from bench.openpaygo.metrics.condense import build_request
from bench.secret import Secret
from bench.server.config import MetricsServerConfig
from bench.server.jwt_auth import make_jwt

SECRET = Secret("s" * 64 + "-jwt-secret-for-the-bench", "jwt")
BODY = b'{"sn":"ANY-DEVICE","d":{"firmware":"1"}}'


@pytest.fixture
def jwt_server(start_metrics_server):
    return start_metrics_server(MetricsServerConfig(auth="jwt", jwt_secret=SECRET))


def auth(token: str) -> dict:
    return {"Authorization": f"JWT {token}"}


def code(answer) -> str:
    return json.loads(answer.body)["error"]


def test_a_valid_token_is_accepted_for_any_device(jwt_server):
    answer = jwt_server.post("/dd", BODY, headers=auth(make_jwt(SECRET, {"sub": "lab", "exp": time.time() + 60})))
    assert answer.status == 201
    assert jwt_server.requests()[-1].auth == "jwt"


@pytest.mark.parametrize(
    "header, expected",
    [
        (None, "auth_missing"),
        ("Bearer " + make_jwt(SECRET), "jwt_invalid"),
        ("JWT", "jwt_invalid"),
        ("JWT not.a.token", "jwt_invalid"),
        ("JWT " + jwt.encode({"sub": "x"}, None, algorithm="none"), "jwt_invalid"),
        ("JWT " + jwt.encode({"sub": "x"}, "another-secret-of-at-least-32-bytes!", algorithm="HS256"), "jwt_invalid"),
        ("JWT " + jwt.encode({"sub": "x"}, SECRET.reveal(), algorithm="HS512"), "jwt_invalid"),
        ("JWT " + make_jwt(SECRET, {"exp": int(time.time()) - 3600}), "jwt_invalid"),
        ("JWT " + make_jwt(SECRET, {"nbf": int(time.time()) + 3600}), "jwt_invalid"),
    ],
)
def test_bad_tokens_are_403(jwt_server, header, expected):
    answer = jwt_server.post("/dd", BODY, headers={"Authorization": header} if header else None)
    assert answer.status == 403 and code(answer) == expected
    row = jwt_server.requests()[-1]
    assert row.error_code == expected and SECRET.reveal() not in answer.body.decode()


def test_either_policy(start_metrics_server):
    server = start_metrics_server(MetricsServerConfig(auth="either", jwt_secret=SECRET))
    dut = server.registry.get(server.registry.serials()[0])
    ts = int(time.time())
    signed = build_request(
        dut.serial_number, data={"x": "1"}, timestamp=ts, auth_method="ca", key=dut.key, request_count=1
    )
    assert server.post("/dd", signed.body).status == 201
    assert server.post("/dd", BODY, headers=auth(make_jwt(SECRET))).status == 201
    assert code(server.post("/dd", BODY)) == "auth_missing"
    again = build_request(
        dut.serial_number, data={"x": "1"}, timestamp=ts + 1, auth_method="ca", key=dut.key, request_count=2
    )
    bad_jwt = server.post("/dd", again.body, headers=auth("x.y.z"))
    assert bad_jwt.status == 403 and code(bad_jwt) == "jwt_invalid"  # a present credential must be valid
    both = server.post("/dd", again.body, headers=auth(make_jwt(SECRET)))
    assert both.status == 201 and server.requests()[-1].auth == "ca+jwt"


def test_admin_routes_need_the_jwt_when_the_server_has_a_secret(start_metrics_server):
    server = start_metrics_server(MetricsServerConfig(auth="either", jwt_secret=SECRET))
    fmt = json.dumps({"data_order": ["a"]}).encode()
    assert code(server.post("/data_format", fmt)) == "auth_missing"
    assert server.post("/data_format", fmt, headers=auth(make_jwt(SECRET))).status == 201
    assert code(server.get("/dd")) == "auth_missing"
    assert server.get("/dd", headers=auth(make_jwt(SECRET))).status == 200


def test_short_secrets_and_policies_without_a_secret_are_refused():
    with pytest.raises(ValueError, match="32 bytes"):
        MetricsServerConfig(auth="jwt", jwt_secret=Secret("short"))
    with pytest.raises(ValueError, match="needs a JWT secret"):
        MetricsServerConfig(auth="either")
