"""Suite profiles (TOML, shipped in this package): which device tests a run selects and which it
requires before it may be called PASSED. docs/tests.md, "Suites", lists them."""

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

__all__ = [
    "DEFAULT_SUITE", "RequiredTest", "SuiteError", "SuiteProfile", "declared_tests", "expand_required", "load_profile", "matches",
    "parse_profile", "profile_names",
]
