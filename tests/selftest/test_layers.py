"""The import graph against the layer table in docs/architecture.md: every module's imports
(inside functions too) go only where its layer's row allows, and no modules import each other in
a cycle. The table in the docs is the rule; this test reads it, so the two cannot drift."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# import name -> folder, as pyproject.toml installs them
PACKAGES = {
    "bench": ROOT / "bench",
    "bench.fixtures": ROOT / "fixtures",
    "bench.device_suite": ROOT / "tests" / "device",
}


def read_table(text: str) -> tuple[dict[str, set[str] | None], set[str]]:
    """layer -> what it may import (None: everything), and the utilities."""
    rules: dict[str, set[str] | None] = {}
    in_table = False
    for line in text.splitlines():
        if line.startswith("| layer | holds | may import |"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break
        if in_table and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            allowed = cells[-1]
            for layer in re.findall(r"`([\w.]+)`", cells[0]):
                rules[layer] = None if allowed == "everything" else set(re.findall(r"`([\w.]+)`", allowed))
    m = re.search(r"Utilities, importable from any layer:(.*?)\n\n", text, re.S)
    assert rules and m, "docs/architecture.md has no layer table or no utilities line"
    return rules, set(re.findall(r"`([\w.]+)`", m.group(1)))


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            if package == "bench" and parts[:1] == ["fixtures"]:
                continue
            found[".".join([package, *parts])] = path
    return found


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(name: str, path: Path, known: Iterable[str]) -> dict[str, bool]:
    """The bench modules `name` imports -> whether the import runs (False: under TYPE_CHECKING)."""
    known = set(known)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: dict[str, bool] = {}
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            if target.split(".")[0] == "bench" and target != name:
                out[target] = out.get(target, False) or node.lineno not in typing_only
    return out


def layer_of(module: str, layers: Iterable[str]) -> str | None:
    matches = [layer for layer in layers if module == layer or module.startswith(layer + ".")]
    return max(matches, key=len) if matches else None


def violations(
    graph: Mapping[str, Iterable[str]], rules: Mapping[str, set[str] | None], utilities: set[str]
) -> list[str]:
    found = []
    for source, targets in sorted(graph.items()):
        own = layer_of(source, [*rules, *utilities])
        if own is None:
            found.append(f"{source}: in no layer of docs/architecture.md")
            continue
        allowed = rules.get(own)
        for target in sorted(targets):
            target_layer = layer_of(target, [*rules, *utilities])
            if allowed is None or target_layer == own or target_layer in utilities:
                continue
            if own in utilities:
                if target_layer not in utilities:
                    found.append(f"{source} (a utility) imports {target}")
                continue
            if not any(target == a or target.startswith(a + ".") for a in allowed):
                found.append(f"{source} ({own}) imports {target} ({target_layer}), not in its row")
    return found


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, bool]]:
    found = modules()
    return {name: imports_of(name, path, found) for name, path in found.items()}


def test_every_import_goes_where_its_layer_allows(graph):
    rules, utilities = read_table((ROOT / "docs" / "architecture.md").read_text(encoding="utf-8"))
    assert not violations(graph, rules, utilities), "\n".join(violations(graph, rules, utilities))


def test_no_modules_import_each_other_in_a_cycle(graph):
    running = {m: {t for t, runs in targets.items() if runs and t in graph} for m, targets in graph.items()}
    # a package's __init__ importing its own modules is how packages re-export, not a cycle
    running = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in running.items()}
    assert not cycles(running), cycles(running)


def test_the_checks_catch_what_they_are_for():
    rules = {"bench.low": set(), "bench.high": {"bench.low"}, "bench.top": None}
    graph = {
        "bench.low.a": {"bench.high.b"},
        "bench.high.b": {"bench.low.a", "bench.util"},
        "bench.top.c": {"bench.high.b"},
        "bench.stray": set(),
    }
    found = violations(graph, rules, {"bench.util"})
    assert found == [
        "bench.low.a (bench.low) imports bench.high.b (bench.high), not in its row",
        "bench.stray: in no layer of docs/architecture.md",
    ]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_inside_functions_and_for_type_checking_count(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nfrom . import sibling\nif TYPE_CHECKING:\n"
        "    from bench.rig import Rig\ndef f():\n    from bench.dut.link import SerialLink\n",
        encoding="utf-8",
    )
    found = imports_of("bench.pkg.mod", source, ["bench.pkg.sibling"])
    assert found == {"bench.pkg.sibling": True, "bench.rig": False, "bench.dut.link": True}


def test_nothing_installed_imports_the_checkout_by_its_folder_names():
    """`fixtures` and `tests.device` are folders of the checkout, installed as `bench.fixtures` and
    `bench.device_suite`: imported by their folder names they work in the checkout only (the
    repository root on sys.path) and load a second copy of each module beside the installed one."""
    wrong = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            wrong += [f"{name}: {t}" for t in targets if t.split(".")[0] == "fixtures" or t.startswith("tests.")]
    assert not wrong, wrong
