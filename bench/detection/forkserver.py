"""Child pytest runs forked from a server that has already imported pytest and the libraries
every device-suite run loads.

A self-test session starts a hundred and more device-suite runs (the detection matrix, the
scenarios). A new interpreter spends about 0.4 CPU-s of its 0.75 importing the same libraries
(pytest, pyvisa, Flask, pyserial, cbor2, ...); on a 2-core machine that is a tenth of the
session. multiprocessing's "forkserver" start method starts one fresh interpreter (no threads,
nothing of the calling session) that imports them once and forks a child per run. The child then
becomes what `python -m pytest ARGS` in the run's folder would be: its working directory first on
sys.path, its environment, argv, stdout and stderr (to files), its exit code, atexit handlers run.

The bench's own modules and the suite's are not preloaded: each run imports them from the
checkout it runs, where pytest rewrites their asserts as usual (a module imported before pytest
starts cannot be rewritten). Only where `fork` without `exec` is safe (Linux); elsewhere, or
with PAYGO_SELFTEST_FORKSERVER=0, runs are plain subprocesses (bench/detection/runner.py).
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ENV = "PAYGO_SELFTEST_FORKSERVER"
CHILD = Path(__file__).with_name("forked_child.py")

# Third-party and standard-library modules a device-suite run imports, heaviest first. None of
# them is a pytest plugin that pytest would want to rewrite (pytest_html is left to the run).
PRELOAD = (
    "pytest",
    "_pytest.python",
    "_pytest.junitxml",
    "_pytest.terminal",
    "_pytest.fixtures",
    "pyvisa",
    "pyvisa_py",
    "pyvisa_py.tcpip",
    "flask",
    "werkzeug.serving",
    "waitress",
    "jinja2",
    "jwt",
    "serial",
    "cbor2",
    "openpaygo",
    "sqlite3",
    "http.client",
    "tomllib",
    "xml.etree.ElementTree",
)

_lock = threading.Lock()
_context: multiprocessing.context.ForkServerContext | None = None


def available() -> bool:
    """Whether runs are forked (Linux, not turned off by PAYGO_SELFTEST_FORKSERVER=0)."""
    return sys.platform == "linux" and os.environ.get(ENV, "1") != "0"


def _server() -> multiprocessing.context.ForkServerContext:
    global _context
    with _lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(list(PRELOAD))
            _context = ctx
        return _context


@dataclass(frozen=True)
class Finished:
    """What subprocess.run(..., capture_output=True, text=True) would have given."""

    returncode: int
    stdout: str
    stderr: str


def run_pytest(args: Sequence[str], cwd: Path, env: Mapping[str, str], timeout_s: float, nice: int = 0) -> Finished:
    """`python -m pytest ARGS` in cwd with env, forked from the server, at `nice` (added to the
    server's niceness; its own child processes inherit it); its stdout and stderr returned.
    subprocess.TimeoutExpired, the child killed, if it outlives timeout_s."""
    with tempfile.TemporaryDirectory(prefix="paygo-forked-") as folder:  # not in the run's folders
        return _run(args, cwd, env, timeout_s, nice, Path(folder) / "stdout.txt", Path(folder) / "stderr.txt")


def _run(
    args: Sequence[str], cwd: Path, env: Mapping[str, str], timeout_s: float, nice: int, out: Path, err: Path
) -> Finished:
    # The child runs forked_child.py by path: importing it as bench.detection.forked_child would
    # import the bench before pytest starts, and pytest could no longer rewrite its asserts.
    child = _server().Process(
        target=runpy.run_path,
        args=(str(CHILD),),
        kwargs={
            "init_globals": {
                "PAYGO_CHILD": {
                    "args": list(args),
                    "cwd": str(cwd),
                    "environ": dict(env),
                    "out": str(out),
                    "err": str(err),
                    "nice": nice,
                    "session": os.getpid(),
                }
            },
            "run_name": "__paygo_forked_child__",
        },
        name="device-suite",
    )
    child.start()
    child.join(timeout_s)
    if child.is_alive():
        child.kill()
        child.join()
        raise subprocess.TimeoutExpired(["pytest", *args], timeout_s)
    code = child.exitcode
    return Finished(
        -1 if code is None else code,
        out.read_text(encoding="utf-8", errors="replace") if out.exists() else "",
        err.read_text(encoding="utf-8", errors="replace") if err.exists() else "",
    )
