"""The repository's docs and comments stand on their own: they cite the repository's own docs (by
section name) or public sources, never documents a lab reading the repository does not have.

- No tracked file under bench/, fixtures/, tests/, docs/, benchmarks/ or README.md names the
  outside notes the bench was first written from, nor uses a section sign: a section is named by
  its heading, e.g. `docs/tokens.md "Windows"`.
- Every `docs/<name>.md` they point to exists, and where a section is named in quotes right after
  it, the document has a heading that starts with that name (so `"Metrics bridge"` matches the
  heading "Metrics bridge (capability `metrics_bridge`)").

docs/detection-matrix.md is checked too: it is generated (`paygo-bench selftest --docs`) from the
fault catalogue's descriptions, which this check covers in bench/sim/faults.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("bench", "fixtures", "tests", "docs", "benchmarks", "README.md")
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()
TEXT_SUFFIXES = {".py", ".md", ".toml", ".json", ".csv", ".txt", ".yaml", ".yml", ".cfg", ".ini", ".html", ".css"}

# The outside documents, as they were cited. `openpaygo.md` alone, not a public file name that
# ends in it (OpenPAYGO-docs' `requirements_for_openpaygo.md`, `setting_up_openpaygo.md`).
FORBIDDEN = re.compile(
    r"(?<![\w-])openpaygo\.md|(?<![\w-])instruments\.md|hil-anchors|shared/reference|shared/DESIGN|\u00a7"
)
# `docs/<name>.md`, optionally followed (on the same line, or at the start of the next one, after
# a comment's `#`) by a quoted section name.
POINTER = re.compile(r'(?<![\w/.-])docs/([\w-]+\.md)(?:(?:[ \t]*\n[ \t]*(?:#[ \t]*)?|[ \t]+)"([^"\n]+)")?')
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def tracked_files() -> list[str]:
    """The tracked text files under the scanned paths (git ls-files; without git, the tree)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--", *SCANNED], cwd=ROOT, capture_output=True, check=True, timeout=30
        ).stdout
        names = [n for n in out.decode().split("\0") if n]
    except (OSError, subprocess.SubprocessError):
        names = []
    if not names:  # not a git checkout (an unpacked sdist): walk the tree
        for top in SCANNED:
            path = ROOT / top
            found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            names += [
                p.relative_to(ROOT).as_posix()
                for p in found
                if not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(ROOT).parts)
            ]
    return sorted(n for n in names if Path(n).suffix in TEXT_SUFFIXES and (ROOT / n).is_file())


def read(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8", errors="replace")


def normalise(title: str) -> str:
    return " ".join(re.sub(r"[`*_]", "", title).lower().split())


def headings(doc: str) -> list[str]:
    text = re.sub(r"^```.*?^```", "", read(f"docs/{doc}"), flags=re.M | re.S)  # not in code blocks
    return [normalise(h) for h in HEADING.findall(text)]


def test_the_scan_sees_the_repository():
    files = tracked_files()
    assert "README.md" in files and "docs/tokens.md" in files, files[:20]
    assert any(f.startswith("bench/") for f in files) and any(f.startswith("tests/device/") for f in files)


def test_no_file_cites_outside_documents_or_section_signs():
    found = []
    for name in tracked_files():
        if name == THIS:
            continue
        for number, line in enumerate(read(name).splitlines(), 1):
            if FORBIDDEN.search(line):
                found.append(f"{name}:{number}: {line.strip()[:120]}")
    assert not found, "cite the repository's docs by section name or a public source:\n" + "\n".join(found)


def test_every_doc_pointed_to_exists_with_the_section_named():
    missing, no_heading = [], []
    cache: dict[str, list[str]] = {}
    for name in tracked_files():
        if name == THIS:
            continue
        text = read(name)
        for m in POINTER.finditer(text):
            doc, section = m.group(1), m.group(2)
            where = f"{name}:{text.count(chr(10), 0, m.start()) + 1}"
            if not (ROOT / "docs" / doc).is_file():
                missing.append(f"{where}: docs/{doc}")
                continue
            if section is None:
                continue
            if doc not in cache:
                cache[doc] = headings(doc)
            wanted = normalise(section)
            if not any(h.startswith(wanted) for h in cache[doc]):
                no_heading.append(f'{where}: docs/{doc} "{section}"')
    assert not missing, "documents that do not exist:\n" + "\n".join(missing)
    assert not no_heading, "sections without a heading of that name:\n" + "\n".join(no_heading)


def test_the_checks_catch_what_they_are_for():
    """The patterns themselves: a citation and a section sign are caught, public names are not;
    a pointer's section is read from the same line or the next one."""
    assert FORBIDDEN.search("see openpaygo.md, section 2") and FORBIDDEN.search("(instruments.md)")
    assert FORBIDDEN.search("\u00a73e") and FORBIDDEN.search("../shared/DESIGN.md")
    assert not FORBIDDEN.search("OpenPAYGO-docs `requirements_for_openpaygo.md`, `setting_up_openpaygo.md`")
    pointers = [m.groups() for m in POINTER.finditer('(docs/tokens.md "Windows") and docs/rig.md, docs/x.md\n# "Y"')]
    assert pointers == [("tokens.md", "Windows"), ("rig.md", None), ("x.md", "Y")]
    assert not POINTER.search("OpenPAYGO-docs/docs/x.md") and not POINTER.search("docs/openpaygo-token/a.md")
