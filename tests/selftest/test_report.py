"""The HTML report carries each test's evidence: measurements, the serial log, plots inline (so
the one file is enough to review), other attachments as links that resolve in the run directory."""

from __future__ import annotations

import base64
import html
import json
import re

from tests.selftest.device_suite import run_device_suite

SELECTED = "brownout or keeps_time"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def report_tests(path) -> dict[str, list[dict]]:
    """pytest-html 4 keeps the per-test data as a JSON blob in the page."""
    text = path.read_text(encoding="utf-8")
    m = re.search(r'data-jsonblob="([^"]*)"', text)
    assert m, f"{path}: no data-jsonblob (pytest-html layout changed?)"
    return json.loads(html.unescape(m.group(1)))["tests"]


def test_report_shows_psu_trace_inline_and_links_raw_data(tmp_path):
    out = tmp_path / "run"
    report = out / "report.html"
    results, output = run_device_suite(
        tmp_path, args=("--report-dir", str(out), "-k", SELECTED, f"--html={report}", "--self-contained-html"),
        plots=True,
    )
    assert results and all(r.outcome == "passed" for r in results.values()), output
    tests = report_tests(report)
    assert len(tests) == len(results), f"report has {sorted(tests)}, junit {sorted(results)}"
    for nodeid, runs in tests.items():
        extras = [e for r in runs for e in r.get("extras", [])]
        images = [e for e in extras if e.get("format_type") == "image"]
        assert images, f"{nodeid}: no inline plot; extras {[(e.get('name'), e.get('format_type')) for e in extras]}"
        for e in images:
            data = e["content"].removeprefix("data:image/png;base64,")  # self-contained: a data URI
            assert base64.b64decode(data)[:8] == PNG_MAGIC, f"{nodeid}: {e['name']} is not a PNG"
        assert any("PSU telemetry" in (e.get("name") or "") for e in images), nodeid
        links = [e for e in extras if e.get("format_type") == "url"]
        assert links, f"{nodeid}: raw telemetry not linked"
        for e in links:
            target = report.parent / e["content"]
            assert target.is_file(), f"{nodeid}: link {e['content']} does not resolve from {report.parent}"
            assert target.read_text(encoding="utf-8").startswith("t_s,label,volts,amps"), target
        measured = " ".join(e["content"] for e in extras if e.get("format_type") == "html")
        assert "supply_voltage_min" in measured and "supply_current_max" in measured, nodeid


def test_no_plots_option_attaches_data_only(tmp_path):
    out = tmp_path / "run"
    results, output = run_device_suite(tmp_path, args=("--report-dir", str(out), "-k", "keeps_time"))
    assert results and all(r.outcome == "passed" for r in results.values()), output
    logs = out / "logs"
    assert list(logs.glob("*.power.csv")), sorted(p.name for p in logs.iterdir())
    assert not list(logs.glob("*.png")), sorted(p.name for p in logs.glob("*.png"))
