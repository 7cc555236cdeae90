"""Start the virtual rig in its own process, from the host side, and learn its endpoints.

The simulator runs as a separate process so that the bench reaches it only as it would reach
hardware: a serial port path and a VISA resource string.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from typing import IO

from bench.rig import Rig


class SimStartError(RuntimeError):
    pass


@dataclass
class VirtualRigProcess:
    port: str
    visa: str
    channel: int
    process: subprocess.Popen[str]
    stderr: IO[str]  # the file the simulator's stderr goes to

    def error_output(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)
        for stream in (self.process.stdin, self.process.stdout, self.stderr):
            if stream:
                stream.close()


def start_virtual_rig(options: dict, timeout_s: float = 15.0) -> VirtualRigProcess:
    # stderr goes to a file: a pipe nobody reads could fill and stall the simulator.
    errors = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.sim", "--watch-stdin", "--options", json.dumps(options)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
        # Its own session: a Ctrl-C at the terminal interrupts the bench, which then puts the PSU
        # in its safe state and stops the simulator; the simulator must not die first.
        start_new_session=(os.name == "posix"),
        creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
    )
    result: dict = {}
    assert proc.stdout is not None and proc.stdin is not None  # both are pipes (PIPE above)
    stdout = proc.stdout
    reader = threading.Thread(target=lambda: result.update(line=stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    line = result.get("line", "")
    try:
        ready = json.loads(line) if line else {}
    except json.JSONDecodeError:
        ready = {}
    if ready.get("event") != "ready":
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        proc.stdin.close()
        proc.stdout.close()
        errors.seek(0)
        err = errors.read().strip()
        last = err.splitlines()[-1] if err else f"no ready line within {timeout_s:.0f} s"
        raise SimStartError(f"virtual rig did not start: {last}")
    return VirtualRigProcess(ready["port"], ready["visa"], ready["channel"], proc, errors)


def sim_options(rig: Rig, state_dir: str) -> dict:
    """The simulator's options for this rig; its device lives in the rig's sim.state_dir when
    the rig gives one, else in state_dir (a directory for this run only)."""
    s = rig.sim
    return {
        "faults": list(s.faults),
        "rtc_drift_ppm": s.rtc_drift_ppm,
        "psu_decay_s": s.psu_decay_s,
        "link": s.link,
        "brownout_v": s.brownout_v,
        "nvm_page_write_ms": s.nvm_page_write_ms,
        "rtc_subsecond": s.rtc_subsecond,
        "metrics_mode": s.metrics_mode,
        "metrics_period_s": s.metrics_period_s,
        "metrics_sample_s": s.metrics_sample_s,
        "metrics_encoding": s.metrics_encoding,
        "metrics_reply_timeout_s": s.metrics_reply_timeout_s,
        "channel": rig.psu.channel,
        "state_dir": s.state_dir or state_dir,
        "firmware": rig.dut.adapter,  # the simulated device speaks the protocol the rig's adapter expects
        "hide_capabilities": list(s.hide_capabilities),
        "lockout_unit_s": s.lockout_unit_s,
        "hdk_fixed": s.hdk_fixed,
        "sync_keeps_higher_count": s.sync_keeps_higher_count,
        "extended_as_time": s.extended_as_time,
        "extended_only": s.extended_only,
        # where the build's HTTPS CA and JWT secret are, never the secret: options are a command line
        "metrics_ca_file": s.metrics_ca_file,
        "metrics_jwt_secret_file": s.metrics_jwt_secret_file,
        "metrics_jwt_secret_env": s.metrics_jwt_secret_env,
    }
