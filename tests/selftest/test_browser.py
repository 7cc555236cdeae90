"""What the operator sees, in a real browser: headless Chromium (Debian's chromium and
chromedriver, installed by .ci/run) driven through selenium, on a real virtual-rig run.

- The live station page (`paygo-bench run --ui`) during the run: the test running, the PSU, the
  serial lines with the key masked, the state in the first screen; then the verdict, in the first
  screen and the page title.
- That run's report.html: the verdict in the first screen and the title, no console error, every
  link resolves.
Screenshots of both first screens are kept in the test's folder; with PAYGO_SCREENSHOTS=DIR they
are also written there (docs/img/ holds the ones README shows, made this way)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from bench.rig import resolve_rig
from tests.selftest.background import result, scenario
from tests.selftest.waiting import free_port, listening, wait_until

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
VIEWPORT = (1280, 800)
RUN_TESTS = "test_power_cuts or test_random_walk or test_identity"  # a few seconds, the PSU busy, serial traffic
PAGE_UP_S = 8.0  # the page stays up this long after the verdict: it polls once a second
VERDICTS = ("PASSED", "FAILED", "INCOMPLETE", "BENCH ERROR")

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
except ImportError:  # pragma: no cover - the test extra installs it
    webdriver = None  # type: ignore[assignment]


def why_no_browser() -> str | None:
    if webdriver is None:
        return "selenium is not installed (pip install -e '.[test]'): the browser checks did not run"
    if CHROMIUM is None or CHROMEDRIVER is None:
        return (
            "no headless Chromium here (Debian: apt-get install chromium chromium-driver; .ci/run does): "
            "the browser checks did not run"
        )
    return None


def new_browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture(scope="module")
def browser():
    why = why_no_browser()
    if why is not None:
        pytest.skip(why)
    driver = new_browser()
    yield driver
    driver.quit()


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def in_first_screen(driver, css: str) -> bool:
    """The element is displayed and wholly inside the window as the page opens (no scrolling)."""
    return bool(
        driver.execute_script(
            "var e=document.querySelector(arguments[0]); if(!e) return false;"
            "var r=e.getBoundingClientRect(); return r.width>0 && r.height>0 && r.top>=0 && r.bottom<=window.innerHeight;",
            css,
        )
    )


def keep_screenshot(driver, path: Path) -> None:
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000, "a screenshot of a rendered page, not a blank one"
    out = os.environ.get("PAYGO_SCREENSHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(out) / path.name)


def links(driver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('a[href]')].map(a => a.href)")


@scenario
def watched_run(out: Path) -> dict:
    """A virtual-rig run with the live page, watched in the browser while it runs, then its
    report.html and the history page of its folder: what was seen (the tests assert)."""
    why = why_no_browser()
    if why is not None:
        return {"skip": why}
    browser = new_browser()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "run", "--ui", "--ui-port", str(port), "--ui-hold", str(PAGE_UP_S)]
        + ["--report-dir", str(out / "run"), "-k", RUN_TESTS],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: dict = {"dir": out}
    try:
        wait_until(lambda: listening("127.0.0.1", port), 60, "the live page listening")
        browser.get(f"http://127.0.0.1:{port}/")
        badge = lambda: browser.find_element("id", "verdict").text  # noqa: E731
        wait_until(lambda: "test_" in browser.find_element("id", "current").text, 60, "a test shown as running")
        wait_until(lambda: " V " in browser.find_element("id", "psu").text, 30, "a PSU reading")
        seen["running_badge"] = badge()
        seen["running_first_screen"] = in_first_screen(browser, "#verdict") and in_first_screen(browser, "#current")
        seen["serial"] = browser.find_element("id", "serial").text
        keep_screenshot(browser, out / "live-page.png")
        wait_until(lambda: badge() in VERDICTS, 240, "the verdict on the live page")
        seen["final_badge"] = badge()
        seen["final_first_screen"] = in_first_screen(browser, "#verdict")
        seen["final_title"] = browser.title
        seen["console"] = console_errors(browser)
        output, _ = proc.communicate(timeout=PAGE_UP_S + 60)
        seen["output"] = output
        seen["code"] = proc.returncode
        seen["report"] = look_at_report(browser, out / "run" / "report.html", seen["final_badge"])
        keep_screenshot(browser, out / "report.png")
        seen["history"] = look_at_history(browser, out, seen["final_badge"])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        browser.quit()
    return seen


def look_at_report(browser, report: Path, verdict: str) -> dict:
    browser.get(report.as_uri())
    heading = browser.execute_script(
        "var h=[...document.querySelectorAll('h1,h2,.verdict,[class*=verdict]')]"
        ".find(e=>e.textContent.includes(arguments[0])); if(!h) return null;"
        "var r=h.getBoundingClientRect(); return [r.top, r.bottom, window.innerHeight, h.textContent];",
        verdict,
    )
    hrefs = links(browser)
    fragments_found = {
        href: browser.execute_script(
            "return !!document.getElementById(arguments[0]) || !!document.getElementsByName(arguments[0]).length",
            urlparse(href).fragment,
        )
        for href in hrefs
        if urlparse(href).fragment
    }
    return {
        "path": report,
        "title": browser.title,
        "heading": heading,
        "console": console_errors(browser),
        "links": hrefs,
        "fragments_found": fragments_found,
    }


def look_at_history(browser, reports: Path, verdict: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.cli", "history", "--reports", str(reports)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        return {"error": done.stderr}
    browser.get((reports / "history" / "index.html").as_uri())
    cell = browser.execute_script(
        "var c=[...document.querySelectorAll('td,th,h1,h2,span,div')].find(e=>e.children.length===0 &&"
        " e.textContent.trim()===arguments[0]); if(!c) return null; var r=c.getBoundingClientRect();"
        "return [r.top, r.bottom, window.innerHeight];",
        verdict,
    )
    return {"cell": cell, "console": console_errors(browser), "links": links(browser)}


@pytest.fixture
def live_run(request):
    seen = result(request, watched_run)
    if "skip" in seen:
        pytest.skip(seen["skip"])
    return seen


def test_the_live_page_shows_the_run_as_it_goes(live_run):
    assert live_run["running_badge"] == "RUNNING"
    assert live_run["running_first_screen"], "the state and the running test must be in the first screen"
    serial = live_run["serial"]
    assert re.search(r"\b(TX|RX)\b", serial), serial[-500:]
    key = resolve_rig(None).dut.secret_key.reveal()
    assert key.lower() not in serial.lower()
    assert live_run["console"] == []


def test_the_live_page_ends_with_the_runs_verdict(live_run):
    said = re.findall(r"^paygo-bench: (PASSED|FAILED|INCOMPLETE|BENCH ERROR)", live_run["output"], re.M)
    assert said, live_run["output"][-2000:]
    assert live_run["final_badge"] == said[-1]  # the page says what the terminal says
    assert live_run["final_first_screen"]
    assert live_run["final_title"].startswith(said[-1])


def test_the_report_leads_with_the_verdict_and_every_link_resolves(live_run):
    seen, verdict = live_run["report"], live_run["final_badge"]
    assert seen["title"].startswith(verdict), seen["title"]
    assert seen["heading"] is not None, "no heading carries the verdict"
    top, bottom, height, _text = seen["heading"]
    assert 0 <= top and bottom <= height, f"the verdict is not in the first screen: {seen['heading']}"
    assert seen["console"] == []
    assert seen["links"], "the report links its evidence"
    assert_links_resolve(seen["links"], seen["path"], seen["fragments_found"])


def assert_links_resolve(hrefs: list[str], page: Path, fragments_found: dict | None = None) -> None:
    for href in hrefs:
        parsed = urlparse(href)
        assert parsed.scheme in ("file", "http", "https"), f"a link Chromium will not open: {href[:80]}"
        if parsed.scheme == "file":
            target = Path(unquote(parsed.path))
            assert target.exists(), f"the link {href} points at nothing"
            if parsed.fragment and target == page:
                assert (fragments_found or {}).get(href), f"no anchor for {href}"


def test_the_metrics_servers_page_lists_each_device(browser, tmp_path):
    """`paygo-bench serve --ui-port`: each device's captured requests and the tokens served."""
    from bench.fixtures.metrics_server import http_request
    from tests.selftest.test_server_front import serve
    from tests.selftest.test_server_process import START_DEADLINE_S, read_line

    port = free_port()
    proc = serve(tmp_path, "--auth", "none", "--ui-port", str(port))
    try:
        server_line = read_line(proc, time.monotonic() + START_DEADLINE_S)
        page_line = read_line(proc, time.monotonic() + START_DEADLINE_S)
        base = re.search(r"(http://\S+:\d+)/", server_line).group(1)
        assert f"http://127.0.0.1:{port}/" in page_line, page_line
        for rc in (1, 2):
            body = f'{{"sn":"PAGE1","rc":{rc},"d":{{"x":"1"}}}}'.encode()
            http_request(base + "/dd", "POST", body, {"Content-Type": "application/json"})
        http_request(base + "/dd", "POST", b"{", {"Content-Type": "application/json"})  # refused, no serial
        browser.get(f"http://127.0.0.1:{port}/")
        wait_until(lambda: "PAGE1" in browser.find_element("id", "metrics").text, 10, "the device listed")
        row = browser.find_element("id", "metrics").text
        assert re.search(r"PAGE1\s+2\s+2\s+0", row), row
        assert browser.find_element("id", "verdict").text == "SERVING"
        assert console_errors(browser) == []
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_the_history_page_shows_the_last_verdict_and_every_link_resolves(live_run):
    """`paygo-bench history` over the run's folder: its index.html in the browser."""
    seen = live_run["history"]
    assert "error" not in seen, seen
    assert seen["cell"] is not None, f"the run's verdict {live_run['final_badge']} is not on the history page"
    top, bottom, height = seen["cell"]
    assert 0 <= top and bottom <= height, f"the last verdict is not in the first screen: {seen['cell']}"
    assert seen["console"] == []
    assert_links_resolve(seen["links"], live_run["dir"] / "history" / "index.html")
