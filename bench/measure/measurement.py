"""Measurements with units and limits, recorded even after one fails (as OpenHTF does).

A test records every number it measures; the test fails at the end if any is out of limits, so
the record always holds all of them, not just the first that went wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Measurement:
    name: str
    value: float | int | str | bool
    unit: str = ""
    low: float | None = None
    high: float | None = None
    expected: str | bool | None = None  # for non-numeric measurements
    doc: str = ""

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

    def limits_text(self) -> str:
        if self.expected is not None:
            return f"== {self.expected}"
        if self.low is not None and self.high is not None:
            return f"[{self.low:g}, {self.high:g}] {self.unit}".strip()
        if self.low is not None:
            return f">= {self.low:g} {self.unit}".strip()
        if self.high is not None:
            return f"<= {self.high:g} {self.unit}".strip()
        return "(no limit)"

    def value_text(self) -> str:
        if isinstance(self.value, float):
            return f"{self.value:.6g} {self.unit}".strip()
        return f"{self.value} {self.unit}".strip()

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "low": self.low,
            "high": self.high,
            "expected": self.expected,
            "outcome": self.outcome,
        }


@dataclass
class Measurements:
    """All measurements one test made, in order."""

    items: list[Measurement] = field(default_factory=list)

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
        m = Measurement(name, value, unit, low, high, expected, doc)
        self.items.append(m)
        return m

    @property
    def failed(self) -> list[Measurement]:
        return [m for m in self.items if m.outcome == "FAIL"]

    def failure_text(self) -> str:
        return "; ".join(f"{m.name} = {m.value_text()} outside {m.limits_text()}" for m in self.failed)
