"""bench/server/evidence.py and bench/report/metrics.py: the report's Metrics evidence, from real StoredRequests the real
Metrics server stored over HTTP (requests built by the simulator's payload builder): the
requests table (rows, escaping, tokens, masking), the historical series (expanded, scaled,
resent rows counted once, refused requests left out), the CSV and the plot."""

from __future__ import annotations

import csv
import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bench.report.metrics import CSV_COLUMNS, requests_table_html, write_metrics_evidence
from bench.server.evidence import evidence, historical_series, series_units
from bench.sim.metrics.device_format import device_format
from bench.sim.metrics.payload import build_request

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
T0 = 1_700_000_000
STEP = 60


def row(i: int) -> dict:
    """Sample i: readings in mV / mA, as the device sends them."""
    return {
        "panel_voltage": 18000 + i,
        "panel_current": 500 + i,
        "battery_voltage": 12000 + 10 * i,
        "battery_current": -100 - i,
        "load_current": 200,
        "timestamp": T0 + STEP * i,
    }


def send(server, dut, *, rc: int, samples, df: int, serial: str | None = None, auth: str = "ra"):
    built = build_request(
        serial=serial or dut.serial_number,
        key_hex=dut.key.reveal(),
        auth=auth,
        ts=int(time.time()) + rc,
        rc=rc,
        data={"token_count": 1},
        rows=[row(i) for i in samples],
        data_format=device_format(STEP),
        df=df,
    )
    return server.post("/dd", built.body, built.content_type)


@pytest.fixture
def df(server) -> int:
    answer = server.post("/data_format", json.dumps(device_format(STEP)).encode())
    assert answer.status == 201
    return json.loads(answer.body)["id"]


@pytest.fixture
def session(server, server_dut, df):
    """Three sessions, the second resending two rows of the first (a lost reply), a replayed
    one refused, an unknown device with markup in its serial refused; tokens in the replies."""
    server.registry.set_target(server_dut.serial_number, datetime.now(UTC) + timedelta(days=3))
    assert send(server, server_dut, rc=1, samples=[0, 1, 2], df=df).status == 201
    assert send(server, server_dut, rc=2, samples=[1, 2, 3, 4], df=df).status == 201
    assert send(server, server_dut, rc=2, samples=[5], df=df).status == 409  # replay: its row is not taken
    assert send(server, server_dut, rc=3, samples=[5], df=df, serial="<script>alert(1)</script>").status == 403
    return server.requests()


def test_the_table_has_one_row_per_request_escaped(session, server_dut):
    table = requests_table_html(evidence(session).requests)
    assert table.count("<tr>") == 1 + len(session) == 6  # header, the format, 4 device requests
    assert "<script>" not in table and "&lt;script&gt;alert(1)&lt;/script&gt;" in table
    assert "POST /dd" in table and "POST /data_format" in table
    assert "409 replay" in table and "403 unknown_device" in table
    assert "ra ok" in table
    assert "<td>3</td><td>2 / " not in table  # (sanity of the pattern below)
    assert "<td>ra ok</td><td>3</td>" in table and "<td>ra ok</td><td>4</td>" in table  # rows in hd


def test_the_table_shows_the_tokens_answered(session):
    first = next(r for r in session if r.kind == "device_data" and r.verdict == "accepted")
    tokens = json.loads(first.reply)["tkl"]
    assert tokens, "the target should have brought tokens"
    assert all(str(t) in requests_table_html(evidence(session).requests) for t in tokens)


def test_the_table_stops_at_the_limit(session):
    table = requests_table_html(evidence(session).requests, limit=2)
    assert table.count("<tr>") == 3 and f"{len(session) - 2} more request(s) not shown" in table


def test_a_jwt_in_a_stored_route_is_masked(server):
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    server.get("/dd", {"token": jwt})
    (stored,) = server.requests()
    assert jwt in stored.route  # stored as received: the report must not show it
    table = requests_table_html(evidence([stored]).requests)
    assert jwt not in table and "JWT(masked)" in table


def test_the_series_counts_a_resent_row_once_and_leaves_refused_rows_out(session, server):
    raw = historical_series(session)  # df without a lookup: the values as sent
    assert set(raw) == {"panel_voltage", "panel_current", "battery_voltage", "battery_current", "load_current"}
    assert raw["panel_voltage"] == [(float(T0 + STEP * i), 18000.0 + i) for i in range(5)]
    assert raw["battery_current"] == [(float(T0 + STEP * i), -100.0 - i) for i in range(5)]
    scaled = historical_series(session, formats=server.store.data_format)  # volts, amperes
    assert [t for t, _ in scaled["battery_voltage"]] == [float(T0 + STEP * i) for i in range(5)]
    assert [v for _, v in scaled["battery_voltage"]] == pytest.approx([12.0 + 0.01 * i for i in range(5)])
    assert series_units(session, formats=server.store.data_format)["panel_current"] == "A"


def test_an_embedded_format_is_scaled_without_a_lookup(server, server_dut):
    assert send(server, server_dut, rc=1, samples=[0, 1], df=0).status == 201
    series = historical_series(server.requests())
    assert [v for _, v in series["panel_voltage"]] == pytest.approx([18.0, 18.001])


def test_several_devices_are_keyed_by_serial(server, server_dut, df):
    assert send(server, server_dut, rc=1, samples=[0], df=df).status == 201
    assert send(server, server_dut, rc=2, samples=[1], df=df).status == 201
    reqs = server.requests()
    # the first one again as if device B had sent it
    other = [
        replace(r, serial_number="B", simple={**r.simple, "serial_number": "B"})
        for r in reqs
        if r.kind == "device_data"
    ][:1]
    series = historical_series(reqs + other)
    assert series["B/panel_voltage"] == [(float(T0), 18000.0)]
    assert len(series[f"{server_dut.serial_number}/panel_voltage"]) == 2
    assert historical_series(reqs + other, serial_number="B") == {
        k.split("/")[1]: v for k, v in series.items() if k.startswith("B/")
    }


def test_evidence_files_csv_and_png(session, server, tmp_path):
    files = write_metrics_evidence(
        tmp_path / "out", evidence(session, formats=server.store.data_format), "test one/metrics"
    )
    assert [f.name for f in files] == ["test_one_metrics-requests.csv", "test_one_metrics-series.png"]
    with files[0].open(newline="", encoding="utf-8") as f:
        lines = list(csv.DictReader(f))
    assert list(lines[0]) == list(CSV_COLUMNS) and len(lines) == len(session)
    assert [line["status"] for line in lines] == ["201", "201", "201", "409", "403"]
    assert [line["hd_rows"] for line in lines[1:]] == ["3", "4", "1", "1"]
    assert lines[4]["serial_number"] == "<script>alert(1)</script>"  # CSV is data, not markup
    assert files[1].read_bytes()[:8] == PNG_MAGIC


def test_no_rows_no_plot(server, tmp_path):
    server.get("/dd")
    files = write_metrics_evidence(tmp_path, evidence(server.requests()), "empty")
    assert [f.name for f in files] == ["empty-requests.csv"]
