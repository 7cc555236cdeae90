"""pytest-html hooks: each test's evidence in the self-contained report. A failed test first says
what was expected and what was seen (the failing check's message, the measurements out of
limits), then its measurements against limits (a value with no limit shown as recorded, not
passed), its plots (full width, enlarged on click with no JavaScript), and its serial traffic
log, inline and linked to its file under logs/ (a data: URI link is refused by Chromium,
pytest-html issues 128 and 273). The log's lines are cut at REPORT_LINE_LIMIT characters with
their length noted and control bytes escaped: a device's megabyte line stays in its file only."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from bench.secret import Secret, mask, shown

MAX_LOG_CHARS = 200_000
REPORT_LINE_LIMIT = 1000
MAX_FAILURE_CHARS = 4000
NO_LOG = "No log output captured."  # pytest-html's text for a test that printed nothing

# Once per page (the summary): plots enlarge on click through a hidden checkbox, pytest-html's
# empty log box is hidden, the failure box stands out.
REPORT_CSS = """<style>
.paygo-plot{margin:8px 0}
.paygo-plot input{display:none}
.paygo-plot img{width:700px;max-width:100%;cursor:zoom-in;border:1px solid #d0d7de}
.paygo-plot input:checked+img{position:fixed;inset:0;width:100vw;height:100vh;max-width:none;
 object-fit:contain;background:rgba(255,255,255,.97);z-index:1000;cursor:zoom-out;border:0}
.paygo-failure{border:2px solid #cf222e;background:#fff5f5;padding:6px 10px;margin:6px 0}
.paygo-failure pre{white-space:pre-wrap;margin:4px 0}
.paygo-log pre{max-height:400px;overflow:auto;background:#f6f8fa;padding:4px;white-space:pre-wrap}
.logwrapper:not(:has(.log)){display:none}
</style>"""


def log_excerpt(text: str) -> str:
    """The end of a traffic log as the report shows it: each line printable and at most
    REPORT_LINE_LIMIT characters (plus the note of its length), MAX_LOG_CHARS in all."""
    lines = [shown(line, REPORT_LINE_LIMIT) for line in text.splitlines()]
    return "\n".join(lines)[-MAX_LOG_CHARS:]


def outcome_cell(m) -> tuple[str, str]:
    """The outcome column: FAIL, PASS (marginal) or PASS against a limit; `recorded` for a value
    no limit judges (a seed, a sample count): it passed nothing."""
    if m.outcome != "PASS":
        return m.verdict, "red"
    if not m.judged:
        return "recorded", "#57606a"
    return m.verdict, "darkorange" if m.marginal else "green"


def measurements_html(items) -> str:
    rows = []
    for m in items:
        text, colour = outcome_cell(m)
        rows.append(
            f"<tr><td>{html.escape(m.name)}</td><td>{html.escape(m.value_text())}</td>"
            f"<td>{html.escape(m.limits_text())}</td><td style='color:{colour}'>{html.escape(text)}</td></tr>"
        )
    return (
        "<table class='measurements'><tr><th>measurement</th><th>value</th><th>limits</th><th>outcome</th></tr>"
        f"{''.join(rows)}</table>"
    )


@dataclass(frozen=True)
class Failure:
    """One failed phase of a test: its message (the exception as pytest states it) and where."""

    phase: str  # setup | call | teardown
    message: str
    where: str  # the test's line that failed, and where it was raised if elsewhere


def failure_html(failures: Iterable[Failure], out_of_limits: Iterable = ()) -> str:
    """Expected against seen, for the top of a failed test's entry: each measurement out of its
    limits, then each failed phase's message (for the model's checks: the DUT's state against
    the model's); the traceback follows below it."""
    parts = []
    rows = "".join(
        f"<tr><td>{html.escape(m.name)}</td><td>{html.escape(m.limits_text())}</td>"
        f"<td>{html.escape(m.value_text())}</td></tr>"
        for m in out_of_limits
    )
    if rows:
        parts.append(
            "<table class='paygo-out-of-limits'><tr><th>measurement</th><th>expected</th><th>seen</th></tr>"
            f"{rows}</table>"
        )
    for f in failures:
        head = "failed" if f.phase == "call" else f"error in {f.phase}"
        parts.append(
            f"<div><b>{html.escape(head)}</b> {html.escape(f.where)}<pre class='paygo-why'>"
            f"{html.escape(f.message)}</pre></div>"
        )
    if not parts:
        return ""
    return "<div class='paygo-failure'><h3>Expected against seen</h3>" + "".join(parts) + "</div>"


def plot_html(title: str, png: bytes, href: str | None) -> str:
    """A plot inline at full width (the PNG base64 in the page); a click shows it on the whole
    window and the next click puts it back (a hidden checkbox and CSS, no script)."""
    data = base64.b64encode(png).decode("ascii")
    link = f" (<a href='{html.escape(href)}' target='_blank'>file</a>)" if href else ""
    return (
        f"<figure class='paygo-plot'><label title='click to enlarge'><input type='checkbox'>"
        f"<img alt='{html.escape(title)}' src='data:image/png;base64,{data}'></label>"
        f"<figcaption>{html.escape(title)}{link}</figcaption></figure>"
    )


def log_html(whole: str, href: str | None) -> str:
    """The traffic log inline (collapsed; its end when long), with the link to the whole file."""
    text = log_excerpt(whole)
    n, shown_n = len(whole.splitlines()), len(text.splitlines())
    lines = f"{n} lines" if shown_n >= n else f"{n} lines, the last {shown_n} shown"
    link = f", the whole file: <a href='{html.escape(href)}' target='_blank'>{html.escape(href)}</a>" if href else ""
    return (
        f"<details class='paygo-log'><summary>serial traffic log ({lines}{link})</summary>"
        f"<pre>{html.escape(text)}</pre></details>"
    )


def link_from(report_dir: Path | None, path: Path) -> str | None:
    """A link to `path` from the report's folder: relative (the run directory moves as a whole),
    a file: URI where no relative path exists (another drive), None without a report folder."""
    if report_dir is None:
        return None
    try:
        rel = os.path.relpath(path.resolve(), report_dir)
    except ValueError:
        return path.resolve().as_uri()
    return quote(rel.replace(os.sep, "/"))


_FAILURES_KEY = pytest.StashKey[list[Failure]]()


def _failure_of(item: pytest.Item, call: pytest.CallInfo, when: str, secrets) -> Failure:
    """The exception as pytest states it (an assertion's message and its explanation), masked
    and cut; the test's own line that failed, and where in the bench it was raised if elsewhere
    (pytest.fail's own frame is not news)."""
    excinfo = call.excinfo
    assert excinfo is not None
    message = mask(excinfo.exconly(), secrets)
    if len(message) > MAX_FAILURE_CHARS:
        message = message[:MAX_FAILURE_CHARS] + f"... [{len(message)} characters in all]"
    root = item.config.rootpath
    here = [e for e in excinfo.traceback if Path(e.path) == item.path]
    ours = [e for e in excinfo.traceback if Path(e.path).is_relative_to(root)]  # not pytest's own
    last = ours[-1] if ours else None

    def at(entry) -> str:
        p = Path(entry.path)
        return f"{p.relative_to(root) if p.is_relative_to(root) else p}:{entry.lineno + 1}"

    where = f"at {at(here[-1])}" if here else ""
    if last is not None and (not here or last is not here[-1]):
        where += f"{' ' if where else ''}(raised at {at(last)})"
    return Failure(when, message, where)


class HtmlReportPlugin:
    def __init__(
        self,
        log_key,
        measurements_key,
        attachments_key=None,
        header=None,
        title=None,
        report_dir: Path | None = None,
        secrets: Callable[[pytest.Config], Iterable[Secret | str | None]] | None = None,
    ) -> None:
        self.log_key = log_key
        self.measurements_key = measurements_key
        self.attachments_key = attachments_key
        self.header = header  # config -> HTML for the top of the report (bench/report/header.py), or None
        self.title = title  # config -> the page title (the verdict first), or None
        self.report_dir = report_dir  # the folder of report.html: links are relative to it
        self.secrets = secrets  # config -> the rig's secrets, masked in failure messages
        self._report = None  # pytest-html's report data, whose title is rendered when the run ends

    def pytest_html_report_title(self, report) -> None:
        """Asked at session start, before there is a verdict: kept, and titled when the run ends."""
        self._report = report

    def pytest_html_results_summary(self, prefix, summary, postfix, session) -> None:
        if self.title is not None and self._report is not None:
            title = self.title(session.config)
            if title:
                self._report.title = title
        prefix.append(REPORT_CSS)
        if self.header is not None:
            text = self.header(session.config)
            if text:
                prefix.append(text)

    def pytest_html_results_table_html(self, report, data) -> None:
        """No empty "No log output captured." box under every test."""
        if data == [NO_LOG]:
            data.clear()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report = outcome.get_result()
        if report.failed and call.excinfo is not None:
            secrets = self.secrets(item.config) if self.secrets is not None else ()
            item.stash.setdefault(_FAILURES_KEY, []).append(_failure_of(item, call, report.when, secrets))
        if report.when != "teardown":
            return
        import pytest_html

        extras = list(getattr(report, "extras", []))
        m = item.stash.get(self.measurements_key, None)
        failures: list[Failure] = item.stash.get(_FAILURES_KEY, [])
        why = failure_html(failures, m.failed if m is not None else ())
        if why:
            extras.insert(0, pytest_html.extras.html(why))
        if m is not None and m.items:
            extras.append(pytest_html.extras.html(measurements_html(m.items)))
        if self.attachments_key is not None:
            extras.extend(attachment_extras(item.stash.get(self.attachments_key, []), self.report_dir))
        path = item.stash.get(self.log_key, None)
        if path is not None and path.exists():
            href = link_from(self.report_dir, path)
            extras.append(pytest_html.extras.html(log_html(path.read_text(encoding="utf-8", errors="replace"), href)))
            if href is not None:
                extras.append(pytest_html.extras.url(href, name="serial traffic log"))
        report.extras = extras


def attachment_extras(attachments, report_dir: Path | None) -> list:
    """PNGs inline (base64, so the report stays one file), HTML fragments (tables the bench wrote,
    escaped there) inline; other files as links relative to the report."""
    import pytest_html

    out = []
    for att in attachments:
        if not att.path.exists():
            continue
        href = link_from(report_dir, att.path)
        if att.is_image:
            out.append(pytest_html.extras.html(plot_html(att.title, att.path.read_bytes(), href)))
        elif att.is_html_fragment:
            text = att.path.read_text(encoding="utf-8", errors="replace")
            out.append(pytest_html.extras.html(f"<div><b>{html.escape(att.title)}</b>{text}</div>"))
        elif href is not None:
            out.append(pytest_html.extras.url(href, name=f"{att.title}: {href}"))
    return out
