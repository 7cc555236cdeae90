"""The live station page's parts without a browser: what the state shows (masked, progress,
measurements recorded or judged), the Metrics view read from a real store, and the page's app
(self-contained, read-only). The browser run is test_browser.py."""

from __future__ import annotations

import json
import re

from bench.dut.traffic import TrafficLog
from bench.live.metrics_view import device_summaries
from bench.live.page import PAGE, create_page_app
from bench.live.plugin import measurement_rows
from bench.live.state import LiveState
from bench.measure.measurement import Measurements
from bench.secret import Secret

KEY = "a29ab82edc5fbbc41ec9530f6dac86b1"


def test_serial_lines_reach_the_page_masked():
    state = LiveState(station="s1")
    log = TrafficLog([Secret(KEY, "dut.secret_key")])
    log.watchers.append(state.serial_line)
    log.record("TX", f"PROV sn=SIM1 key={KEY} code=123456789")
    log.record("RX", "OK")
    lines = state.snapshot()["serial"]
    assert len(lines) == 2 and "TX" in lines[0] and "***" in lines[0] and "RX  OK" in lines[1]
    assert KEY not in json.dumps(state.snapshot()) and KEY.upper() not in json.dumps(state.snapshot())


def test_progress_outcomes_and_measurements():
    state = LiveState(total=3)
    m = Measurements()
    m("walk_seed", 42)
    m("rtc_drift", 2.5, "ppm", low=-20, high=20)
    m("boot_time", 0.00794506, "s", high=0.005)

    class Item:  # what the plugin reads of a running test
        stash = {}

    from bench.fixtures.keys import MEASUREMENTS_KEY

    Item.stash[MEASUREMENTS_KEY] = m
    rows = measurement_rows(Item())  # type: ignore[arg-type]
    assert [r["outcome"] for r in rows] == ["RECORDED", "PASS", "FAIL"]
    assert rows[2]["value"] == "7.945 ms"
    state.update(current="test_x.py::test_a")
    state.current_measurements = lambda: rows
    snap = state.snapshot()
    assert snap["current"] == "test_x.py::test_a" and snap["measurements"][0]["test"] == "test_x.py::test_a"
    state.test_done("test_x.py::test_a", "failed", 1.234, rows)
    state.update(current=None)
    state.current_measurements = lambda: []
    snap = state.snapshot()
    assert (snap["done"], snap["total"], snap["counts"]) == (1, 3, {"failed": 1})
    assert snap["outcomes"] == [{"test": "test_x.py::test_a", "outcome": "failed", "duration_s": 1.23}]
    assert len(snap["measurements"]) == 3


def test_metrics_view_reads_a_real_store(start_metrics_server, server_dut):
    server = start_metrics_server()
    serial = server_dut.serial_number
    assert server.post("/dd", b'{"sn":"NOBODY","rc":1,"d":{"x":"1"}}').status == 403
    assert device_summaries(server.store.path) == [
        {
            "serial": "NOBODY",
            "requests": 1,
            "accepted": 0,
            "refused": 1,
            "last_at": server.requests()[-1].received_at,
            "token_count": None,
            "last_tokens": [],
        }
    ]
    assert serial != "NOBODY"
    assert device_summaries(server.store.path.parent / "missing.db") == []


def test_the_page_is_self_contained_and_read_only():
    # no script, style, font or image from anywhere: a bench PC may have no internet
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", PAGE)
    assert "<form" not in PAGE
    app = create_page_app(lambda: {"seq": 1, "verdict": None})
    client = app.test_client()
    page = client.get("/")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    state = client.get("/state.json")
    assert state.get_json() == {"seq": 1, "verdict": None}
    assert client.post("/state.json").status_code == 405
    assert client.get("/favicon.ico").status_code == 204


def test_the_page_listens_on_loopback_unless_the_rig_says_otherwise(tmp_path, capsys):
    from bench.live.run import LivePage
    from bench.rig import load_rig, resolve_rig

    page = LivePage.start(resolve_rig(None), "full", tmp_path, 0)
    try:
        assert page.server.host == "127.0.0.1" and page.url.startswith("http://127.0.0.1:")
    finally:
        page.finish("PASSED", "", 0)
    rig_file = tmp_path / "rig.toml"
    rig_file.write_text('[station]\nid = "s2"\nui_host = "0.0.0.0"\n')
    page = LivePage.start(load_rig(rig_file), "full", tmp_path, 0)
    try:
        assert page.server.host == "0.0.0.0"
        assert "reachable from other machines" in capsys.readouterr().out
    finally:
        page.finish("PASSED", "", 0)
