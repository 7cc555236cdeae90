"""Run the device suite in a child pytest against a virtual rig, and read back what happened."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.report.junit import CaseResult, read_junit

ROOT = Path(__file__).resolve().parents[2]


def run_device_suite(
    out_dir: Path, faults=(), args=(), timeout_s: float = 600, plots: bool = False
) -> tuple[dict[str, CaseResult], str]:
    """plots=False by default: the self-tests judge outcomes, and drawing every PNG of every
    suite run would cost them time, not evidence (the report tests turn them on)."""
    junit = out_dir / "junit.xml"
    cmd = [
        sys.executable, "-m", "pytest", "tests/device", "-q", "-p", "no:cacheprovider",
        *(() if plots else ("--no-plots",)),
        "--report-dir", str(out_dir / "run"), f"--junitxml={junit}", "-o", "junit_family=xunit2",
        *[a for f in faults for a in ("--sim-fault", f)], *args,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    output = proc.stdout[-12000:] + proc.stderr[-2000:]
    if not junit.exists():
        raise AssertionError(f"the device suite did not run (exit {proc.returncode}):\n{output}")
    return read_junit(junit), output
