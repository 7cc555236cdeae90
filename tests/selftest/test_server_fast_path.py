"""The server's shortcuts for device data change nothing observable: a POST skips Flask's
contexts and URL map (app.py `_device_data_first`) and must answer and store exactly what the
same request through Flask does, refusals included; a device's next plan starts from the state
the server last committed for it, not a store read, and the store still decides."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.test import EnvironBuilder

from bench.openpaygo.metrics.condense import build_request
from bench.secret import Secret
from bench.server.app import create_app
from bench.server.config import MetricsServerConfig
from bench.server.devices import Device, DeviceRegistry
from bench.server.store import DeviceState, Store

KEY = Secret("a29ab82edc5fbbc41ec9530f6dac86b1", "test key")
NOW = 1_700_000_000.25
JWT_SECRET = Secret("s" * 40, "jwt secret")


def _requests() -> list[dict]:
    good = build_request("D1", data={"token_count": 1}, timestamp=int(NOW), auth_method="ra", key=KEY)
    later = build_request("D1", data={"token_count": 1}, timestamp=int(NOW) + 2, auth_method="ra", key=KEY)
    forged = build_request("D1", data={"token_count": 1}, timestamp=int(NOW) + 1, auth_method="ra", key="0" * 32)
    json_ct = {"content_type": "application/json"}
    return [
        {"data": good.body, "content_type": good.content_type},
        {"data": good.body, "content_type": good.content_type},  # a replay
        {"data": forged.body, **json_ct},
        {"data": b"{not json", **json_ct},
        {"data": good.body, "content_type": "text/plain"},
        {"data": later.body, **json_ct, "query_string": "x=1&y=%FF"},
        {"data": good.body, **json_ct, "headers": {"Authorization": "JWT bad"}},
        {"data": b"x" * 2000, **json_ct},  # over the server's body limit
        {"data": b'{"sn":"D1","d":{"tc":1}}', **json_ct, "environ_overrides": {"REMOTE_ADDR": "10.1.2.3"}},
        {"data": b"", **json_ct, "environ_overrides": {"CONTENT_LENGTH": "5000"}},  # declared too large
        {"data": b"{}", "environ_overrides": {"CONTENT_TYPE": ""}},
    ]


def _run(tmp: Path, through_flask: bool, config: MetricsServerConfig) -> tuple[list, list, object]:
    store = Store(tmp / "m.db")
    registry = DeviceRegistry([Device("D1", KEY, 123456789)], store)
    app = create_app(config, store, registry, clock=lambda: NOW)
    answers = []
    for kw in _requests():
        environ = EnvironBuilder(path=config.prefix + "/dd", method="POST", **kw).get_environ()
        if "environ_overrides" in kw and "CONTENT_LENGTH" in kw["environ_overrides"]:
            environ["wsgi.input"] = io.BytesIO(b"{" * 5000)
        got: list = []
        wsgi = (lambda e, s: Flask.wsgi_app(app, e, s)) if through_flask else app
        body = b"".join(wsgi(environ, lambda status, headers, exc=None: got.extend([status, headers])))
        answers.append((got[0], got[1], body))
    rows = [{k: v for k, v in vars(r).items() if k != "received_at"} for r in store.requests()]
    state = store.device_state("D1")
    store.close()
    return answers, rows, state


@pytest.mark.parametrize("base_path, auth", [("/", "payload"), ("/m/", "either")])
def test_device_data_answers_and_rows_are_those_of_the_flask_path(tmp_path, base_path, auth):
    config = MetricsServerConfig(base_path=base_path, auth=auth, jwt_secret=JWT_SECRET, max_body_bytes=1500)
    (tmp_path / "flask").mkdir()
    (tmp_path / "fast").mkdir()
    by_flask = _run(tmp_path / "flask", True, config)
    fast = _run(tmp_path / "fast", False, config)
    assert [a[0] for a in by_flask[0]].count("201 CREATED") >= 2  # some accepted, the rest refused
    for flask_answer, fast_answer in zip(by_flask[0], fast[0], strict=True):
        assert fast_answer == flask_answer
    assert fast[1] == by_flask[1] and len(fast[1]) == len(_requests())
    assert fast[2] == by_flask[2]


def test_a_state_changed_behind_the_server_s_back_still_decides(tmp_path):
    """The committed state the server plans from is only a start: a state written meanwhile by
    anything else (here: counters set back, a new target) is the one that decides, for a replay
    refusal as for the plan."""
    store = Store(tmp_path / "m.db")
    registry = DeviceRegistry([Device("D1", KEY, 123456789)], store)
    app = create_app(MetricsServerConfig(), store, registry, clock=lambda: NOW)

    def post(rc: int) -> str:
        built = build_request("D1", data={"token_count": 1}, request_count=rc, auth_method="ra", key=KEY)
        environ = EnvironBuilder(path="/dd", method="POST", data=built.body, content_type=built.content_type)
        got: list = []
        b"".join(app(environ.get_environ(), lambda status, headers, exc=None: got.append(status)))
        return got[0]

    assert post(5) == "201 CREATED"
    assert post(5) == "409 CONFLICT"  # the replay, refused on the store's state
    store.put_device_state(DeviceState("D1", 1, last_request_count=3))  # behind the server's back
    assert post(4) == "201 CREATED"  # not a replay of the 5 the server committed before
    assert store.device_state("D1").last_request_count == 4
    store.close()
