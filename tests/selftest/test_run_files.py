"""Runs and files (docs/bench-faults.md, "Runs and files"): two runs started in the same second,
a --report-dir holding another run, a disk that fills, a read-only report folder, a run killed
with its simulated device's key on disk. Each through the real bench in a child process
(`python -m bench.cli run`, `python -m pytest tests/device`) on the virtual rig.

A full disk and a read-only folder are real: a tmpfs mounted for the child alone, in a mount
namespace of its own (`unshare --user --map-root-user --mount`: no root needed, and root's
permissions do not get around it as they get around chmod). The mount ends with the child, so
what the run left there is copied out before it ends."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from bench.dut.traffic import TrafficLog
from bench.locations import OWNER_FILE, RunPlace, new_run_dir, run_id, storage_failure
from bench.record.schema import SCHEMA
from bench.rig import VIRTUAL_DUT_KEY
from bench.station.sim_state import OWNERS_FILE, PREFIX, alive, remove_stale
from tests.selftest import background
from tests.selftest.device_suite import ROOT

POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals and process ids")
QUICK = ("--suite", "quick", "--", "--no-plots")

# sh -c: mount a tmpfs (options $4) on $1, start the filler when $3 appears (if given), run the
# command, copy what it left to $2 (the mount ends with this process), exit with its status.
IN_TMPFS = r"""
mnt=$1; out=$2; trigger=$3; options=$4; shift 4
mount -t tmpfs -o "$options" paygo-test "$mnt" || exit 97
filler=
if [ -n "$trigger" ]; then
  ( while [ ! -e "$trigger" ]; do sleep 0.02; done; cat /dev/zero > "$mnt/filler" 2>/dev/null ) &
  filler=$!
fi
"$@"; rc=$?
[ -n "$filler" ] && kill "$filler" 2>/dev/null
rm -f "$mnt/filler"
cp -a "$mnt/." "$out/"
exit $rc
"""


def _tmpfs_works() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        probe = subprocess.run(
            ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k paygo-test /tmp"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def scenario_where(possible: bool):
    """background.scenario for a test that can run here; nothing started in vain where it is skipped."""
    return background.scenario if possible else (lambda fn: fn)


TMPFS = _tmpfs_works()
tmpfs_scenario = scenario_where(TMPFS)
NEEDS_TMPFS = pytest.mark.skipif(
    not TMPFS, reason="needs a private tmpfs (Linux user and mount namespaces: unshare -rm)"
)


def bench(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


def pytest_device(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "tests/device", "-p", "no:cacheprovider", "--no-plots", *args]


def in_tmpfs(tmp_path: Path, options: str, argv: list[str], trigger: Path | None = None, env=None) -> subprocess.Popen:
    """argv with a tmpfs on tmp_path/mnt for it alone; what it left there is in tmp_path/out."""
    for name in ("mnt", "out"):
        (tmp_path / name).mkdir()
    cmd = ["unshare", "-rm", "sh", "-c", IN_TMPFS, "sh", str(tmp_path / "mnt"), str(tmp_path / "out")]
    return subprocess.Popen(
        [*cmd, str(trigger or ""), options, *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def record_of(run_dir: Path) -> dict:
    doc = json.loads((run_dir / "record.json").read_text(encoding="utf-8"))
    jsonschema.validate(doc, SCHEMA)
    return doc


def one_line_bench_error(output: str, pattern: str) -> re.Match:
    """The output says BENCH ERROR in one line matching `pattern`, and shows no traceback."""
    assert "Traceback" not in output, output[-4000:]
    m = re.search(rf"^paygo-bench: BENCH ERROR: {pattern}$", output, re.M)
    assert m, output[-4000:]
    return m


def files_of(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in path.rglob("*") if p.is_file()
    }


# -- the run's directory ------------------------------------------------------------------------


@background.scenario
def same_second(tmp: Path) -> dict:
    reports = tmp / "reports"
    now = datetime.now(UTC)
    taken = {reports / run_id("virtual", now + timedelta(seconds=s)) for s in range(60)}
    for path in taken:
        path.mkdir(parents=True)
    env = {**os.environ, "PAYGO_BENCH_REPORTS": str(reports)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.cli", "run", *QUICK], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    return {"reports": reports, "taken": taken, "outputs": outputs, "codes": [p.returncode for p in procs]}


def test_runs_started_in_the_same_second_each_get_a_directory_of_their_own(request):
    """Two `paygo-bench run` at once, their names taken for the next minute (as by runs of the
    same station started in the same second): each makes its own directory, `<id>+n`, ends with
    its own verdict read from its own record, and keeps its own logs."""
    seen = background.result(request, same_second)
    reports, taken, outputs = seen["reports"], seen["taken"], seen["outputs"]
    made = sorted(d for d in set(reports.iterdir()) - taken if d.is_dir())  # history.sqlite: the results database
    assert len(made) == 2 and all(re.fullmatch(r"\d{8}T\d{6}Z-virtual\+\d+", d.name) for d in made), made
    for returncode, output in zip(seen["codes"], outputs, strict=True):
        assert returncode == 0, output[-3000:]
        assert output.splitlines()[-1].startswith("paygo-bench: PASSED: "), output[-2000:]
    said = {re.search(r"^paygo-bench: record (.*)$", out, re.M).group(1) for out in outputs}
    assert said == {str(d / "record.json") for d in made}, said  # each read its own record
    ports, spans = [], []
    for d in made:
        rec = record_of(d)
        assert (rec["run_id"], rec["verdict"], rec["status"]) == (d.name, "PASSED", "finished"), rec["verdict_reason"]
        log = (d / "logs" / "bring-up.log").read_text(encoding="utf-8")
        links = set(re.findall(r"DUT link (\S+) at", log))
        assert len(links) == 1, links  # one run's traffic only
        ports += links
        spans.append((rec["started_at"], rec["ended_at"]))
    (a0, a1), (b0, b1) = spans
    if a0 < b1 and b0 < a1:  # side by side (a loaded machine may start one after the other ended,
        assert ports[0] != ports[1], ports  # and the kernel then hands its pty number on): two simulators
    assert all(not any(path.iterdir()) for path in taken), "a run wrote into a directory it did not make"


def _make(args: tuple[Path, datetime]) -> str:
    return new_run_dir(None, args[0], "lab-1", args[1]).name


def test_run_directories_made_at_once_in_one_second_are_distinct_and_sort_by_time(tmp_path):
    """The one function both `paygo-bench run` and a plain `pytest --rig` run use, from eight
    processes at once with the same second: eight directories, each claimed by its maker."""
    when = datetime(2026, 12, 5, 22, 50, 59, tzinfo=UTC)
    with ProcessPoolExecutor(4) as pool:
        names = list(pool.map(_make, [(tmp_path, when)] * 8))
    base = "20261205T225059Z-lab-1"
    assert sorted(names) == sorted([base] + [f"{base}+{n}" for n in range(2, 9)]), names
    assert all((tmp_path / n / OWNER_FILE).read_text().strip().isdigit() for n in names)
    later = new_run_dir(None, tmp_path, "lab-1", when + timedelta(seconds=1)).name
    assert sorted([*names, later])[-1] == later and min(names) == base
    place = RunPlace(None, tmp_path / "plain", "lab 1/a")
    assert place.make() == place.make() and place.name.endswith("-lab_1_a")  # made once, a safe name


@background.scenario
def report_dir_taken(tmp: Path) -> dict:
    old = tmp / "old"
    seen: dict = {"tmp": tmp, "first": bench("run", "-k", "nomatch", "--report-dir", str(old))}
    seen["before"] = files_of(old)
    seen["proc"] = bench("run", *QUICK[:2], "--report-dir", str(old))
    seen["plain"] = subprocess.run(
        pytest_device("-k", "test_identity", "--report-dir", str(old)), cwd=ROOT, capture_output=True, text=True
    )
    seen["after"] = files_of(old)
    empty = tmp / "empty"
    empty.mkdir()
    seen["empty"] = bench("run", "-k", "nomatch", "--report-dir", str(empty))
    return seen


def test_a_report_dir_holding_another_run_is_refused_in_one_line(request):
    """An explicit --report-dir that holds files (a finished run's) is refused before anything
    runs, by `paygo-bench run` (usage error, 4) and by pytest (usage error, 4), naming the
    directory; the run in it is left untouched. An empty one is taken."""
    seen = background.result(request, report_dir_taken)
    old = seen["tmp"] / "old"
    first = seen["first"]
    assert first.returncode == 2 and record_of(old)["verdict"] == "INCOMPLETE", first.stdout[-2000:]
    before = seen["before"]
    proc = seen["proc"]
    assert proc.returncode == 4 and proc.stdout == "", proc.stdout[-2000:] + proc.stderr
    refused = f"--report-dir {old} already holds files (record.json, "
    said = proc.stderr.splitlines()
    assert len(said) == 1 and said[0].startswith(f"paygo-bench run: error: {refused}"), said
    assert said[0].endswith("another run's directory is never written over; name a new or empty directory")
    plain = seen["plain"]
    assert plain.returncode == 4 and "Traceback" not in plain.stdout + plain.stderr, plain.stdout[-2000:]
    said = plain.stderr.strip().splitlines()
    assert len(said) == 1 and said[0].startswith(f"ERROR: {refused}"), said
    assert seen["after"] == files_of(old) == before, "the earlier run's files changed"
    empty = seen["tmp"] / "empty"
    proc = seen["empty"]
    assert proc.returncode == 2 and record_of(empty)["run_id"] == "empty", proc.stdout[-2000:] + proc.stderr


# -- a full disk, a read-only folder --------------------------------------------------------------


@tmpfs_scenario
def disk_fills(tmp: Path):
    trigger = tmp / "fill-now"
    run = tmp / "mnt" / "run"
    proc = in_tmpfs(
        tmp, "size=4m", [sys.executable, "-m", "bench.cli", "run", "--report-dir", str(run), *QUICK], trigger
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if re.search(r" PASSED +\[2/9\]$", line):
            trigger.touch()
    proc.wait(timeout=180)
    return tmp, proc.returncode, "".join(lines)


@NEEDS_TMPFS
def test_a_disk_that_fills_during_the_run_is_bench_error_naming_the_file_and_errno(request):
    """The report disk fills after the second test: the run stops after the test in progress
    (not every test erroring one by one), says BENCH ERROR in one line naming the file that
    could not be written and the errno, exits 3 with no traceback (the JUnit writer failing
    too), and the record on disk is the last one written whole."""
    tmp_path, returncode, output = background.result(request, disk_fills)
    trigger = tmp_path / "fill-now"
    run = tmp_path / "mnt" / "run"
    assert trigger.exists() and returncode == 3, output[-4000:]
    m = one_line_bench_error(output, r"cannot write (\S+): \[Errno 28\] No space left on device( \(SQLite: .*\))?")
    assert m.group(1).startswith(f"{run}/"), m.group(0)
    assert output.splitlines()[-1] == m.group(0)
    ran = re.findall(r" (PASSED|FAILED|ERROR) +\[(\d)/9\]$", output, re.M)
    assert ran and max(int(n) for _, n in ran) <= 4, ran  # stopped, not run to the end
    rec = record_of(tmp_path / "out" / "run")  # the last record written whole
    assert (rec["status"], rec["verdict"], rec["ended_at"]) == ("running", None, None), rec["status"]
    assert rec["tests"] and {t["outcome"] for t in rec["tests"]} == {"passed"}, rec["tests"]


LINUX_ONLY = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /dev/full")
linux_scenario = scenario_where(sys.platform.startswith("linux"))


@linux_scenario
def junit_on_a_full_device(tmp: Path):
    run = tmp / "run"
    argv = pytest_device("-k", "test_identity", "--report-dir", str(run), "--junitxml=/dev/full")
    return run, subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)


@LINUX_ONLY
def test_a_junit_file_that_cannot_be_written_is_bench_error_and_the_record_is_finished(request):
    """pytest's JUnit writer on a full device (/dev/full: every write fails with ENOSPC) ends the
    session without a traceback; the verdict names the file and the errno, the record is
    finished with it."""
    run, proc = background.result(request, junit_on_a_full_device)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 3, output[-4000:]
    line = one_line_bench_error(output, re.escape("cannot write /dev/full: [Errno 28] No space left on device"))
    assert "2 passed" in output and line.group(0) == proc.stdout.splitlines()[-1]
    rec = record_of(run)
    assert (rec["status"], rec["verdict"], rec["exit_status"]) == ("finished", "BENCH ERROR", 3), rec["status"]
    assert rec["verdict_reason"] == "cannot write /dev/full: [Errno 28] No space left on device"
    assert {t["outcome"] for t in rec["tests"]} == {"passed"} and rec["ended_at"], rec["tests"]


@LINUX_ONLY
def test_a_traffic_log_that_cannot_be_written_goes_on_in_memory_and_says_so_once():
    said = []
    log = TrafficLog()
    log.on_write_error = said.append
    log.to_file(Path("/dev/full"))
    log.record("RX", "STATUS ok")  # raises nothing: the traffic goes on
    log.record("RX", "STATUS again")
    assert said == ["cannot write /dev/full: [Errno 28] No space left on device"] and log.write_error == said[0]
    assert list(log.recent) == ["STATUS ok", "STATUS again"]
    log.close()


@tmpfs_scenario
def disk_full_from_the_start(tmp: Path):
    run = tmp / "mnt" / "run"
    fill = 'cat /dev/zero > "$0" 2>/dev/null; exec "$@"'
    argv = [
        "sh",
        "-c",
        fill,
        str(tmp / "mnt" / "filler"),
        *pytest_device("-k", "test_identity", "--report-dir", str(run)),
    ]
    proc = in_tmpfs(tmp, "size=1m", argv)
    output, _ = proc.communicate(timeout=120)
    return tmp, proc.returncode, output


@NEEDS_TMPFS
def test_a_disk_full_from_the_start_is_bench_error_before_any_test(request):
    """pytest --rig straight on a full disk: nothing can be written in the run directory; one
    line naming the file and the errno, exit 3, no test run and no traceback."""
    tmp_path, returncode, output = background.result(request, disk_full_from_the_start)
    run = tmp_path / "mnt" / "run"
    assert returncode == 3, output[-4000:]
    m = one_line_bench_error(output, r"cannot write (\S+): \[Errno 28\] No space left on device")
    assert m.group(1).startswith(f"{run}/"), m.group(0)
    assert not re.search(r"(PASSED|FAILED|ERROR) *\[", output) and "1 passed" not in output, output[-3000:]
    assert not (tmp_path / "out" / "run" / "record.json").exists()


@tmpfs_scenario
def read_only_folder(tmp: Path) -> dict:
    env = {**os.environ, "PAYGO_BENCH_REPORTS": str(tmp / "mnt" / "reports")}
    cli = in_tmpfs(tmp, "ro,size=64k", [sys.executable, "-m", "bench.cli", "run", *QUICK], env=env)
    cli_output, _ = cli.communicate(timeout=120)
    plain = tmp / "plain"
    plain.mkdir()
    proc = in_tmpfs(
        plain, "ro,size=64k", pytest_device("-k", "test_identity", "--report-dir", str(plain / "mnt" / "run"))
    )
    output, _ = proc.communicate(timeout=120)
    return {"tmp": tmp, "cli": (cli.returncode, cli_output), "plain": (proc.returncode, output)}


@NEEDS_TMPFS
def test_a_read_only_report_folder_is_bench_error_naming_it(request):
    """The reports folder (or --report-dir) on a read-only file system: `paygo-bench run` says
    BENCH ERROR in one line on stderr before starting anything, exit 3; pytest --rig says it as
    its verdict, exit 3; no traceback from mkdir."""
    seen = background.result(request, read_only_folder)
    ro = seen["tmp"] / "mnt"
    returncode, output = seen["cli"]
    assert returncode == 3, output
    assert output.splitlines() == [
        f"paygo-bench: BENCH ERROR: cannot create the run directory {ro / 'reports'}: [Errno 30] Read-only file system"
    ], output
    plain = seen["tmp"] / "plain"
    returncode, output = seen["plain"]
    assert returncode == 3, output[-3000:]
    one_line_bench_error(
        output, re.escape(f"cannot create the run directory {plain / 'mnt' / 'run'}: [Errno 30] Read-only file system")
    )


# -- a killed run's simulated device --------------------------------------------------------------


@scenario_where(os.name == "posix")
def killed_run_and_the_next(tmp: Path) -> dict:
    """A run SIGKILLed with its device's key on disk; its simulator's end; the next run."""
    state = tmp / "tmp"
    state.mkdir()
    env = {**os.environ, "TMPDIR": str(state)}
    killed = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "run", "--report-dir", str(tmp / "killed"), *QUICK],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        folder = _wait_for_key_on_disk(state, killed)
        pids = [int(p) for p in (folder / OWNERS_FILE).read_text().split()]
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.wait(10)
    seen: dict = {"tmp": tmp, "folder": folder, "pids": pids, "killed_pid": killed.pid}
    if not (pids[0] == killed.pid and len(pids) == 2):
        return seen
    deadline = time.monotonic() + 15
    while alive(pids[1]) and time.monotonic() < deadline:  # the simulator sees its stdin close
        time.sleep(0.05)
    seen["simulator_alive"] = alive(pids[1])
    seen["key_left"] = VIRTUAL_DUT_KEY.encode() in (folder / "eeprom.bin").read_bytes()
    seen["killed_status"] = record_of(tmp / "killed")["status"]
    seen["next"] = bench("run", "--report-dir", str(tmp / "next"), *QUICK, env=env)
    return seen


@POSIX_ONLY
def test_a_killed_runs_simulator_folder_with_the_key_is_removed_by_the_next_run(request):
    """SIGKILL a run once its simulated device holds its key: the state folder (the EEPROM, the
    key in clear) outlives it; the next run's start removes it, and its own at its end."""
    seen = background.result(request, killed_run_and_the_next)
    pids, folder = seen["pids"], seen["folder"]
    assert pids[0] == seen["killed_pid"] and len(pids) == 2, pids  # the bench, then its simulator
    assert not seen["simulator_alive"], "the simulator outlived its bench"
    assert seen["key_left"]  # left behind, key in clear
    assert seen["killed_status"] == "running"
    proc = seen["next"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert not folder.exists(), "the killed run's device (its key) is still on disk"
    assert list((seen["tmp"] / "tmp").glob(f"{PREFIX}*")) == [], "the run left its own state folder behind"


def _wait_for_key_on_disk(tmp: Path, proc: subprocess.Popen) -> Path:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        for folder in tmp.glob(f"{PREFIX}*"):
            try:
                if VIRTUAL_DUT_KEY.encode() in (folder / "eeprom.bin").read_bytes():
                    return folder
            except OSError:
                pass
        time.sleep(0.05)
    raise AssertionError("no simulated device with its key on disk within 60 s")


def test_only_folders_whose_owners_are_all_gone_are_removed(tmp_path):
    """A folder a live process owns, one without an owners file (made by hand, by another tool),
    and one whose owners are gone: only the last goes."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    folders = {name: tmp_path / f"{PREFIX}{name}" for name in ("live", "unowned", "stale")}
    for folder in folders.values():
        folder.mkdir()
        (folder / "eeprom.bin").write_bytes(VIRTUAL_DUT_KEY.encode())
    (folders["live"] / OWNERS_FILE).write_text(f"{gone.pid}\n{os.getpid()}\n")
    (folders["stale"] / OWNERS_FILE).write_text(f"{gone.pid}\n")
    assert remove_stale(tmp_path) == [folders["stale"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{PREFIX}live", f"{PREFIX}unowned"]


def test_a_storage_failure_inside_a_group_of_teardown_errors_is_still_one_line(tmp_path):
    """pytest groups the errors of several failing teardowns (a ledger commit on a full disk and a
    log write, say): the storage failure among them is still the run's one-line bench error."""
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "x.log"))
    ledger = sqlite3.OperationalError("database or disk is full")
    group = BaseExceptionGroup("errors while tearing down", [ValueError("other"), ExceptionGroup("inner", [ledger])])
    assert storage_failure(group, tmp_path / "ledger.sqlite").endswith("(SQLite: database or disk is full)")
    assert (
        storage_failure(BaseExceptionGroup("x", [full]), None)
        == f"cannot write {tmp_path / 'run' / 'x.log'}: [Errno 28] No space left on device"
    )
    assert storage_failure(BaseExceptionGroup("x", [ValueError("no")]), None) is None
