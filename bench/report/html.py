"""pytest-html hooks: each test's measurements against limits and its serial traffic log, inline
in the self-contained report. The log's lines are cut at REPORT_LINE_LIMIT characters with their
length noted and control bytes escaped: a device's megabyte line stays in its log file only."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pytest

from bench.secret import shown

MAX_LOG_CHARS = 200_000
REPORT_LINE_LIMIT = 1000


def log_excerpt(text: str) -> str:
    """The end of a traffic log as the report shows it: each line printable and at most
    REPORT_LINE_LIMIT characters (plus the note of its length), MAX_LOG_CHARS in all."""
    lines = [shown(line, REPORT_LINE_LIMIT) for line in text.splitlines()]
    return "\n".join(lines)[-MAX_LOG_CHARS:]


def _colour(m) -> str:
    if m.outcome != "PASS":
        return "red"
    return "darkorange" if m.marginal else "green"


def measurements_html(items) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(m.name)}</td><td>{html.escape(m.value_text())}</td>"
        f"<td>{html.escape(m.limits_text())}</td>"
        f"<td style='color:{_colour(m)}'>{html.escape(m.verdict)}</td></tr>"
        for m in items
    )
    return (
        "<table class='measurements'><tr><th>measurement</th><th>value</th><th>limits</th><th>outcome</th></tr>"
        f"{rows}</table>"
    )


class HtmlReportPlugin:
    def __init__(self, log_key, measurements_key, attachments_key=None, header=None, title=None) -> None:
        self.log_key = log_key
        self.measurements_key = measurements_key
        self.attachments_key = attachments_key
        self.header = header  # config -> HTML for the top of the report (bench/report/header.py), or None
        self.title = title  # config -> the page title (the verdict first), or None
        self._report = None  # pytest-html's report data, whose title is rendered when the run ends

    def pytest_html_report_title(self, report) -> None:
        """Asked at session start, before there is a verdict: kept, and titled when the run ends."""
        self._report = report

    def pytest_html_results_summary(self, prefix, summary, postfix, session) -> None:
        if self.title is not None and self._report is not None:
            title = self.title(session.config)
            if title:
                self._report.title = title
        if self.header is not None:
            text = self.header(session.config)
            if text:
                prefix.append(text)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report = outcome.get_result()
        if report.when != "teardown":
            return
        import pytest_html

        extras = list(getattr(report, "extras", []))
        m = item.stash.get(self.measurements_key, None)
        if m is not None and m.items:
            extras.append(pytest_html.extras.html(measurements_html(m.items)))
        path = item.stash.get(self.log_key, None)
        if path is not None and path.exists():
            text = log_excerpt(path.read_text(encoding="utf-8", errors="replace"))
            extras.append(pytest_html.extras.text(text, name="serial traffic log"))
        if self.attachments_key is not None:
            extras.extend(attachment_extras(item.stash.get(self.attachments_key, []), path))
        report.extras = extras


def attachment_extras(attachments, log_path: Path | None) -> list:
    """PNGs inline (base64, so the report stays one file), HTML fragments (tables the bench wrote,
    escaped there) inline; other files as links relative to the report, which sits in the run
    directory above logs/."""
    import pytest_html

    out = []
    for att in attachments:
        if not att.path.exists():
            continue
        if att.is_image:
            out.append(pytest_html.extras.png(base64.b64encode(att.path.read_bytes()).decode("ascii"), name=att.title))
        elif att.is_html_fragment:
            text = att.path.read_text(encoding="utf-8", errors="replace")
            out.append(pytest_html.extras.html(f"<div><b>{html.escape(att.title)}</b>{text}</div>"))
        else:
            rel = f"{att.path.parent.name}/{att.path.name}" if att.path.parent.name == "logs" else att.path.name
            out.append(pytest_html.extras.url(rel, name=f"{att.title}: {rel}"))
    return out
