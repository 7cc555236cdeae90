"""The product's test spec: the unit and limits of every measurement, in a TOML file a reviewer
reads without reading code (docs/spec.md), selected by the rig's DUT profile (`dut.spec`, by
default the spec the bench ships for the adapter, `bench/specs/<adapter>.toml`).

Each measurement a device test records is looked up by name (an entry may be a glob such as
`G8*_decode_time`, the most specific match wins):
- `low` / `high` (either or both): the spec's limits replace the ones the test computed;
- `limits = "test"`: the test's own limits stand (they follow from the rig or the run: the
  count the device was just given, the off time the rig asks for), and `why` says so;
- `limits = "none"`: recorded for the evidence only.
`unit` must be the unit the test records in (a mismatch is an error naming both, not a silent
conversion). `marginal` (a fraction, default the file's `[spec] marginal`) is the band inside each
limit where a pass is shown as marginal: the last 10 % of the range for 0.1 (for a one-sided
limit, 10 % of the limit's magnitude).
"""

from __future__ import annotations

import fnmatch
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LIMIT_MODES = ("spec", "test", "none")


def default_spec_path(adapter: str) -> Path | None:
    """The test spec the bench ships for this adapter (bench/specs/<adapter>.toml), if it has one."""
    import bench.specs

    path = Path(bench.specs.__file__).resolve().parent / f"{adapter}.toml"
    return path if path.is_file() else None


class SpecError(ValueError):
    """A spec file that cannot be used, or a measurement it does not allow: one line naming the
    file, the entry and what was expected."""

    def __init__(self, where: str, key: str, message: str) -> None:
        super().__init__(f"{where}: {key}: {message}")


@dataclass(frozen=True)
class SpecEntry:
    pattern: str  # the measurement name, or a glob
    unit: str
    mode: str  # spec | test | none
    low: float | None = None
    high: float | None = None
    marginal: float = 0.0
    why: str = ""

    def applies(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.pattern)


@dataclass(frozen=True)
class Applied:
    """What the spec makes of one measurement."""

    low: float | None
    high: float | None
    marginal: float
    entry: SpecEntry


@dataclass(frozen=True)
class TestSpec:
    __test__ = False

    path: Path
    product: str
    version: str
    entries: tuple[SpecEntry, ...]

    def entry(self, name: str) -> SpecEntry | None:
        """The most specific entry for `name`: an exact name, else the longest matching glob."""
        exact = [e for e in self.entries if e.pattern == name]
        if exact:
            return exact[0]
        globs = sorted((e for e in self.entries if e.applies(name)), key=lambda e: -len(e.pattern))
        return globs[0] if globs else None

    def apply(self, name: str, unit: str, low: float | None, high: float | None) -> Applied:
        """The limits `name` is judged by; SpecError if the spec does not know it or its unit differs."""
        e = self.entry(name)
        if e is None:
            raise SpecError(
                str(self.path),
                name,
                "no entry for this measurement; every measurement needs one "
                '(unit and limits, or limits = "test" / "none" with why)',
            )
        if e.unit != unit:
            raise SpecError(str(self.path), e.pattern, f"unit {e.unit!r}, but the test records {name} in {unit!r}")
        if e.mode == "spec":
            return Applied(e.low, e.high, e.marginal, e)
        if e.mode == "test":
            return Applied(low, high, e.marginal, e)
        return Applied(None, None, 0.0, e)


def is_marginal(value: Any, low: float | None, high: float | None, fraction: float) -> bool:
    """A pass within the band inside a limit (see the module docstring)."""
    if fraction <= 0 or isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return False
    if low is not None and high is not None:
        band = (high - low) * fraction
        return low <= value < low + band or high - band < value <= high
    if high is not None:
        return high - abs(high) * fraction < value <= high
    if low is not None:
        return low <= value < low + abs(low) * fraction
    return False


# -- loading -------------------------------------------------------------------------------------


def _number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(where, key, f"got {value!r}; expected a finite number")
    return float(value)


def _entry(where: str, name: str, raw: Any, default_marginal: float) -> SpecEntry:
    key = f"measurements.{name}"
    if not isinstance(raw, dict):
        raise SpecError(where, key, f"got {type(raw).__name__}; expected a table")
    unknown = set(raw) - {"unit", "low", "high", "limits", "marginal", "why"}
    if unknown:
        raise SpecError(
            where, key, f"unknown key(s) {', '.join(sorted(unknown))}; expected unit, low, high, limits, marginal, why"
        )
    unit = raw.get("unit", "")
    if not isinstance(unit, str):
        raise SpecError(where, f"{key}.unit", f'got {unit!r}; expected a string ("" for a count)')
    mode = raw.get("limits", "spec")
    if mode not in LIMIT_MODES:
        raise SpecError(where, f"{key}.limits", f'got {mode!r}; expected "test" or "none" (or low/high)')
    low = _number(where, f"{key}.low", raw["low"]) if "low" in raw else None
    high = _number(where, f"{key}.high", raw["high"]) if "high" in raw else None
    why = raw.get("why", "")
    if not isinstance(why, str):
        raise SpecError(where, f"{key}.why", f"got {why!r}; expected a string")
    if mode == "spec" and low is None and high is None:
        raise SpecError(where, key, 'no limits; expected low and/or high, or limits = "test" / "none"')
    if mode != "spec" and (low is not None or high is not None):
        raise SpecError(where, key, f"limits = {mode!r} with low/high; expected one or the other")
    if mode != "spec" and not why.strip():
        raise SpecError(where, f"{key}.why", f"missing; limits = {mode!r} must say why")
    if low is not None and high is not None and low > high:
        raise SpecError(where, key, f"low {low:g} > high {high:g}")
    marginal = _number(where, f"{key}.marginal", raw["marginal"]) if "marginal" in raw else default_marginal
    if not 0 <= marginal < 0.5:
        raise SpecError(where, f"{key}.marginal", f"got {marginal:g}; expected a fraction in [0, 0.5)")
    return SpecEntry(name, unit, mode, low, high, marginal, why)


def load_spec(path: Path) -> TestSpec:
    """The spec in `path`; SpecError (one line: file, key, what was expected) if it is not usable."""
    where = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise SpecError(where, "file", f"cannot be read ({e.strerror or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(where, "TOML", str(e)) from None
    head = data.get("spec")
    if not isinstance(head, dict) or not isinstance(head.get("product"), str):
        raise SpecError(where, "spec.product", 'missing; expected [spec] with product = "..."')
    version = str(head.get("version", ""))
    default_marginal = _number(where, "spec.marginal", head.get("marginal", 0.0))
    if not 0 <= default_marginal < 0.5:
        raise SpecError(where, "spec.marginal", f"got {default_marginal:g}; expected a fraction in [0, 0.5)")
    raw = data.get("measurements")
    if not isinstance(raw, dict) or not raw:
        raise SpecError(where, "measurements", "missing; expected [measurements.<name>] tables")
    unknown = set(data) - {"spec", "measurements"}
    if unknown:
        raise SpecError(where, ", ".join(sorted(unknown)), "unknown table(s); expected [spec] and [measurements.*]")
    entries = tuple(_entry(where, name, value, default_marginal) for name, value in raw.items())
    return TestSpec(Path(path), head["product"], version, entries)
