"""Where the bench's own files are, installed from a wheel or run from a checkout.

- the device suite: the repository's tests/device/, installed as `bench.device_suite`
  (bench.suites.DEVICE_SUITE);
- a checkout: the repository root, when the bench runs from one (editable install): the
  self-tests and the detection matrix need it; a wheel has none;
- the reports folder: the checkout's reports/, else reports/ in the current directory, or
  $PAYGO_BENCH_REPORTS.
"""

from __future__ import annotations

import os
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
