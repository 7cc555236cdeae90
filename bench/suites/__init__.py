"""Suite profiles (TOML, shipped in this package): which device tests a run selects and which it
requires before it may be called PASSED. docs/tests.md, "Suites", lists them. `DEVICE_SUITE` is
where the device suite is: the repository's tests/device/, installed as the package
`bench.device_suite`, so a wheel carries it."""

from pathlib import Path

import bench.device_suite
from bench.suites.profiles import (
    DEFAULT_SUITE,
    RequiredTest,
    SuiteError,
    SuiteProfile,
    declared_tests,
    expand_required,
    load_profile,
    matches,
    parse_profile,
    profile_names,
)

DEVICE_SUITE = Path(bench.device_suite.__file__).resolve().parent

__all__ = [
    "DEVICE_SUITE",
    "DEFAULT_SUITE",
    "RequiredTest",
    "SuiteError",
    "SuiteProfile",
    "declared_tests",
    "expand_required",
    "load_profile",
    "matches",
    "parse_profile",
    "profile_names",
]
