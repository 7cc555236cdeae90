"""The mutation benchmark's own parts (benchmarks/mutation_ops.py, mutation_overlay.py and
bench/detection/mutation_doc.py): what the mutator changes and leaves alone, that the overlay
serves a mutant to the simulator process only, and that the score's section survives a rewrite
of the matrix doc. No device suite runs here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.detection.mutation_doc import BEGIN, END, between_markers, with_section
from tests.selftest.benchmark_modules import load_benchmark

ROOT = Path(__file__).resolve().parents[2]


ops = load_benchmark("mutation_ops")
overlay = load_benchmark("mutation_overlay")

SOURCE = '''
"""Docstring 7."""
LIMIT: int = 16


def ok(a: int, b: list[int] = []) -> bool:
    """Says 3."""
    if a < LIMIT and not b:
        raise ValueError(f"bad {a + 1}")
    return a % 2 == 1
'''


def test_the_mutator_changes_operators_and_constants_but_not_docs_hints_or_raises():
    labels = sorted(s.label for s in ops.sites(SOURCE))
    assert labels == sorted(
        [
            "`16` -> `17`",
            "`16` -> `15`",
            "`16` -> `0`",
            "`<` -> `<=`",
            "`<` -> `>=`",
            "`and` -> `or`",
            "`not` dropped",
            "`%` -> `//`",
            "`2` -> `3`",
            "`2` -> `1`",
            "`2` -> `0`",
            "`==` -> `!=`",
            "`1` -> `2`",
            "`1` -> `0`",
            "`return x` -> `return not x`",
        ]
    )


def test_each_mutant_differs_from_the_original_in_one_place(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(SOURCE)
    made = list(ops.mutants("m", path))
    texts = {m.source for m in made}
    assert len(texts) == len(made) == 15
    assert any("a <= LIMIT" in t for t in texts) and any("return not a % 2 == 1" in t for t in texts)


def test_the_overlay_serves_the_mutant_to_the_simulator_only(tmp_path):
    """`python -m bench.sim` imports the mutant (here one that stops it at once); the bench's
    own processes import the real module."""
    mutant = "raise SystemExit('mutant served')\n"
    folder = overlay.write_overlay(tmp_path / "o", module="bench.sim.token_decoder", source=mutant, origin="x")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}
    plain = [sys.executable, "-c", "import bench.sim.token_decoder as d; print(d.MAX_TOKEN_JUMP)"]
    assert subprocess.run(plain, env=env, capture_output=True, text=True, timeout=60).stdout.strip() == "64"
    assert not (folder / "served").exists()
    sim = subprocess.run(
        [sys.executable, "-m", "bench.sim", "--help"], env=env, capture_output=True, text=True, timeout=60
    )
    assert "mutant served" in sim.stderr and sim.returncode != 0
    assert (folder / "served").exists() and (folder / "import-error").exists()


def test_the_score_section_is_replaced_not_repeated():
    section = f"{BEGIN}\n## Mutation score\nold\n{END}"
    doc = with_section("# Detection matrix\n\ntext\n", section)
    assert between_markers(doc) == section
    newer = section.replace("old", "new")
    again = with_section(doc, newer)
    assert between_markers(again) == newer and again.count(BEGIN) == 1 and "old" not in again
    assert with_section("# Detection matrix\n", None) == "# Detection matrix\n"
