"""Secrets (device keys, JWT secrets) that cannot leak by accident, and text from elsewhere made
safe to log and report.

A `Secret` prints as `***` in str(), repr(), f-strings, tracebacks and dataclass reprs; the
value is only reachable through `reveal()`, which makes every use greppable. `mask()` scrubs
known secret values out of text that came from elsewhere (a UART line echoed by a faulty
device, an exception message) before it is logged or reported: in every common encoding a
firmware might print a key in, since a leak in base64 is still a leak. `shown()` makes such
text one printable line of bounded length (a device may send control bytes or a megabyte).
"""

from __future__ import annotations

import base64
import re
import string
from collections.abc import Iterable
from functools import lru_cache

MASK = "***"
LINE_LIMIT = 200  # characters of a foreign line shown in an error message or report
_MIN_BYTES = 4  # a secret shorter than this cannot be masked without destroying ordinary text
_MIN_DECIMAL_BYTES = 8  # below this, the key's value as a number is too short to tell from data
# between the bytes of separated hex: a2:9a, a2 9a, a2-9a, 0xa2, 0xa2,0x9a, \xa2\x9a
_HEX_SEP = r"(?:[\s:,;._-]{1,3}(?:0x|\\x)?|0x|\\x)"


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


def _key_bytes(value: str) -> list[bytes]:
    """The byte strings a secret stands for: a hex key's bytes and its text, else its text."""
    text = value.encode("utf-8")
    if len(value) % 2 == 0 and all(c in string.hexdigits for c in value):
        return [bytes.fromhex(value), text]
    return [text]


def _spellings(raw: bytes) -> tuple[list[str], list[str]]:
    """(case-insensitive, case-sensitive) regex alternatives for one byte string: hex (padded,
    unpadded as `Serial.print(b, HEX)` prints it, separated), base64 std/url with or without
    padding, and the bytes as a big- and little-endian decimal integer."""
    hexed = [f"{b:02x}" for b in raw]
    nocase = [re.escape(raw.hex()), "".join(f"{b:x}" for b in raw), r"(?:0x|\\x)?" + _HEX_SEP.join(hexed)]
    exact = []
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        exact.append(re.escape(encoded.decode("ascii").rstrip("=")) + "=*")
    if len(raw) >= _MIN_DECIMAL_BYTES:
        exact += [str(int.from_bytes(raw, "big")), str(int.from_bytes(raw, "little"))]
    return nocase, exact


@lru_cache(maxsize=64)
def _pattern(value: str) -> re.Pattern[str] | None:
    """One regex matching the secret in any of its spellings, longest first."""
    if len(value) < _MIN_BYTES:
        return None
    nocase, exact = [re.escape(value)], []
    for raw in _key_bytes(value):
        if len(raw) >= _MIN_BYTES:
            more_nocase, more_exact = _spellings(raw)
            nocase += more_nocase
            exact += more_exact
    alternatives = sorted({f"(?i:{p})" for p in nocase} | set(exact), key=len, reverse=True)
    return re.compile("|".join(alternatives))


def mask(text: str, secrets: Iterable[Secret | str | None]) -> str:
    """Replace every occurrence of each secret in text with ***: as given (any letter case), and
    a key's bytes in hex (either case, separated or not), base64 (standard or URL-safe, padded or
    not) and decimal (big- or little-endian)."""
    for s in secrets:
        if s is None:
            continue
        pattern = _pattern(s.reveal() if isinstance(s, Secret) else s)
        if pattern is not None:
            text = pattern.sub(MASK, text)
    return text


_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}


def shown(text: str, limit: int = LINE_LIMIT) -> str:
    """Foreign text as one printable line: control characters (BEL, ESC, CR, ...) escaped as
    \\xNN, and past `limit` characters cut with the whole length noted. Mask secrets first: a
    cut could split one so that mask() no longer finds it."""
    head = text[:limit].translate(_ESCAPES)
    if len(text) > limit:
        return f"{head}... [{len(text)} characters in all, {len(text) - limit} not shown]"
    return head


def redacted(text: str, secrets: Iterable[Secret | str | None], limit: int = LINE_LIMIT) -> str:
    """mask() then shown(): what an error message or a report may say of a line from a device."""
    return shown(mask(text, secrets), limit)


def url_shown(url: str) -> str:
    """A URL as output may show it: the password of `scheme://user:password@host/...` is ***."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds.split("/", 1)[0]:
        return url
    return f"{scheme}://{creds.split(':', 1)[0]}:{MASK}@{host}"


def url_password(url: str) -> Secret | None:
    """The password of a URL, for `mask` over text that may quote it (a driver's error)."""
    _scheme, _sep, rest = url.partition("://")
    creds, at, _host = rest.rpartition("@")
    return Secret(creds.split(":", 1)[1], "URL password") if at and ":" in creds else None
