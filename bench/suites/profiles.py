"""Suite profiles: which device tests a run selects and which of them it requires, as data.

A profile is a TOML file shipped in this package (quick.toml, full.toml, soak.toml, token.toml),
so a lab can read exactly what "passed the token suite" means. A run is PASSED only when every
test its profile requires ran and passed (bench/record/verdict.py); selecting fewer tests with
-k, or a DUT that lacks a capability, makes it INCOMPLETE instead.

Required tests are patterns relative to the device suite, `file.py::test_name`, with fnmatch
globs (`test_lockout.py::*`; `"*"` is every test of the suite). A parametrised test
`file.py::test_x[a]` is matched by `file.py::test_x` as well.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

DEFAULT_SUITE = "full"
_KEYS = {"name": str, "title": str, "description": str, "select": str, "soak_factor": int, "required": list}
_OPTIONAL = {"description": "", "select": "", "soak_factor": 1}
_NAME = re.compile(r"[a-z0-9_-]{1,32}")  # as the rig file's dut.suite accepts
_PATTERN = re.compile(r"[\w*?.\-/\[\]!]+\.py::[\w*?.\-\[\]!]+|\*")


class SuiteError(Exception):
    """A profile that cannot be used, as one line naming the file (or option) and what is wrong."""


@dataclass(frozen=True)
class SuiteProfile:
    name: str
    title: str
    description: str
    select: str  # a pytest -m marker expression choosing the device tests that run; "" = all
    soak_factor: int  # endurance settings times this (fixtures/rig.py soaked())
    required: tuple[str, ...]  # test patterns relative to the device suite
    source: str  # the file it was read from, for messages


@dataclass(frozen=True)
class RequiredTest:
    """One required test: a collected device test's id, or a pattern that matched none."""

    test_id: str  # relative to the device suite: file.py::test_name
    collected: bool


def _shipped() -> Traversable:
    return resources.files(__package__)


def profile_names(root: Traversable | None = None) -> tuple[str, ...]:
    root = root or _shipped()
    return tuple(sorted(p.name[: -len(".toml")] for p in root.iterdir() if p.name.endswith(".toml")))


def load_profile(name: str, where: str = "--suite", root: Traversable | None = None) -> SuiteProfile:
    """The profile `name`; `where` names what asked for it (an option, a rig file key) in the error."""
    shown = f"bench/suites/{name}.toml" if root is None else None
    root = root or _shipped()
    known = profile_names(root)
    if name not in known:
        raise SuiteError(f"{where}: no suite profile {name!r}; known: {', '.join(known)}")
    file = root / f"{name}.toml"
    return parse_profile(file.read_bytes(), shown or str(file), expected_name=name)


def parse_profile(data: bytes, where: str, expected_name: str | None = None) -> SuiteProfile:
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise SuiteError(f"{where}: not a valid UTF-8 TOML file: {str(e).splitlines()[0]}") from None
    for key in doc:
        if key not in _KEYS:
            raise SuiteError(f"{where}: {key}: unknown key; expected one of {', '.join(_KEYS)}")
    values: dict[str, Any] = {**_OPTIONAL, **doc}
    for key, kind in _KEYS.items():
        if key not in values:
            raise SuiteError(f"{where}: {key}: missing")
        value = values[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise SuiteError(f"{where}: {key}: got {value!r}; expected a TOML {kind.__name__}")
    _check(where, values, expected_name)
    return SuiteProfile(
        values["name"],
        values["title"],
        values["description"],
        values["select"],
        values["soak_factor"],
        tuple(values["required"]),
        where,
    )


def _check(where: str, v: dict[str, Any], expected_name: str | None) -> None:
    if not _NAME.fullmatch(v["name"]):
        raise SuiteError(f"{where}: name: got {v['name']!r}; expected 1..32 characters of a-z 0-9 _ -")
    if expected_name is not None and v["name"] != expected_name:
        raise SuiteError(f"{where}: name: got {v['name']!r}; expected the file's name, {expected_name!r}")
    if not v["title"].strip() or "\n" in v["title"]:
        raise SuiteError(f"{where}: title: got {v['title']!r}; expected one non-empty line")
    if v["soak_factor"] < 1:
        raise SuiteError(f"{where}: soak_factor: got {v['soak_factor']}; expected a whole number >= 1")
    if v["select"]:
        from _pytest.mark.expression import Expression  # the grammar of pytest -m, exactly

        try:
            Expression.compile(v["select"])
        except SyntaxError as e:
            raise SuiteError(
                f"{where}: select: got {v['select']!r}; expected a pytest -m marker expression "
                f"({e.msg} at column {e.offset})"
            ) from None
    if not v["required"]:
        raise SuiteError(f"{where}: required: empty; expected at least one test pattern")
    for i, pattern in enumerate(v["required"]):
        if not isinstance(pattern, str) or not _PATTERN.fullmatch(pattern):
            raise SuiteError(
                f"{where}: required[{i}]: got {pattern!r}; expected 'file.py::test_name' (fnmatch globs allowed) or '*'"
            )


def matches(pattern: str, test_id: str) -> bool:
    base = test_id.split("[", 1)[0]
    return fnmatchcase(test_id, pattern) or fnmatchcase(base, pattern)


def declared_tests(suite_dir: Path) -> list[str]:
    """The test functions the device suite's files define (top level, `file.py::test_name`), read
    without importing them: what a run that collected only part of the suite left out."""
    found = []
    for path in sorted(suite_dir.rglob("test_*.py")):
        rel = path.relative_to(suite_dir).as_posix()
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):  # pytest reports it when it collects the file
            continue
        found += [
            f"{rel}::{node.name}"
            for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test")
        ]
    return found


def expand_required(
    patterns: Sequence[str], test_ids: Sequence[str], uncollected: Sequence[str] = ()
) -> list[RequiredTest]:
    """The required tests among `test_ids` (the device tests collected, before any deselection),
    each once, in collection order; then those among `uncollected` (tests of the suite the run did
    not collect), and every pattern that matched neither, as not collected: a required test the
    run does not have is missing, never silently out of scope."""
    hit = [t for t in test_ids if any(matches(p, t) for p in patterns)]
    missed = [t for t in uncollected if any(matches(p, t) for p in patterns)]
    unmatched = [p for p in patterns if not any(matches(p, t) for t in [*test_ids, *uncollected])]
    return [RequiredTest(t, True) for t in dict.fromkeys(hit)] + [
        RequiredTest(t, False) for t in dict.fromkeys(missed + unmatched)
    ]
