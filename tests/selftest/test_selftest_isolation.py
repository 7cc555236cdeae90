"""A self-test session's own device-suite run stays out of the user's reports/ (the history a lab
reads): it goes to a temporary folder, removed when the session passes, kept when it does not
(conftest.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.selftest.device_suite import ROOT

PICK = ["tests/device/test_identity.py::test_identity", "tests/selftest/test_forkserver.py"]


def test_a_self_test_session_writes_its_device_run_outside_reports():
    before = set((ROOT / "reports").glob("*"))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *PICK, "-q", "-p", "no:hypothesispytest", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # one device test of the suite ran: the session is INCOMPLETE (exit 2), so its folder is kept
    assert proc.returncode == 2 and "INCOMPLETE" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]
    m = re.search(r"^record: (\S+)$", proc.stdout, re.M)
    assert m, proc.stdout[-3000:]
    record = Path(m.group(1))
    try:
        reports = (ROOT / "reports").resolve()
        assert reports not in record.resolve().parents, f"the self-tests' device run went to {record}"
        assert record.is_file() and record.parent.parent.name.startswith("paygo-selftest-reports-")
        assert set((ROOT / "reports").glob("*")) - before == set() or all(
            p.name != record.parent.name for p in (ROOT / "reports").glob("*")
        )
    finally:
        if record.parent.parent.name.startswith("paygo-selftest-reports-"):
            shutil.rmtree(record.parent.parent, ignore_errors=True)
