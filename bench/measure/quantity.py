"""How a measured number is printed (report, record's limits text, failure messages): at a
precision that suits its unit, not Python's repr (`7.945 ms`, not `0.00794506 s`).

- s, V, A, W, Hz, Ohm: four significant digits of the largest number shown together (a value
  and its limits share one prefix and one number of decimals), below 1 scaled to m, µ or n;
- ppm, %, dB: one decimal;
- anything else: integers as they are, other numbers to four significant digits;
- a value never prints equal to a limit it differs from: decimals are added until they differ
  (a FAIL of 1.4996 s against >= 1.5 s must not read `1.500 s`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

PREFIXED_UNITS = frozenset({"s", "V", "A", "W", "Hz", "Ohm"})
ONE_DECIMAL_UNITS = frozenset({"ppm", "%", "dB"})
PREFIXES = ((1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"))
SIGNIFICANT = 4
MAX_EXTRA_DECIMALS = 6


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _scale(biggest: float) -> tuple[float, str]:
    for factor, prefix in PREFIXES:
        if biggest >= factor:
            return factor, prefix
    return (1.0, "") if biggest == 0 else PREFIXES[-1]


def _decimals(biggest_scaled: float) -> int:
    """Decimals giving SIGNIFICANT digits to the largest number shown (never negative)."""
    if biggest_scaled == 0:
        return SIGNIFICANT - 1
    return max(0, SIGNIFICANT - 1 - math.floor(math.log10(biggest_scaled)))


def format_quantity(value: object, unit: str = "", among: Iterable[object] = (), trim: bool = False) -> str:
    """`value` with its unit, as a person reads it. `among`: the numbers printed beside it (its
    limits; for a limit, the value and the other limit), so that all share prefix and decimals.
    trim: drop trailing zeros (a limit as a spec writes it, `>= 1.5 s`, the value `1.500 s`)."""
    if not _finite(value):
        return f"{value} {unit}".strip()  # text, a flag, an integer id, nan: as recorded
    assert isinstance(value, (int, float))
    others = [float(x) for x in among if _finite(x)]  # type: ignore[arg-type]
    if isinstance(value, int) and unit not in PREFIXED_UNITS and all(float(x).is_integer() for x in others):
        return f"{value} {unit}".strip()
    biggest = max(abs(float(x)) for x in (value, *others))
    factor, prefix = _scale(biggest) if unit in PREFIXED_UNITS else (1.0, "")
    if unit in ONE_DECIMAL_UNITS:
        decimals = 1
    elif unit in PREFIXED_UNITS or biggest >= 1e-3 or biggest == 0:
        decimals = _decimals(biggest / factor)
    else:  # a tiny number of no known unit: significant digits, not a row of zeros
        return f"{value:.{SIGNIFICANT}g} {unit}".strip()
    v = value / factor
    for _ in range(MAX_EXTRA_DECIMALS):  # apart from every number it differs from
        if all(x == value or f"{v:.{decimals}f}" != f"{x / factor:.{decimals}f}" for x in others):
            break
        decimals += 1
    text = f"{v:.{decimals}f}"
    if trim and "." in text:
        text = text.rstrip("0").rstrip(".")
    if text.lstrip("-").strip("0.") == "":
        text = text.lstrip("-")  # -0.000 reads as a sign that is not there
    return f"{text} {prefix}{unit}".strip()
