"""Root conftest: registers the bench's fixtures (one module per resource) and report hooks."""

from __future__ import annotations

import pytest

pytest_plugins = [
    "fixtures.suite",
    "fixtures.rig",
    "fixtures.health",
    "fixtures.virtual_rig",
    "fixtures.psu",
    "fixtures.attachments",
    "fixtures.power",
    "fixtures.dut",
    "fixtures.measure",
    "fixtures.tokens",
    "fixtures.metrics_server",
    "fixtures.metrics_device",
    "fixtures.record",
]


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("html"):
        from bench.report.html import HtmlReportPlugin, bench_version
        from fixtures.attachments import ATTACHMENTS_KEY
        from fixtures.dut import LOG_PATH_KEY
        from fixtures.measure import MEASUREMENTS_KEY
        from fixtures.rig import RIG_KEY

        config.pluginmanager.register(
            HtmlReportPlugin(LOG_PATH_KEY, MEASUREMENTS_KEY, ATTACHMENTS_KEY, header=_run_header, title=_run_title),
            "paygo-html")
        rig = config.stash.get(RIG_KEY, None)
        if rig is not None:
            from pytest_metadata.plugin import metadata_key

            md = config.stash[metadata_key]
            md["Station"] = rig.station.id
            md["Rig file"] = str(rig.source) if rig.source else "built-in virtual rig"
            md["Rig file SHA-256"] = rig.sha256 or "-"
            md["Bench version"] = bench_version()
            md["DUT profile serial"] = rig.dut.serial_number
            if rig.virtual and rig.sim.faults:
                md["Simulator faults"] = ", ".join(rig.sim.faults)


def _run_title(config: pytest.Config) -> str:
    """The page title: the verdict, the DUT, the station and the coverage (fixtures/record.py)."""
    from bench.report.header import title_text
    from fixtures.record import RECORDER_KEY

    recorder = config.stash.get(RECORDER_KEY, None)
    if recorder is None or not recorder.active:
        return ""
    return title_text(recorder.record, recorder.rig.secrets())


def _run_header(config: pytest.Config) -> str:
    """The report's header from the run record (fixtures/record.py) and the not-covered list."""
    from bench.report.header import run_header_html
    from fixtures.dut import NOT_COVERED_KEY
    from fixtures.record import RECORDER_KEY
    from fixtures.rig import RIG_KEY

    recorder = config.stash.get(RECORDER_KEY, None)
    if recorder is None:
        return ""
    rig = config.stash.get(RIG_KEY, None)
    return run_header_html(recorder.record, config.stash.get(NOT_COVERED_KEY, []),
                           rig.secrets() if rig is not None else ())
