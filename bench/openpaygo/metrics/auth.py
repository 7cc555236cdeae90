"""OpenPAYGO Metrics payload signatures (`a`): sa, ta, ca, da, ra on requests, da on replies.

The hash is SipHash-2-4 keyed with the device's 16-byte token key, as openpaygo computes it
(`OpenPAYGOMetricsShared.generate_hash_string`: the 64-bit value of the little-endian digest).
`siphash64` runs it in C (the `siphash24` package) when that imports, else openpaygo's pure
Python: an `ra` request is 30-odd hashes, most of the server's time per request in pure Python
(benchmarks/metrics_ingest.py); a self-test holds both to the same values. Signing follows the reference implementation byte for byte
(docs/metrics.md "Authentication"):
lowercase hex with NO zero padding, strings built from Python str() and compact JSON, fields left
out when falsy, `ra` chaining the unpadded hex of each step.

Verifying is deliberately more tolerant than the reference (we must not inherit its bugs):
- the hex may be zero-padded or not ("Unpadded hex" in docs/metrics.md: `%016llx` devices fail
  6% of the time otherwise),
  and in any letter case: values are compared, not strings;
- `da`/`ra` are also checked over the device's own JSON text of ts, rc, d, hd ("Re-dumped JSON" in
  docs/metrics.md: a device that signs `12.50` fails a server that re-dumps it as `12.5`);
- an `ra` chain may carry zero-padded intermediate hashes.
Every tolerance that was needed is reported (`AuthResult.variant`), so the bench can flag it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from openpaygo.metrics_shared import OpenPAYGOMetricsShared

try:  # SipHash-2-4 in C; the pure-Python reference below is the fallback (same values)
    from siphash24 import siphash24 as _c_siphash24  # type: ignore[import-not-found]  # no stubs
except ImportError:  # pragma: no cover - an install without the C extension
    _c_siphash24 = None

from bench.openpaygo.metrics.errors import MetricsError
from bench.openpaygo.metrics.wire import canonical_json
from bench.secret import Secret

METHODS = {"sa": "simple", "ta": "timestamp", "ca": "counter", "da": "data", "ra": "recursive data"}
_AUTH = re.compile(r"(sa|ta|ca|da|ra)([0-9a-fA-F]{1,16})")
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # a member absent from the payload (not the same as null or [])


@dataclass(frozen=True)
class RawText:
    """The device's own JSON text of the signed members (None where absent or not JSON)."""

    timestamp: str | None = None
    request_count: str | None = None
    data: str | None = None
    historical_data: str | None = None
    rows: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SignedFields:
    """What a request signature covers, as the device sent it (before any expansion)."""

    serial_number: str
    timestamp: Any = None
    request_count: Any = None
    data: Any = MISSING
    historical_data: Any = MISSING
    raw: RawText | Callable[[], RawText | None] | None = None  # a callable: found only if needed

    def raw_text(self) -> RawText | None:
        return self.raw() if callable(self.raw) else self.raw


@dataclass(frozen=True)
class AuthResult:
    method: str  # "sa" | "ta" | "ca" | "da" | "ra"
    variant: str  # "reference" or the tolerance that made it verify

    def describe(self) -> str:
        return self.method if self.variant == "reference" else f"{self.method} ({self.variant})"


def _key_hex(key: Secret | str) -> str:
    raw = key.reveal() if isinstance(key, Secret) else key
    if not isinstance(raw, str) or not _HEX32.fullmatch(raw):
        raise ValueError("a Metrics key must be 32 hexadecimal characters (16 bytes)")
    return raw


SIPHASH_IMPL = "C (siphash24)" if _c_siphash24 is not None else "pure Python (openpaygo)"
_KEY_BYTES: dict[str, bytes] = {}  # hex key -> its 16 bytes (the registry holds few keys)
_U64 = 2**64 - 1


def siphash64_reference(key: Secret | str, message: str) -> int:
    """SipHash-2-4 of the UTF-8 message, computed by openpaygo's pure Python (as an int)."""
    return int(OpenPAYGOMetricsShared.generate_hash_string(message, _key_hex(key)), 16)


def hasher(key: Secret | str) -> Callable[[str], int]:
    """`siphash64` with the key resolved once: an `ra` chain is 30-odd hashes under one key."""
    if _c_siphash24 is None:  # pragma: no cover - an install without the C extension
        return lambda message: siphash64_reference(key, message)
    raw = key.reveal() if isinstance(key, Secret) else key
    kb = _KEY_BYTES.get(raw) if isinstance(raw, str) else None
    if kb is None:
        kb = bytes.fromhex(_key_hex(key))
        if len(_KEY_BYTES) < 4096:
            _KEY_BYTES[raw] = kb
    c_hash = _c_siphash24

    def h(message: str) -> int:
        return c_hash(message.encode("utf-8"), key=kb).intdigest() & _U64  # intdigest is signed

    return h


def siphash64(key: Secret | str, message: str) -> int:
    """SipHash-2-4 of the UTF-8 message as openpaygo computes it (as an int: padding is ours);
    in C when `siphash24` is installed (`SIPHASH_IMPL` says which)."""
    return hasher(key)(message)


def hex_of(value: int, pad: bool = False) -> str:
    return f"{value:016x}" if pad else f"{value:x}"


# -- requests ---------------------------------------------------------------------------------


def _parts(f: SignedFields, raw: bool) -> tuple[str, str, str | None, str | None, list[str]]:
    """(ts, rc, data JSON or None, historical JSON or None, row JSONs) as the signature sees them."""
    r = f.raw_text() if raw else None

    def scalar(value: Any, raw_text: str | None) -> str:
        if isinstance(value, str):
            return value
        return raw_text if r is not None and raw_text is not None else str(value)

    ts = scalar(f.timestamp, r.timestamp if r else None) if f.timestamp else ""
    rc = scalar(f.request_count, r.request_count if r else None) if f.request_count else ""
    data = None
    if f.data is not MISSING:
        data = r.data if r is not None and r.data is not None else canonical_json(f.data)
    hd = None
    rows: list[str] = []
    if f.historical_data is not MISSING:
        own_rows = None
        if isinstance(f.historical_data, list):
            if r is not None and r.rows is not None and len(r.rows) == len(f.historical_data):
                rows = list(r.rows)
            else:
                rows = own_rows = [canonical_json(row) for row in f.historical_data]
        if r is not None and r.historical_data is not None:
            hd = r.historical_data
        else:  # a list's compact JSON is its items' joined by "," (what json.dumps writes)
            hd = "[" + ",".join(own_rows) + "]" if own_rows is not None else canonical_json(f.historical_data)
    return ts, rc, data, hd, rows


def request_signature(f: SignedFields, method: str, key: Secret | str, *, pad: bool = False, raw: bool = False) -> str:
    """The `a` value for a request, e.g. "da64c00b295ccf6ef5". Reference output with the
    defaults; `pad` zero-pads every hex (including the `ra` chain), `raw` uses the device's text.
    ValueError if the method needs a field the request lacks (ta: ts, ca: rc), as the reference."""
    ts, rc, data, hd, rows = _parts(f, raw)
    sn = f.serial_number
    sip = hasher(key)
    if method == "sa":
        h = sip(sn)
    elif method == "ta":
        if not ts:
            raise ValueError("timestamp auth (ta) needs a timestamp")
        h = sip(sn + ts)
    elif method == "ca":
        if not rc:
            raise ValueError("counter auth (ca) needs a request_count")
        h = sip(sn + rc)
    elif method == "da":
        payload = sn + ts + rc
        if f.data is not MISSING and f.data:
            payload += data or ""
        if f.historical_data is not MISSING and f.historical_data:
            payload += hd or ""
        h = sip(payload)
    elif method == "ra":
        fmt = "016x" if pad else "x"
        chain = format(sip(sn), fmt)
        for step in (ts, rc):
            if step:
                chain = format(sip(chain + step), fmt)
        chain = format(sip(chain + (data if data is not None else "[]")), fmt)
        for row in rows:
            chain = format(sip(chain + row), fmt)
        return "ra" + chain
    else:
        raise ValueError(f"unknown auth method {method!r}; expected one of {', '.join(METHODS)}")
    return method + hex_of(h, pad)


def parse_auth(auth: Any, where: str = "a") -> tuple[str, int]:
    """(method, hash value) of an `a` string; MetricsError auth_malformed otherwise."""
    if not isinstance(auth, str):
        raise MetricsError("auth_malformed", "auth must be a string", where)
    m = _AUTH.fullmatch(auth)
    if m is None:
        raise MetricsError(
            "auth_malformed",
            f"auth must be sa|ta|ca|da|ra followed by 1..16 hex digits (got {len(auth)} characters)",
            where,
        )
    return m.group(1), int(m.group(2), 16)


def verify_request(f: SignedFields, auth: Any, key: Secret | str) -> AuthResult:
    """Check a request's `a`; AuthResult on success, MetricsError (403) otherwise."""
    method, value = parse_auth(auth)
    if method == "ta" and not f.timestamp:
        raise MetricsError("auth_invalid", "timestamp auth (ta) but the request has no timestamp", "a")
    if method == "ca" and not f.request_count:
        raise MetricsError("auth_invalid", "counter auth (ca) but the request has no request_count", "a")
    variants: list[tuple[str, bool, bool]] = [("reference", False, False)]
    if method == "ra":
        variants.append(("zero-padded chain", True, False))
    if f.raw is not None and method in ("ta", "ca", "da", "ra"):
        variants.append(("device's own JSON text", False, True))
        if method == "ra":
            variants.append(("device's own JSON text, zero-padded chain", True, True))
    seen: set[str] = set()
    for name, pad, raw in variants:
        sig = request_signature(f, method, key, pad=pad, raw=raw)
        if sig in seen:
            continue
        seen.add(sig)
        if int(sig[2:], 16) == value:
            return AuthResult(method, name)
    raise MetricsError(
        "auth_invalid", f"the {METHODS[method]} auth ({method}) signature does not verify with this device's key", "a"
    )


# -- replies ----------------------------------------------------------------------------------


def reply_signature(
    key: Secret | str,
    serial_number: str,
    *,
    timestamp: Any = None,
    request_count: Any = None,
    active_until_timestamp: Any = None,
    active_seconds_left: Any = None,
    token_list: Iterable | None = None,
    settings: dict | None = None,
    extra_data: dict | None = None,
    pad: bool = False,
) -> str:
    """The reply's `a` ("da..."): SipHash of sn + request ts + request rc + auts + asl + tkl JSON
    + st JSON + ed JSON, each left out when falsy: the reference order and rules."""
    payload = serial_number
    for value in (timestamp, request_count, active_until_timestamp, active_seconds_left):
        if value:
            payload += str(value)
    for value in (list(token_list) if token_list is not None else None, settings, extra_data):
        if value:
            payload += canonical_json(value)
    return "da" + hex_of(siphash64(key, payload), pad)


def verify_reply(auth: Any, key: Secret | str, serial_number: str, **fields: Any) -> bool:
    """True if a reply's `a` is the data auth of these fields (padding and case tolerated)."""
    try:
        method, value = parse_auth(auth)
    except MetricsError:
        return False
    return method == "da" and int(reply_signature(key, serial_number, **fields)[2:], 16) == value
