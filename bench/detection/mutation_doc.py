"""The mutation score's section of docs/detection-matrix.md (issue 13: the suite's mutation score,
measured by benchmarks/mutation.py).

The benchmark writes the section to docs/mutation-score.md and between markers into the matrix
doc; `paygo-bench selftest --docs` rewrites the matrix doc and copies the section back from
docs/mutation-score.md, so a regenerated matrix keeps the last measured score.
"""

from __future__ import annotations

from pathlib import Path

SCORE_MD = "mutation-score.md"
BEGIN = "<!-- mutation-score: begin (benchmarks/mutation.py --write-docs) -->"
END = "<!-- mutation-score: end -->"


def between_markers(text: str) -> str | None:
    """The marked section, markers included; None if there is none."""
    start, stop = text.find(BEGIN), text.find(END)
    if start < 0 or stop < start:
        return None
    return text[start : stop + len(END)]


def with_section(text: str, section: str | None) -> str:
    """`text` with its marked section replaced by `section` (appended if it has none)."""
    if not section:
        return text
    old = between_markers(text)
    if old is not None:
        return text.replace(old, section)
    return text.rstrip("\n") + "\n\n" + section + "\n"


def stored_section(root: Path) -> str | None:
    """The section last written to docs/mutation-score.md, if any."""
    path = root / "docs" / SCORE_MD
    return between_markers(path.read_text(encoding="utf-8")) if path.exists() else None
