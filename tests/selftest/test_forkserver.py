"""Device-suite runs forked from a preloaded server (bench/detection/forkserver.py) behave as
`python -m pytest` in their own folder would: in that folder, with the environment given, at the
niceness asked, stdout and stderr kept, pytest's exit code, asserts rewritten, atexit handlers run, and a run
that outlives its time limit killed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.detection import forkserver

pytestmark = pytest.mark.skipif(not forkserver.available(), reason="runs are forked on Linux only")

TESTS = """
import atexit, os, sys
from pathlib import Path

def _bye():
    Path(os.environ["BYE_FILE"]).write_text("atexit ran")

atexit.register(_bye)

def test_env_and_folder():
    print("OUT-MARK", os.environ["RUN_MARK"], "NICE", os.nice(0))
    print("ERR-MARK", file=sys.stderr)
    assert os.getcwd() == os.environ["EXPECT_CWD"]
    assert os.getcwd() in sys.path

def test_rewritten():
    x = 1
    assert x == 2
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "test_sample.py").write_text(TESTS)
    return run


def env_for(folder: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env.update(RUN_MARK="m-42", EXPECT_CWD=str(folder), BYE_FILE=str(folder / "bye.txt"), **extra)
    return env


def test_a_forked_run_is_pytest_in_its_folder(folder: Path):
    args = ["test_sample.py", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-q", "-s"]
    done = forkserver.run_pytest(args, folder, env_for(folder), timeout_s=60, nice=3)
    assert done.returncode == 1, done  # one test fails
    assert f"OUT-MARK m-42 NICE {os.nice(0) + 3}" in done.stdout and "ERR-MARK" in done.stderr
    assert "1 failed, 1 passed" in done.stdout
    assert "assert 1 == 2" in done.stdout, "the test module's asserts were not rewritten"
    assert "PytestAssertRewriteWarning" not in done.stdout + done.stderr
    assert (folder / "bye.txt").read_text() == "atexit ran"
    assert sorted(p.name for p in folder.iterdir()) == ["bye.txt", "test_sample.py"], "files left in the run's folder"


def test_a_forked_run_gives_the_same_outcome_as_a_subprocess(folder: Path):
    args = ["test_sample.py", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-q", "-k", "env_and_folder"]
    forked = forkserver.run_pytest(args, folder, env_for(folder), timeout_s=60)
    spawned = subprocess.run(
        [sys.executable, "-m", "pytest", *args], cwd=folder, env=env_for(folder), capture_output=True, text=True
    )
    assert forked.returncode == spawned.returncode == 0, (forked, spawned.stdout, spawned.stderr)


def test_a_forked_run_past_its_time_limit_is_killed(folder: Path):
    (folder / "test_slow.py").write_text("import time\n\ndef test_slow():\n    time.sleep(60)\n")
    args = ["test_slow.py", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-q"]
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        forkserver.run_pytest(args, folder, env_for(folder), timeout_s=3)
    assert time.monotonic() - start < 30


SESSION = """
import sys
from pathlib import Path
from bench.detection import forkserver
folder = Path(sys.argv[1])
forkserver.run_pytest(["test_stuck.py", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-q"], folder,
                      {"PID_FILE": str(folder / "pid")} | dict(__import__("os").environ), timeout_s=120)
"""


def test_a_forked_run_ends_when_the_session_that_started_it_is_killed(folder: Path):
    """A self-test session killed outright (kill -9, a CI time limit): its fork server exits and
    the runs it forked get SIGTERM instead of running on, orphaned, to their time limit."""
    (folder / "test_stuck.py").write_text(
        "import os, time\nfrom pathlib import Path\n\n"
        "def test_stuck():\n    Path(os.environ['PID_FILE']).write_text(str(os.getpid()))\n    time.sleep(120)\n"
    )
    root = Path(__file__).resolve().parents[2]
    session = subprocess.Popen([sys.executable, "-c", SESSION, str(folder)], cwd=root)
    try:
        deadline = time.monotonic() + 60
        while not (folder / "pid").exists() and time.monotonic() < deadline and session.poll() is None:
            time.sleep(0.05)
        run = int((folder / "pid").read_text())
    finally:
        session.kill()
        session.wait()
    deadline = time.monotonic() + 20
    while _alive(run) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(run), f"forked run {run} still running after its session was killed"


def _alive(pid: int) -> bool:
    """Running, not a zombie (an orphan's zombie is init's to reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
