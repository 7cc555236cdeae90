"""The HTML report carries each test's evidence: measurements, the serial log, plots inline (so
the one file is enough to review), other attachments as links that resolve in the run directory."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

from bench.rig import VIRTUAL_DUT_KEY
from tests.selftest import background
from tests.selftest.device_suite import ROOT, run_device_suite

SELECTED = "brownout or keeps_time"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def report_tests(path) -> dict[str, list[dict]]:
    """pytest-html 4 keeps the per-test data as a JSON blob in the page."""
    text = path.read_text(encoding="utf-8")
    m = re.search(r'data-jsonblob="([^"]*)"', text)
    assert m, f"{path}: no data-jsonblob (pytest-html layout changed?)"
    return json.loads(html.unescape(m.group(1)))["tests"]


@background.scenario
def psu_trace(tmp: Path):
    out = tmp / "run"
    return tmp, *run_device_suite(
        tmp,
        args=("--report-dir", str(out), "-k", SELECTED, f"--html={out / 'report.html'}", "--self-contained-html"),
        plots=True,
    )


PLOT_SRC = re.compile(r"<img alt='([^']*)' src='data:image/png;base64,([A-Za-z0-9+/=]+)'>")


def test_report_shows_psu_trace_inline_and_links_raw_data(request):
    """Plots inline at full width, enlarged on click by CSS alone; raw data and the serial traffic
    log linked relative to the report (no data: URI, which Chromium will not open); no empty
    log box; values with no limit recorded, not passed; numbers at their unit's precision."""
    tmp_path, results, output = background.result(request, psu_trace)
    out = tmp_path / "run"
    report = out / "report.html"
    assert results and all(r.outcome == "passed" for r in results.values()), output
    page = report.read_text(encoding="utf-8")
    assert "data:text/plain" not in page and "<script src=" not in page
    assert ".paygo-plot input:checked+img{position:fixed" in page  # the click-to-enlarge rule
    assert ".logwrapper:not(:has(.log)){display:none}" in page
    tests = report_tests(report)
    assert len(tests) == len(results), f"report has {sorted(tests)}, junit {sorted(results)}"
    for nodeid, runs in tests.items():
        assert all(r["log"] == "" for r in runs), f"{nodeid}: {[r['log'][:80] for r in runs]}"  # no empty box
        extras = [e for r in runs for e in r.get("extras", [])]
        html_extras = " ".join(e["content"] for e in extras if e.get("format_type") == "html")
        plots = PLOT_SRC.findall(html_extras)
        assert plots, f"{nodeid}: no inline plot; extras {[(e.get('name'), e.get('format_type')) for e in extras]}"
        for _, data in plots:
            assert base64.b64decode(data)[:8] == PNG_MAGIC, f"{nodeid}: not a PNG"
        assert any("PSU telemetry" in alt for alt, _ in plots), nodeid
        assert html_extras.count("<label title='click to enlarge'><input type='checkbox'><img ") == len(plots)
        links = {e["name"]: e["content"] for e in extras if e.get("format_type") == "url"}
        log = links.pop("serial traffic log")
        assert log.startswith("logs/") and (out / log).read_text(encoding="utf-8").startswith(
            tuple("0123456789")  # a UTC timestamp opens each line
        ), log
        assert f"the whole file: <a href='{log}'" in html_extras and "<details class='paygo-log'>" in html_extras
        assert links, f"{nodeid}: raw telemetry not linked"
        for content in links.values():
            target = report.parent / content
            assert target.is_file(), f"{nodeid}: link {content} does not resolve from {report.parent}"
            assert target.read_text(encoding="utf-8").startswith("t_s,label,volts,amps"), target
        rows = dict(
            re.findall(r"<tr><td>([^<]+)</td><td>[^<]*</td><td>[^<]*</td><td[^>]*>([^<]+)</td></tr>", html_extras)
        )
        assert "supply_voltage_min" in rows and "supply_current_max" in rows, nodeid
        assert rows["telemetry_samples"] == "recorded" and rows["supply_current_max"] == "recorded", rows
        values = re.findall(r"<tr><td>[^<]+</td><td>([^<]*)</td>", html_extras)
        assert not [v for v in values if re.search(r"\d\.\d{5,}", v)], values  # never 0.00794506 s


@background.scenario
def no_plots(tmp: Path):
    return tmp, *run_device_suite(tmp, args=("--report-dir", str(tmp / "run"), "-k", "keeps_time"))


def test_no_plots_option_attaches_data_only(request):
    tmp_path, results, output = background.result(request, no_plots)
    out = tmp_path / "run"
    assert results and all(r.outcome == "passed" for r in results.values()), output
    logs = out / "logs"
    assert list(logs.glob("*.power.csv")), sorted(p.name for p in logs.iterdir())
    assert not list(logs.glob("*.png")), sorted(p.name for p in logs.glob("*.png"))


def run_with_report(tmp: Path, k: str, *args: str, plots: bool = False):
    """The device tests matching `k`, with a self-contained report.html in tmp/run."""
    out = tmp / "run"
    extra = ("--report-dir", str(out), "-k", k, f"--html={out / 'report.html'}", "--self-contained-html", *args)
    return tmp, *run_device_suite(tmp, args=extra, plots=plots)


@background.scenario
def captured_metrics(tmp: Path):
    return run_with_report(tmp, "metrics_tokens_applied", plots=True)


def test_report_shows_the_captured_metrics(request):
    """A Metrics test's report entry carries what reached the server: the requests as a table
    (one row per stored request, tokens answered included), their CSV linked, the historical
    series as an inline plot; the device's key appears nowhere in the page."""
    tmp_path, results, output = background.result(request, captured_metrics)
    out = tmp_path / "run"
    report = out / "report.html"
    assert list(results) == ["tests/device/test_metrics.py::test_metrics_tokens_applied"], output
    assert all(r.outcome == "passed" for r in results.values()), output
    ((nodeid, runs),) = report_tests(report).items()
    extras = [e for r in runs for e in r.get("extras", [])]
    tables = [e["content"] for e in extras if e.get("format_type") == "html" and "metrics-requests" in e["content"]]
    assert len(tables) == 1, f"{nodeid}: extras {[(e.get('name'), e.get('format_type')) for e in extras]}"
    csv_links = [
        e["content"]
        for e in extras
        if e.get("format_type") == "url" and e["content"].endswith(".csv") and "metrics-requests" in e["content"]
    ]
    assert len(csv_links) == 1, csv_links
    lines = (report.parent / csv_links[0]).read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("id,received_at,method,route,kind,status,verdict"), lines[0]
    assert len(lines) >= 3, f"the test waits for at least two sessions: {lines}"
    # every stored request is a row of the table, and the tokens the server answered are shown
    assert tables[0].count("<tr>") == len(lines), (tables[0][:500], len(lines))
    tokens = {row.rsplit(",", 1)[1] for row in lines[1:]} - {""}
    assert tokens, f"no request in the CSV carries the tokens the test was served: {lines}"
    assert all(t in tables[0] for t in tokens), tokens
    plots = PLOT_SRC.findall(" ".join(e["content"] for e in extras if e.get("format_type") == "html"))
    assert any("Historical data" in alt for alt, _ in plots), [alt for alt, _ in plots]
    key = VIRTUAL_DUT_KEY
    assert key not in report.read_text(encoding="utf-8")
    assert not any(
        key in p.read_text(encoding="utf-8", errors="replace")
        for p in (out / "logs").iterdir()
        if p.suffix in (".log", ".csv", ".html")
    )


def header_text(report) -> str:
    """The report's run header (bench/report/header.py), from its verdict on, tags stripped."""
    text = report.read_text(encoding="utf-8")
    start = text.find("<h2 class='paygo-verdict'")
    assert start >= 0 and text.find("<h2>Run</h2>") > start, f"{report}: no run header led by the verdict"
    last = max(text.find("paygo-not-covered"), text.find("paygo-missing"), text.find("<h2>Run</h2>"))
    end = text.find("</ul>", last) if last > text.find("<h2>Run</h2>") else text.find("</table>", last)
    return html.unescape(re.sub(r"<[^>]+>", " ", text[start:end]))


def page_title(report) -> str:
    m = re.search(r'<title id="head-title">([^<]*)</title>', report.read_text(encoding="utf-8"))
    assert m, f"{report}: no title"
    return html.unescape(m.group(1))


@background.scenario
def header_of_a_run(tmp: Path):
    return run_with_report(tmp, "test_identity", "--operator", "ana")


def test_report_header_names_the_dut_as_it_reported_itself(request):
    tmp_path, results, output = background.result(request, header_of_a_run)
    out = tmp_path / "run"
    report = out / "report.html"
    assert results and all(r.outcome == "passed" for r in results.values()), output
    head = " ".join(header_text(report).split())
    # the verdict first: both passed, but the full suite requires every device test
    n, m = len(results), json.loads((out / "record.json").read_text(encoding="utf-8"))["suite"]["required"]
    coverage = f"{n} of {m} required (suite full)"
    assert head.startswith(f"INCOMPLETE verdict INCOMPLETE: {n} of {m} required tests ran (suite full); missing: "), (
        head
    )
    assert f"DUT serial SIM000001 station virtual coverage {coverage}: Full device suite supply at the end " in head
    # where the supply was left, as measured when the session's PSU fixture tore down
    supply = re.search(r"supply at the end (supply off, confirmed: rail measured at (\S+) V, .*?) Run ", head)
    assert supply and float(supply.group(2)) < 0.5 and "reports its output off" in supply.group(1), head
    assert "background:#b35900" in report.read_text(encoding="utf-8")  # amber
    assert page_title(report) == f"INCOMPLETE - DUT SIM000001 - station virtual - {coverage}"
    assert f"Required, not passed ({m - n})" in head and "deselected (-k, -m or --deselect)" in head
    assert "DUT model (from its ID) PAYGO-SIM" in head and "DUT firmware (from its ID) 1.0.0" in head, head
    assert "operator ana" in head and "station virtual" in head, head
    assert "psu *IDN? PAYGO-BENCH,SIM-PSU3" in head, head
    assert "bench version 0.1.0" in head and "Not covered" not in head, head
    assert VIRTUAL_DUT_KEY not in report.read_text(encoding="utf-8")


@background.scenario
def header_of_an_hdk_run(tmp: Path):
    out = tmp / "run"
    rig = ROOT / "docs" / "rigs" / "hdk-virtual.toml"
    return tmp, *run_device_suite(
        tmp,
        args=(
            "--rig",
            str(rig),
            "--report-dir",
            str(out),
            "-k",
            "identity",
            f"--html={out / 'report.html'}",
            "--self-contained-html",
        ),
    )


def test_report_lists_the_tests_the_dut_could_not_be_given(request):
    tmp_path, results, output = background.result(request, header_of_an_hdk_run)
    out = tmp_path / "run"
    report = out / "report.html"
    skipped = sorted(n for n, r in results.items() if r.outcome == "skipped")
    assert skipped == [
        "tests/device/test_identity.py::test_identity",
        "tests/device/test_identity.py::test_provisioning_round_trip",
    ], output
    head = " ".join(header_text(report).split())
    assert head.startswith("INCOMPLETE verdict INCOMPLETE: no device test ran (every one skipped or not covered)"), head
    assert page_title(report).startswith("INCOMPLETE - DUT ")
    assert "Not covered (2)" in head, head
    for nodeid in skipped:
        assert nodeid in head, head
    assert "does not offer 'identity'" in head and "rig file SHA-256" in head, head


def test_the_header_leads_with_the_verdict_in_its_colour_and_never_shows_a_key():
    from bench.record.model import DutRecord, RunRecord, StationRecord, utc_now
    from bench.record.verdict import Coverage, Missing
    from bench.report.header import VERDICT_COLOURS, run_header_html, title_text

    for verdict, colour in VERDICT_COLOURS.items():
        rec = RunRecord(
            run_id="r",
            status="finished",
            started_at=utc_now(),
            bench_version="0.1.0",
            python_version="3.11",
            pytest_version="9",
            station=StationRecord("lab-3", "", "host", "", None, None, False, []),
            dut=DutRecord("reference", "PG1", "", ""),
            verdict=verdict,
            verdict_reason=f"the DUT said key={VIRTUAL_DUT_KEY}",
            suite=Coverage(
                "token",
                "OpenPAYGO Token certification",
                30,
                29,
                (Missing("tests/device/test_lockout.py::test_x", "skipped: no rtc_set"),),
            ),
        )
        page = run_header_html(rec, (), [VIRTUAL_DUT_KEY])
        assert page.startswith(f"<h2 class='paygo-verdict' style='color:#fff;background:{colour};"), page[:120]
        assert page.index(f">{verdict}</h2>") < page.index("<h2>Run</h2>") < page.index("Required, not passed (1)")
        assert "29 of 30 required (suite token): OpenPAYGO Token certification" in page
        assert VIRTUAL_DUT_KEY not in page and "key=***" in page
        assert (
            title_text(rec, [VIRTUAL_DUT_KEY])
            == f"{verdict} - DUT PG1 - station lab-3 - 29 of 30 required (suite token)"
        )
        assert "<th style='text-align:left'>supply at the end</th><td>not switched by this run" in page


def test_the_header_says_where_the_supply_was_left_confirmed_or_not():
    from bench.record.model import DutRecord, RunRecord, SafeStateRecord, StationRecord, utc_now
    from bench.report.header import verdict_html

    rec = RunRecord(
        "r",
        "running",
        utc_now(),
        "0.1.0",
        "3.11",
        "9",
        StationRecord("s", "", "h", "", None, None, False, []),
        DutRecord("reference", "PG1", "", ""),
    )
    assert "supply at the end</th><td>not known yet: the run has not ended" in verdict_html(rec)
    rec.verdict, rec.verdict_reason = "BENCH ERROR", "supply NOT confirmed off: ..."
    rec.safe_state = SafeStateRecord("off", False, 12.0, "on", "PSU at X: output still at 12.000 V", utc_now())
    assert (
        "supply at the end</th><td>supply NOT confirmed off: PSU at X: output still at 12.000 V</td>"
        in verdict_html(rec)
    )
    rec.safe_state = SafeStateRecord("unchanged", None, None, None, "left as the run left it", utc_now())
    assert "supply at the end</th><td>supply left as the run left it</td>" in verdict_html(rec)


@background.scenario
def failing_run(tmp: Path):
    return run_with_report(tmp, "test_token_state_survives_power_cycle", "--sim-fault", "count_not_persisted")


def test_a_failed_test_leads_with_expected_against_seen(request):
    """The DUT's state against the model's, and the test's line, above the traceback; the
    verdict FAILED in the title."""
    tmp_path, results, output = background.result(request, failing_run)
    report = tmp_path / "run" / "report.html"
    assert [r.outcome for r in results.values()] == ["failed"], output
    assert page_title(report).startswith("FAILED - DUT SIM000001 - station virtual - 0 of "), page_title(report)
    ((nodeid, runs),) = report_tests(report).items()
    (run,) = [r for r in runs if r["result"] == "Failed"]
    extras = [e for e in run["extras"] if e.get("format_type") == "html"]
    first = html.unescape(extras[0]["content"])  # shown first: above the measurements and the traceback
    assert first.startswith("<div class='paygo-failure'><h3>Expected against seen</h3>"), first[:200]
    assert "AssertionError: after the power cycle: DUT token count 0, model 4" in first, first
    assert re.search(
        r"at tests/device/test_persistence\.py:\d+ \(raised at bench/station/token_session\.py:\d+\)", first
    )
    assert "class='measurements'" in extras[1]["content"] and "check_status" in run["log"], run["log"][:300]


def test_the_failure_box_puts_each_limit_beside_what_was_measured():
    from bench.measure.measurement import Measurement
    from bench.report.html import Failure, failure_html, measurements_html

    out = Measurement("rtc_drift", 2263.607, "ppm", -685.0, 685.0)
    box = failure_html([Failure("call", "Failed: drift <x>", "at t.py:3")], [out])
    assert "<tr><td>rtc_drift</td><td>[-685, 685] ppm</td><td>2263.6 ppm</td></tr>" in box
    assert "<b>failed</b> at t.py:3<pre class='paygo-why'>Failed: drift &lt;x&gt;</pre>" in box
    assert failure_html([], []) == ""
    table = measurements_html([out, Measurement("seed", 42), Measurement("v", 3.3, "V", 3.0, 3.6)])
    assert ">seed</td><td>42</td><td>(no limit)</td><td style='color:#57606a'>recorded<" in table
    assert ">v</td><td>3.300 V</td><td>[3, 3.6] V</td><td style='color:green'>PASS<" in table
    assert ">2263.6 ppm</td><td>[-685, 685] ppm</td><td style='color:red'>FAIL<" in table
