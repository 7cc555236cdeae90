"""Children a self-test stops with SIGINT (Ctrl-C) start with SIGINT at its default action.

A shell running the self-tests in the background (`pytest ... &`, nohup, a CI step) ignores
SIGINT, every child inherits the ignore, and Python then never raises KeyboardInterrupt: the
Ctrl-C tests would fail however right the bench is. A small Python restores the default and
execs the real command (same pid: the test signals the process it started). Not preexec_fn:
that runs Python between fork and exec, unsafe in the threads the background scenarios use."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

RESTORE = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def sigint_default(argv: Sequence[str]) -> list[str]:
    """argv (a `python ...` command: argv[0] is sys.executable) started with SIGINT at its default."""
    assert argv[0] == sys.executable, argv
    if os.name != "posix":
        return list(argv)
    return [sys.executable, "-c", RESTORE, *argv[1:]]
