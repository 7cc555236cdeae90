"""The bench's version as records and reports give it: the package version, plus the git commit
when the bench runs from a checkout (so a record names the exact code that judged the DUT)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench import __version__


def bench_version() -> str:
    root = Path(__file__).resolve().parents[1]  # the checkout this bench runs from, if it runs from one
    if not (root / ".git").exists():  # installed from a wheel: the version alone
        return __version__
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__
