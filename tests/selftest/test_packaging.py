"""What the wheel carries (pyproject.toml): one import name, `bench`, with the repository's fixtures/
and tests/device/ under it, every package on disk listed, the pytest plugin registered through
`pytest11` with every fixture module. (.ci/wheel-check installs the built wheel outside the
checkout and runs it; this keeps the list it is built from true.)"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from bench.locations import checkout_root

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
MAPPED = {"bench.fixtures": "fixtures", "bench.device_suite": "tests/device"}


def test_every_package_on_disk_is_listed_and_nothing_else():
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "bench").rglob("__init__.py")}
    setuptools = PYPROJECT["tool"]["setuptools"]
    assert setuptools["package-dir"] == MAPPED
    assert set(setuptools["packages"]) == on_disk | set(MAPPED), sorted(
        set(setuptools["packages"]) ^ (on_disk | set(MAPPED))
    )
    assert all(name == "bench" or name.startswith("bench.") for name in setuptools["packages"])
    for folder in MAPPED.values():
        assert (ROOT / folder / "__init__.py").is_file(), folder


def test_the_data_files_the_bench_reads_are_package_data():
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    for package, folder in (("bench.suites", "bench/suites"), ("bench.specs", "bench/specs")):
        assert data[package] == ["*.toml"] and list((ROOT / folder).glob("*.toml")), package


def test_the_plugin_is_registered_through_pytest11_with_every_fixture_module():
    assert PYPROJECT["project"]["entry-points"]["pytest11"] == {"paygo_bench": "bench.fixtures.plugin"}
    tree = ast.parse((ROOT / "fixtures" / "plugin.py").read_text(encoding="utf-8"))
    listed = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytest_plugins" for t in node.targets)
    )
    modules = {f"bench.fixtures.{p.stem}" for p in (ROOT / "fixtures").glob("*.py")} - {
        "bench.fixtures.__init__",
        "bench.fixtures.plugin",
        "bench.fixtures.keys",
    }  # keys: data, no hooks
    assert set(listed) == modules and len(listed) == len(set(listed)), sorted(set(listed) ^ modules)


def test_the_root_conftest_registers_nothing_the_plugin_does():
    text = (ROOT / "conftest.py").read_text(encoding="utf-8")
    assert "pytest_plugins" not in text and "def pytest_" not in text


def test_the_checkout_is_found_from_the_repository():
    assert checkout_root() == ROOT
