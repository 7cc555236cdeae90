"""The virtual device's state folder for one run (`paygo-sim-*` in the temporary directory).

It holds the simulated EEPROM, and so the device's secret key in clear. A run removes it when it
ends; a run killed outright (SIGKILL, power loss, OOM) cannot, so the folder names the processes
that use it (the bench and its simulator, one pid a line, in `owners.pid`), and every virtual
rig's start removes the folders whose processes are all gone. A folder without that file (made by
hand, by another tool, by an older bench) is left alone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PREFIX = "paygo-sim-"
OWNERS_FILE = "owners.pid"


class SimStateDir:
    """A run's state folder: its path, and the processes that use it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def add_owner(self, pid: int) -> None:
        with (self.path / OWNERS_FILE).open("a", encoding="ascii") as f:
            f.write(f"{pid}\n")


@contextmanager
def sim_state_dir(tmp: Path | None = None) -> Iterator[SimStateDir]:
    """A new state folder owned by this process, removed at the end; stale ones removed first."""
    remove_stale(tmp)
    state = SimStateDir(Path(tempfile.mkdtemp(prefix=PREFIX, dir=tmp)))
    try:
        state.add_owner(os.getpid())
        yield state
    finally:
        shutil.rmtree(state.path, ignore_errors=True)


def remove_stale(tmp: Path | None = None) -> list[Path]:
    """Remove the state folders (this user's) whose every owner process is gone; return them."""
    removed = []
    for path in sorted(Path(tmp or tempfile.gettempdir()).glob(f"{PREFIX}*")):
        pids = owners(path)
        if not pids or any(alive(pid) for pid in pids):
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    return removed


def owners(path: Path) -> list[int]:
    """The pids a state folder names; none if it names none, is not this user's or unreadable."""
    try:
        if hasattr(os, "getuid") and path.stat().st_uid != os.getuid():
            return []
        return [int(line) for line in (path / OWNERS_FILE).read_text(encoding="ascii").split()]
    except (OSError, ValueError):
        return []


def alive(pid: int) -> bool:
    """Whether a process runs as `pid`. Where that cannot be asked safely (Windows: os.kill ends
    the process), every owner counts as alive and nothing is removed."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:  # a zombie (killed, not yet reaped by its parent) is gone too
        state = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"
