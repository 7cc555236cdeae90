"""Run by path (runpy.run_path) in a child forked from the device-suite fork server
(bench/detection/forkserver.py), never imported: it becomes `python -m pytest ARGS` in CWD with
ENVIRON, stdout and stderr to the files OUT and ERR, and exits with pytest's code without
returning to multiprocessing. Its parameters come as the global PAYGO_CHILD (run_path's
init_globals): args, cwd, environ, out, err, nice, session (the pid of the process that asked)."""

import atexit
import os
import sys
import traceback
from pathlib import Path

given = globals()["PAYGO_CHILD"]
ARGS: list[str] = given["args"]
CWD: str = given["cwd"]
ENVIRON: dict[str, str] = given["environ"]
OUT: str = given["out"]
ERR: str = given["err"]
NICE: int = given["nice"]
SESSION: int = given["session"]
code = 1


def _end_with_the_session(session: int) -> None:
    """SIGTERM this run (which stops it as Ctrl-C would, the supply left safe) once the session
    that asked for it is gone, killed say: an orphaned run would go on to its time limit, on a
    simulator that may be gone, and a nightly machine would collect them. The fork server cannot
    tell: every child it forks holds its keep-alive pipe, so it outlives the session as long as
    they do. Linux's pidfd of the session, watched from a thread."""
    import select
    import signal
    import threading

    try:
        fd = os.pidfd_open(session)
    except ProcessLookupError:
        os.kill(os.getpid(), signal.SIGTERM)
        return
    except (AttributeError, OSError):  # no pidfd (Linux before 5.3): the time limit still holds
        return

    def watch() -> None:
        select.select([fd], [], [])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="session-watch", daemon=True).start()


try:
    _end_with_the_session(SESSION)
    for fd, path in ((1, OUT), (2, ERR)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    if NICE:
        os.nice(NICE)
    os.chdir(CWD)
    os.environ.clear()
    os.environ.update(ENVIRON)
    sys.pycache_prefix = ENVIRON.get("PYTHONPYCACHEPREFIX") or None
    sys.dont_write_bytecode = bool(ENVIRON.get("PYTHONDONTWRITEBYTECODE"))
    sys.path.insert(0, CWD)  # what `python -m` puts first
    import pytest

    sys.argv = [str(Path(pytest.__file__).with_name("__main__.py")), *ARGS]
    code = int(pytest.main(ARGS))
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else 1
except BaseException:  # the child's last words go to its stderr, as python's would
    traceback.print_exc()
    code = 1
finally:
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
