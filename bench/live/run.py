"""The live page of one `paygo-bench run --ui`: its server, its plugin, and its end."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from bench.live.page import create_page_app
from bench.live.plugin import LivePlugin
from bench.live.state import LiveState
from bench.rig import Rig
from bench.server.serve import RunningServer, is_loopback, start


class LivePageError(Exception):
    """The page could not be served (its port taken, its host unknown): said before the run."""


@dataclass
class LivePage:
    state: LiveState
    plugin: LivePlugin
    server: RunningServer

    @property
    def url(self) -> str:
        return self.server.url + "/"

    @classmethod
    def start(cls, rig: Rig, suite: str, run_dir: Path, port: int) -> LivePage:
        state = LiveState(
            station=rig.station.id,
            rig="virtual rig" if rig.virtual else str(rig.source),
            dut_serial=rig.dut.serial_number or "",
            suite=suite,
            run_dir=str(run_dir),
        )
        host = rig.station.ui_host
        try:
            server = start(create_page_app(state.snapshot), host, port, threads=2)
        except OSError as e:
            raise LivePageError(
                f"the live page cannot listen on {host}:{port} (station.ui_host, --ui-port): {e}"
            ) from None
        if not is_loopback(host):
            print(f"paygo-bench: the live page listens on {host}: reachable from other machines (station.ui_host)")
        return cls(state, LivePlugin(state, rig.station.ui_psu_poll_s), server)

    def finish(self, verdict: str, line: str, hold_s: float) -> None:
        """Show the verdict, keep serving `hold_s` seconds (an open page polls once a second), stop."""
        self.state.update(verdict=verdict, verdict_line=line, current=None)
        self.plugin.stop()
        try:
            time.sleep(max(hold_s, 0.0))
        finally:
            self.server.stop()
