"""docs/tests.md's "catches" column, written from the `catches` markers (bench/detection/catalogue.py):
each row of the device test table ends with the faults its test is proven to catch. The rest of
the row is prose kept by hand; this column is never edited by hand.

    python -m bench.detection.tests_doc      # rewrite the column in docs/tests.md
"""

from __future__ import annotations

import re
import sys

from bench.detection.catalogue import marked_tests
from bench.locations import find_root

_ROW = re.compile(r"^(\| `(?P<test>test_\w+\.py::test_\w+)` \|.*\| )(?P<catches>[^|]*)\|$", re.M)


def catches_cell(faults: tuple[str, ...]) -> str:
    return ", ".join(f"`{f}`" for f in faults) if faults else "—"


def with_catches_column(doc: str, marked: dict[str, tuple[str, ...]]) -> str:
    """The document with every table row's last cell set from the markers (by the test's file::name)."""
    by_short = {nodeid.split("/")[-1]: faults for nodeid, faults in marked.items()}
    return _ROW.sub(lambda m: f"{m.group(1)}{catches_cell(by_short.get(m.group('test'), ()))} |", doc)


def main() -> int:
    path = find_root() / "docs" / "tests.md"
    doc = path.read_text(encoding="utf-8")
    new = with_catches_column(doc, marked_tests())
    path.write_text(new, encoding="utf-8")
    print(f"{path}: catches column {'rewritten' if new != doc else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
