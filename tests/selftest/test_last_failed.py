"""`pytest --lf` reruns only what failed last time: the project's pytest settings (pyproject.toml)
leave pytest's cache plugin on. (The child runs the self-tests start turn it off themselves, each
with `-p no:cacheprovider`, so that side-by-side runs never share a cache.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.selftest.device_suite import ROOT

TESTS = "def test_passes():\n    pass\n\ndef test_fails():\n    assert False\n"


def run(folder: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(folder), "-v",
         "-p", "no:hypothesispytest", "-p", "no:paygo_bench", *args, "test_two.py"],
        cwd=folder, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return proc.stdout


def test_last_failed_reruns_only_the_failed_test(tmp_path):
    (tmp_path / "test_two.py").write_text(TESTS)
    first = run(tmp_path)
    assert "test_passes PASSED" in first and "test_fails FAILED" in first
    again = run(tmp_path, "--lf")
    assert "test_fails FAILED" in again and "test_passes" not in again, again
