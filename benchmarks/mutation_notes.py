"""One-line arguments for the mutants benchmarks/mutation.py leaves alive, keyed by (file, the
original source line stripped, mutation): "equivalent" (no behaviour of the device changes: why)
or "real" (a behaviour changes: which device check should catch it)."""

from __future__ import annotations

NOTES: dict[tuple[str, str, str], tuple[str, str]] = {}
