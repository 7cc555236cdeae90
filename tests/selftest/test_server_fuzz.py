"""Whatever arrives, the server answers with a status it documents (never a 500) and stores
exactly one whole row per request. Bounded hypothesis runs against the real server and file."""

from __future__ import annotations

import json
import sqlite3

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.openpaygo.metrics.errors import CODES
from bench.server.config import MetricsServerConfig

STATUSES = {200, 201} | {status for status, _ in CODES.values()}
KEYS = [
    "sn",
    "serial_number",
    "d",
    "data",
    "hd",
    "historical_data",
    "ts",
    "timestamp",
    "rc",
    "request_count",
    "dct",
    "dtc",
    "a",
    "auth",
    "df",
    "dfo",
    "data_format",
    "acc",
    "tc",
    "autsr",
    "aslr",
    "0",
    "7",
    "-1",
    "relative_time",
    "data_order",
    "historical_data_order",
    "historical_data_interval",
    "variables",
    "name",
    "type",
    "scale_factor",
    "gps",
    "x",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["SIM000001", "ra1234", "sa0", "float", "gps", "2021-01-25T13:57:50Z", "text", "bool"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=5)
    ),
    max_leaves=25,
)
requests = st.fixed_dictionaries(
    {"sn": st.sampled_from(["SIM000001", "FUZZ", ""]) | st.integers()},
    optional={k: values for k in ("d", "hd", "ts", "rc", "df", "dfo", "a", "acc", "dct")},
)
# near-valid requests, so the fuzz also reaches expansion, types, times, replay and tokens
names = st.sampled_from(["v", "w", "token_count", "tc", "aslr", "autsr", "timestamp", "relative_time", "0", "1", "9"])
rows = st.one_of(
    st.lists(scalars, max_size=4),
    st.dictionaries(names, scalars, max_size=4),
    st.fixed_dictionaries({"v": st.floats(-1e3, 1e3), "timestamp": st.integers(0, 2**32)}),
)
FORMAT = {
    "data_order": ["v", "w"],
    "historical_data_order": ["v", "w", "timestamp"],
    "historical_data_interval": -60,
    "variables": {"v": {"name": "V", "type": "float"}},
}
plausible = st.fixed_dictionaries(
    {"sn": st.sampled_from(["SIM000001", "FUZZ1", "FUZZ2"]), "rc": st.integers(0, 10**6)},
    optional={
        "d": st.dictionaries(names, scalars, max_size=3) | st.lists(scalars, max_size=3),
        "hd": st.lists(rows, max_size=4),
        "dfo": st.just(FORMAT),
        "ts": st.integers(0, 2**33) | st.just("2021-01-25T13:57:50Z"),
    },
)
CONTENT_TYPES = [
    "application/json",
    "json",
    "application/cbor",
    "cbor",
    "text/plain",
    None,
    "application/json; charset=latin-1",
]


def body_of(draw_value, kind: str) -> bytes:
    if kind == "json":
        return json.dumps(draw_value).encode()
    return cbor2.dumps(draw_value)


payloads = st.one_of(
    st.tuples(plausible | requests | values, st.sampled_from(["json", "cbor"])).map(lambda t: (body_of(*t), t[1])),
    st.tuples(st.binary(max_size=200), st.sampled_from(["json", "cbor"])),
)
FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def check(server, answer, before: int) -> None:
    assert answer.status in STATUSES, (answer.status, answer.body[:200])
    if answer.status >= 400:
        body = json.loads(answer.body)
        assert set(body) == {"error", "message", "where"} and CODES[body["error"]][0] == answer.status
        assert "Traceback" not in body["message"]
    rows = server.store.requests(after_id=before)
    assert len(rows) == 1, "exactly one row per request"
    row = rows[0]
    assert row.status == answer.status and row.verdict == ("accepted" if answer.status < 400 else "rejected")
    assert (row.error_code is None) == (answer.status < 400)


def test_post_device_data_never_500(start_metrics_server):
    server = start_metrics_server(MetricsServerConfig(auth="none"))

    @FUZZ
    @given(payload=payloads, content_type=st.sampled_from(CONTENT_TYPES))
    def run(payload, content_type):
        body, kind = payload
        ctype = content_type if content_type is not None or kind == "json" else None
        if content_type in ("application/json", "json", "application/cbor", "cbor"):
            ctype = f"application/{kind}"  # mostly the right type, so the parser is reached
        before = server.store.last_request_id()
        check(server, server.post("/dd", body, ctype), before)

    run()
    _file_is_whole(server)


def test_post_data_format_never_500(start_metrics_server):
    server = start_metrics_server()
    formats = st.fixed_dictionaries(
        {},
        optional={
            "data_order": values,
            "historical_data_order": values,
            "historical_data_interval": values,
            "variables": st.dictionaries(st.text(max_size=5), values, max_size=3),
            "id": values,
        },
    )

    @FUZZ
    @given(fmt=formats | values, kind=st.sampled_from(["json", "cbor"]))
    def run(fmt, kind):
        before = server.store.last_request_id()
        check(server, server.post("/data_format", body_of(fmt, kind), f"application/{kind}"), before)

    run()
    _file_is_whole(server)


def test_get_device_data_never_500(start_metrics_server):
    server = start_metrics_server(MetricsServerConfig(auth="none"))
    server.post("/dd", b'{"sn":"G","rc":1,"d":{"x":"1"}}')
    times = st.one_of(
        st.datetimes().map(lambda d: d.isoformat()),
        st.text(max_size=30),
        st.sampled_from(["2021-01-25T13:57:50Z", "2021-01-25", "Z", "9999-12-31T23:59:59+14:00"]),
    )

    @FUZZ
    @given(
        params=st.dictionaries(
            st.sampled_from(["from_datetime", "to_datetime", "serial_number", "x"]), times, max_size=3
        ),
        route=st.sampled_from(["/dd", "/device_data"]),
    )
    def run(params, route):
        before = server.store.last_request_id()
        answer = server.get(route, params)
        check(server, answer, before)
        if answer.status == 200:
            assert isinstance(json.loads(answer.body), list)

    run()
    _file_is_whole(server)


def _file_is_whole(server) -> None:
    conn = sqlite3.connect(server.store.path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT COUNT(*) FROM requests WHERE status >= 500 AND status != 503").fetchone() == (0,)
