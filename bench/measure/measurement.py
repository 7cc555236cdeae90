"""Measurements with units and limits, recorded even after one fails (as OpenHTF does).

A test records every number it measures; the test fails at the end if any is out of limits, so
the record always holds all of them, not just the first that went wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.measure.quantity import format_quantity
from bench.measure.spec import SpecError, TestSpec, is_marginal


@dataclass(frozen=True)
class Measurement:
    name: str
    value: float | int | str | bool
    unit: str = ""
    low: float | None = None
    high: float | None = None
    expected: str | bool | None = None  # for non-numeric measurements
    doc: str = ""
    marginal_band: float = 0.0  # the spec's marginal fraction (bench/measure/spec.py)
    spec_entry: str | None = None  # the spec entry that set the limits, None without a spec

    @property
    def marginal(self) -> bool:
        """Passes, but inside the spec's band next to a limit: worth a look before it fails."""
        return self.outcome == "PASS" and is_marginal(self.value, self.low, self.high, self.marginal_band)

    @property
    def verdict(self) -> str:
        return "PASS (marginal)" if self.marginal else self.outcome

    @property
    def outcome(self) -> str:
        """PASS or FAIL against the limits (a measurement without limits always passes)."""
        if self.expected is not None:
            return "PASS" if self.value == self.expected else "FAIL"
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            return "PASS"
        if math.isnan(self.value):
            return "FAIL"
        if self.low is not None and self.value < self.low:
            return "FAIL"
        if self.high is not None and self.value > self.high:
            return "FAIL"
        return "PASS"

    @property
    def judged(self) -> bool:
        """Has limits or an expected value: its PASS means something. Without, it is recorded as
        evidence (a seed, a sample count) and passes by definition."""
        return self.expected is not None or self.low is not None or self.high is not None

    def limits_text(self) -> str:
        if self.expected is not None:
            return f"== {self.expected}"
        if self.low is not None and self.high is not None:
            low = format_quantity(self.low, self.unit, (self.value, self.high), trim=True)
            high = format_quantity(self.high, self.unit, (self.value, self.low), trim=True)
            number, _, unit = high.partition(" ")  # one unit after the pair: [-1.006, 1.006] s
            return f"[{low.partition(' ')[0]}, {number}] {unit}".strip()
        if self.low is not None:
            return f">= {format_quantity(self.low, self.unit, (self.value,), trim=True)}"
        if self.high is not None:
            return f"<= {format_quantity(self.high, self.unit, (self.value,), trim=True)}"
        return "(no limit)"

    def value_text(self) -> str:
        return format_quantity(self.value, self.unit, (x for x in (self.low, self.high) if x is not None))

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "low": self.low,
            "high": self.high,
            "expected": self.expected,
            "outcome": self.outcome,
            "marginal": self.marginal,
            "spec_entry": self.spec_entry,
        }


@dataclass
class Measurements:
    """All measurements one test made, in order; with a spec, each judged by the spec's limits."""

    items: list[Measurement] = field(default_factory=list)
    spec: TestSpec | None = None

    def __call__(
        self,
        name: str,
        value,
        unit: str = "",
        low: float | None = None,
        high: float | None = None,
        expected=None,
        doc: str = "",
    ) -> Measurement:
        band, entry = 0.0, None
        if self.spec is not None:
            applied = self.spec.apply(name, unit, low, high)
            if expected is not None and applied.entry.mode == "spec":
                raise SpecError(
                    str(self.spec.path),
                    applied.entry.pattern,
                    f"limits for {name}, which the test compares with one value ({expected!r}); "
                    'expected limits = "test"',
                )
            low, high, band, entry = applied.low, applied.high, applied.marginal, applied.entry.pattern
        m = Measurement(name, value, unit, low, high, expected, doc, band, entry)
        self.items.append(m)
        return m

    @property
    def failed(self) -> list[Measurement]:
        return [m for m in self.items if m.outcome == "FAIL"]

    def failure_text(self) -> str:
        return "; ".join(f"{m.name} = {m.value_text()} outside {m.limits_text()}" for m in self.failed)
