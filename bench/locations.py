"""Where the bench's own files are, installed from a wheel or run from a checkout.

- the device suite: the repository's tests/device/, installed as `bench.device_suite`
  (bench.suites.DEVICE_SUITE);
- a checkout: the repository root, when the bench runs from one (editable install): the
  self-tests and the detection matrix need it; a wheel has none;
- the reports folder: the checkout's reports/, else reports/ in the current directory, or
  $PAYGO_BENCH_REPORTS;
- a run's directory, reports/<run-id>/, made exclusively for one run (new_run_dir), and the one
  line that says a file operation the environment refused (cannot, storage_failure).
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPORTS_ENV_VAR = "PAYGO_BENCH_REPORTS"


def checkout_root() -> Path | None:
    """The repository the bench runs from (it holds tests/device and conftest.py), or None."""
    here = Path(__file__).resolve().parents[1]
    for candidate in (here, Path.cwd()):
        if (candidate / "tests" / "device").is_dir() and (candidate / "conftest.py").is_file():
            return candidate
    return None


def find_root() -> Path:
    """The checkout, or FileNotFoundError saying a checkout is needed."""
    root = checkout_root()
    if root is None:
        raise FileNotFoundError(
            "cannot find a paygo-bench checkout (tests/device, conftest.py): the self-tests and "
            "the detection matrix run from the repository, not from an installed wheel"
        )
    return root


def reports_root() -> Path:
    """Where runs are written: $PAYGO_BENCH_REPORTS, else the checkout's reports/, else ./reports."""
    if os.environ.get(REPORTS_ENV_VAR):
        return Path(os.environ[REPORTS_ENV_VAR])
    root = checkout_root()
    return (root if root is not None else Path.cwd()) / "reports"


# -- a run's directory ------------------------------------------------------------------------
# reports/<run-id>/ holds one run's files and nothing else: two runs started in the same second
# must not share one (the record overwritten, the logs interleaved, the first run reading the
# second's verdict), so it is made exclusively, and claimed with the pid of the process running
# the run (`paygo-bench run` makes it, then the pytest session it starts in the same process
# takes it over).

OWNER_FILE = ".paygo-run.pid"  # the pid of the process running the run (hidden: not a run file)
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_SAME_SECOND = 1000  # runs of one station started in one second (a guard against a loop)


class RunDirError(Exception):
    """The run directory cannot be made: the environment's failure (a read-only folder, a full
    disk); one line naming the directory and the errno."""


class RunDirInUse(RunDirError):
    """`--report-dir` names a directory that already holds files (another run's): the user's
    mistake, refused before anything starts."""


def cannot(action: str, path: Path | str, error: OSError) -> str:
    """One line for a file operation the environment refused: what, where and the errno,
    e.g. `cannot write reports/x/record.json: [Errno 28] No space left on device`."""
    why = f"[Errno {error.errno}] {error.strerror}" if error.errno is not None else str(error) or type(error).__name__
    return f"cannot {action} {path}: {why}"


# What the storage answers when it refuses a write: never the device's doing (a serial port that
# fails says EIO, ENXIO, ...). SQLite (the device ledger) says it in words, without an errno.
STORAGE_ERRNOS = frozenset(
    e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG, errno.EROFS) if e is not None
)
SQLITE_STORAGE = ("database or disk is full", "disk I/O error", "readonly database")


def storage_failure(error: BaseException, database: Path | str | None = None) -> str | None:
    """One line when `error` is the storage refusing a write (a full disk, a quota, a read-only
    folder), else None. An SQLite error names neither file nor errno: `database`, the file the
    run's SQLite writes go to (the device ledger), is named, and its folder asked for the errno.
    A group of errors (several teardowns failing at once) is one when any of its errors is."""
    if isinstance(error, BaseExceptionGroup):
        return next(filter(None, (storage_failure(e, database) for e in error.exceptions)), None)
    if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
        return cannot("write", error.filename or "a file of the run", error)
    if isinstance(error, sqlite3.OperationalError) and any(m in str(error) for m in SQLITE_STORAGE):
        if database is None:
            return f"cannot write an SQLite database: {error}"
        probe = probe_write(Path(database).parent)
        return (cannot("write", database, probe) if probe else f"cannot write {database}") + f" (SQLite: {error})"
    return None


def probe_write(folder: Path) -> OSError | None:
    """What the storage answers a write in `folder` now (a temporary file, removed): the errno
    behind an error reported without one; None if the write goes through."""
    try:
        fd, name = tempfile.mkstemp(prefix=".paygo-probe-", dir=folder)
    except OSError as e:
        return e
    try:
        os.write(fd, bytes(4096))
        os.fsync(fd)
    except OSError as e:
        return e
    finally:
        os.close(fd)
        try:
            os.unlink(name)
        except OSError:
            pass
    return None


def run_id(station_id: str, when: datetime | None = None) -> str:
    """`<UTC start>-<station>`, e.g. `20261205T225059Z-virtual`: sorts by time, says where."""
    stamp = (when or datetime.now(UTC)).astimezone(UTC).strftime(STAMP_FORMAT)
    return f"{stamp}-{re.sub(r'[^A-Za-z0-9_.-]', '_', station_id)}"


def new_run_dir(
    report_dir: Path | None, root: Path, station_id: str, when: datetime | None = None, claim: bool = True
) -> Path:
    """The run's directory, made and claimed for this process: the one named (`--report-dir`,
    new or empty), else a new `<root>/<run id>`; the n-th run of a station started in the same
    second is `<run id>+n`. RunDirInUse for a named directory holding files, RunDirError when
    the folder cannot be written. `claim=False` makes a new one empty, for a child process to
    claim (the stations of a lab run, bench/lab)."""
    if report_dir is not None:
        check_report_dir(report_dir)
        _make(report_dir, exclusive=False)
        _claim(report_dir)
        return report_dir
    base = run_id(station_id, when)
    _make(root, exclusive=False)
    for n in range(1, MAX_SAME_SECOND + 1):
        path = root / (base if n == 1 else f"{base}+{n}")
        if _make(path, exclusive=True):
            if claim:
                _claim(path)
            return path
    raise RunDirError(f"cannot create a run directory in {root}: {MAX_SAME_SECOND} runs named {base} already")


class RunPlace:
    """Where a run's files go, made when the run first needs it (a pytest session that never uses
    the rig leaves no empty run directory behind): the directory named, else a new one in root."""

    def __init__(self, report_dir: Path | None, root: Path, station_id: str) -> None:
        self.report_dir = report_dir
        self.root = root
        self.station_id = station_id
        self.path: Path | None = None
        self.error: str | None = None  # why it could not be made (a read-only folder, a full disk)

    @property
    def name(self) -> str:
        """The run id: the directory's name, or the one it will have."""
        return (self.path or self.report_dir or Path(run_id(self.station_id))).name

    def make(self) -> Path:
        """The run directory, made and claimed on the first call; RunDirError (one line) if it
        cannot be, on this call and every later one."""
        if self.path is None:
            if self.error is not None:
                raise RunDirError(self.error)
            try:
                self.path = new_run_dir(self.report_dir, self.root, self.station_id)
            except RunDirError as e:
                self.error = str(e)
                raise
        return self.path


def check_report_dir(path: Path) -> None:
    """RunDirInUse unless `path` is new, empty, or this process's own run directory."""
    if path.exists() and not path.is_dir():
        raise RunDirInUse(f"--report-dir {path}: it is a file, not a directory; name a new or empty directory")
    try:
        names = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    except OSError as e:
        raise RunDirError(cannot("read the run directory", path, e)) from None
    if names == [OWNER_FILE]:
        owner = _owner(path)
        if owner == os.getpid():
            return
        raise RunDirInUse(f"--report-dir {path} is in use by another run (pid {owner}); name another directory")
    names = sorted((n for n in names if n != OWNER_FILE), key=lambda n: (n != "record.json", n))  # a run's first
    if names:
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise RunDirInUse(
            f"--report-dir {path} already holds files ({shown}): another run's directory is never "
            "written over; name a new or empty directory"
        )


def _make(path: Path, exclusive: bool) -> bool:
    """mkdir; False when `exclusive` and it exists already."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(exist_ok=not exclusive)
    except FileExistsError:
        if exclusive:
            return False
        raise RunDirInUse(
            f"--report-dir {path}: it is a file, not a directory; name a new or empty directory"
        ) from None
    except OSError as e:
        raise RunDirError(cannot("create the run directory", path, e)) from None
    return True


def _claim(path: Path) -> None:
    """Write this process's pid in the directory, exclusively: of two runs given the same new
    directory at the same moment, one gets it and the other is refused."""
    owner = path / OWNER_FILE
    try:
        fd = os.open(owner, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        pid = _owner(path)
        if pid == os.getpid():
            return
        raise RunDirInUse(f"--report-dir {path} is in use by another run (pid {pid}); name another directory") from None
    except OSError as e:
        raise RunDirError(cannot("write", owner, e)) from None
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")
    except OSError as e:  # a full disk: the file is created, its bytes are not
        owner.unlink(missing_ok=True)
        raise RunDirError(cannot("write", owner, e)) from None


def _owner(path: Path) -> int | None:
    try:
        return int((path / OWNER_FILE).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
