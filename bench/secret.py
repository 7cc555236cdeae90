"""Secrets (device keys, JWT secrets) that cannot leak by accident.

A `Secret` prints as `***` in str(), repr(), f-strings, tracebacks and dataclass reprs; the
value is only reachable through `reveal()`, which makes every use greppable. `mask()` scrubs
known secret values out of text that came from elsewhere (a UART line echoed by a faulty
device, an exception message) before it is logged or reported.
"""

from __future__ import annotations

from collections.abc import Iterable

MASK = "***"


class Secret:
    __slots__ = ("_value", "name")

    def __init__(self, value: str, name: str = "secret") -> None:
        if not isinstance(value, str):
            raise TypeError(f"{name}: a secret must be a string")
        self._value = value
        self.name = name

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({self.name}={MASK})"

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):  # pickling would carry the value: refuse rather than leak
        raise TypeError("Secret values are not picklable")


def mask(text: str, secrets: Iterable[Secret | str | None]) -> str:
    """Replace every occurrence of each secret (any letter case) in text with ***."""
    for s in secrets:
        if s is None:
            continue
        value = s.reveal() if isinstance(s, Secret) else s
        if len(value) < 4:  # too short to mask without destroying ordinary text
            continue
        lowered = text.lower()
        needle = value.lower()
        if needle not in lowered:
            continue
        out, i = [], 0
        while True:
            j = lowered.find(needle, i)
            if j < 0:
                out.append(text[i:])
                break
            out.append(text[i:j])
            out.append(MASK)
            i = j + len(needle)
        text = "".join(out)
    return text
