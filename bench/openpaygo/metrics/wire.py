"""Bytes on the wire <-> plain values (dict, list, str, int, float, bool, None).

JSON is read strictly (RFC 8259: UTF-8, no NaN/Infinity, no duplicate keys, finite numbers, no
unpaired surrogate escapes: they have no UTF-8 form), CBOR is read with cbor2 and then held to the
same value model (no tags, byte strings, undefined or trailing bytes), so that whatever the
encoding, the rest of the code sees one kind of value and a signature has one canonical JSON text
("Re-dumped JSON" in docs/metrics.md). Nesting is bounded before anything walks it.

`json_spans` finds where top-level values sit in a JSON text, so a signature over the device's
own bytes ("12.50") can be checked too, not only over the canonical re-dump ("12.5")."""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import cbor2

from bench.openpaygo.metrics.errors import MetricsError

MAX_BODY_BYTES = 4096 * 1024  # v1.0: "The maximum size of a Device Request object should be 4096 KB"
MAX_DEPTH = 32  # a Metrics request nests 6 levels (acc > d > gps); 32 leaves room, 400 would not


class Encoding(Enum):
    JSON = "json"
    CBOR = "cbor"

    @property
    def content_type(self) -> str:
        return f"application/{self.value}"


_MEDIA = {
    "application/json": Encoding.JSON,
    "json": Encoding.JSON,
    "application/cbor": Encoding.CBOR,
    "cbor": Encoding.CBOR,
}


def encoding_of(content_type: str | None) -> Encoding:
    """The encoding named by a Content-Type header (spec: application/json|json|application/cbor|
    cbor, any letter case, parameters allowed; a charset other than UTF-8 is refused)."""
    if not content_type or not content_type.strip():
        raise MetricsError(
            "unsupported_media_type",
            "no Content-Type; expected application/json, json, application/cbor or cbor",
            "Content-Type",
        )
    media, *params = (p.strip() for p in content_type.split(";"))
    enc = _MEDIA.get(media.lower())
    if enc is None:
        shown = media if len(media) <= 60 else media[:57] + "..."
        raise MetricsError(
            "unsupported_media_type",
            f"Content-Type {shown!r} is not one of application/json, json, application/cbor, cbor",
            "Content-Type",
        )
    for p in params:
        name, _, value = p.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise MetricsError(
                "unsupported_media_type",
                f"JSON must be UTF-8 (RFC 8259); got charset {value.strip()[:20]!r}",
                "Content-Type",
            )
    return enc


# -- decoding -------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise _Dup(k)
        out[k] = v
    return out


class _Dup(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259)")


# RFC 8259 section 8.2: "\uDEAD" alone is grammatical but encodes no Unicode character; it has no
# UTF-8 form, so no CBOR text, store or signature could hold it as sent.
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_MESSAGE = "an unpaired UTF-16 surrogate (\\ud800-\\udfff escape) is not a Unicode character (RFC 8259, 8.2)"


def _shown(key: str) -> str:
    """A key as a `where` path shows it: an unpaired surrogate as its \\u escape."""
    return key if key.isascii() else key.encode("utf-8", "backslashreplace").decode("utf-8")


def _unpaired(text: str) -> bool:
    """True if the text holds an unpaired surrogate (json.loads joins the valid pairs)."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def _clean(value: Any, limit: int) -> bool:
    """True if `_refusal_at` would find nothing: the same checks without building a path for
    every value (a request is hundreds of values; the refusal's path is made only when needed)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        t = type(v)
        if t is not list and t is not dict:
            if (t is float and not math.isfinite(v)) or (t is str and _unpaired(v)):
                return False
            continue
        if depth > limit:
            return False
        if t is dict:
            for k in v:
                if _unpaired(k):
                    return False
            v = v.values()
        for c in v:
            tc = type(c)
            if tc is float:
                if not math.isfinite(c):
                    return False
            elif tc is str:
                if _unpaired(c):
                    return False
            elif tc is list or tc is dict:
                stack.append((c, depth + 1))
    return True


def _refusal_at(value: Any, limit: int) -> MetricsError | None:
    """The first container nested deeper than `limit`, string holding an unpaired surrogate, or
    number beyond the float range, as a refusal naming its path; None if there is none
    (iterative: the value may be up to the parser's own recursion limit deep)."""
    if _clean(value, limit):
        return None
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        v, depth, where = stack.pop()
        if isinstance(v, str) and _unpaired(v):
            return MetricsError("bad_json", _SURROGATE_MESSAGE, where or "$")
        if isinstance(v, float) and not math.isfinite(v):
            return MetricsError("bad_json", "a number out of the float range", where or "$")
        if isinstance(v, (list, dict)):
            if depth > limit:
                return MetricsError("too_deep", f"nesting deeper than {limit} levels", (where or "$")[:60] + "...")
            if isinstance(v, dict):
                for k, child in v.items():
                    path = f"{where}.{_shown(k)}" if where else _shown(k)
                    if _unpaired(k):
                        return MetricsError("bad_json", _SURROGATE_MESSAGE, path)
                    stack.append((child, depth + 1, path))
            else:
                stack.extend((child, depth + 1, f"{where}[{i}]") for i, child in enumerate(v))
    return None


def decode_json(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MetricsError("bad_json", f"not UTF-8 (byte {e.start})", f"byte {e.start}") from None
    if text.startswith("\ufeff"):
        raise MetricsError("bad_json", "a byte order mark is not allowed in JSON (RFC 8259, section 8.1)", "byte 0")
    try:
        # numbers beyond the float range parse as infinities: `_refusal_at` refuses them
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except RecursionError:
        raise MetricsError("too_deep", f"nesting deeper than {max_depth} levels", "") from None
    except _Dup as e:
        raise MetricsError("bad_json", f"duplicate key {e.key[:40]!r} in one object", "") from None
    except json.JSONDecodeError as e:
        raise MetricsError(
            "bad_json", f"{e.msg} at line {e.lineno} column {e.colno}", f"line {e.lineno} column {e.colno}"
        ) from None
    except ValueError as e:  # huge integers (int max str digits), floats beyond the range
        raise MetricsError("bad_json", str(e)[:120], "") from None
    refusal = _refusal_at(value, max_depth)
    if refusal is not None:
        raise refusal
    return value


class _EveryTagKept(Mapping[int, Callable[[Any, bool], Any]]):
    """cbor2's `semantic_decoders` for every tag number: the tagged item is kept as a CBORTag,
    so `_plain` refuses it where it sits. cbor2 looks each tag up here before its own decoders,
    which would otherwise turn tag 2/3 into a plain int (a bignum), 0/1 into a datetime, 28
    (value sharing) and 55799 (self-described CBOR) into the bare item, all looking like JSON."""

    def __getitem__(self, tag: int) -> Callable[[Any, bool], Any]:
        return lambda item, _immutable: cbor2.CBORTag(tag, item)

    def __iter__(self) -> Iterator[int]:
        return iter(())  # every tag is in it; none is worth listing

    def __len__(self) -> int:
        return 0


_KEEP_TAGS = _EveryTagKept()
_TAG_NAMES = {0: "a date/time string", 1: "an epoch date/time", 2: "a positive bignum", 3: "a negative bignum"}


def decode_cbor(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    fp = io.BytesIO(body)
    try:
        value = cbor2.CBORDecoder(fp, semantic_decoders=_KEEP_TAGS).decode()
    except RecursionError:
        raise MetricsError("too_deep", "CBOR nesting too deep", "") from None
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, MemoryError) as e:
        if "nesting depth" in str(e):
            raise MetricsError("too_deep", "CBOR nesting too deep", f"byte {fp.tell()}") from None
        raise MetricsError("bad_cbor", str(e)[:120] or type(e).__name__, f"byte {fp.tell()}") from None
    if fp.tell() != len(body):
        raise MetricsError("bad_cbor", f"{len(body) - fp.tell()} bytes after the first CBOR item", f"byte {fp.tell()}")
    return _plain(value, "", 1, max_depth)


_SCALARS = (str, int, float, bool, type(None))


def _plain(value: Any, where: str, depth: int, max_depth: int) -> Any:
    """Hold a CBOR-decoded value to the JSON value model. Integer map keys (natural in CBOR for
    index-keyed rows, {6: 1}) become their decimal strings, as JSON would carry them."""
    if depth > max_depth:
        raise MetricsError("too_deep", f"nesting deeper than {max_depth} levels", where)
    if isinstance(value, float) and not math.isfinite(value):
        raise MetricsError("bad_cbor", "NaN and infinities have no JSON form", where)
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, cbor2.CBORTag):
        raise MetricsError("bad_cbor", _tag_refusal(value.tag), where or "$")
    if isinstance(value, list):
        return [_plain(v, f"{where}[{i}]", depth + 1, max_depth) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, int) and not isinstance(k, bool) and k >= 0:
                k = str(k)
            if isinstance(k, cbor2.CBORTag):
                raise MetricsError("bad_cbor", f"a map key: {_tag_refusal(k.tag)}", where or "$")
            if not isinstance(k, str):
                raise MetricsError(
                    "bad_cbor",
                    f"map key of type {type(k).__name__}; expected text or an unsigned integer",
                    where or "$",
                )
            if k in out:
                raise MetricsError("bad_cbor", f"duplicate key {k[:40]!r} in one map", where or "$")
            out[k] = _plain(v, f"{where}.{k}" if where else k, depth + 1, max_depth)
        return out
    what = type(value).__name__
    raise MetricsError(
        "bad_cbor", f"a CBOR {what} (tag, byte string, undefined or simple value) has no JSON form", where or "$"
    )


def _tag_refusal(tag: int) -> str:
    what = _TAG_NAMES.get(tag, "")
    return (
        f"CBOR tag {tag}{f' ({what})' if what else ''} is not allowed: "
        "a Metrics body holds the values JSON can carry, and no tags"
    )


def decode(body: bytes, encoding: Encoding, max_bytes: int = MAX_BODY_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Bytes -> plain value, or MetricsError (413 too large, 400 unreadable)."""
    if len(body) > max_bytes:
        raise MetricsError("too_large", f"{len(body)} bytes; the limit is {max_bytes} (4096 KB)", "")
    if not body:
        raise MetricsError("bad_json" if encoding is Encoding.JSON else "bad_cbor", "empty body", "")
    return decode_json(body, max_depth) if encoding is Encoding.JSON else decode_cbor(body, max_depth)


# -- encoding -------------------------------------------------------------------------------


# json.dumps(separators=(",", ":")) builds an encoder per call; an `ra` request is 30-odd calls.
# This is the C encoder json.dumps itself uses, made once: the same text (no circular-reference
# check: every value here comes from a decoded body or the bench's own plain values).
_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_COMPACT = (
    _c_make_encoder(
        None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True
    )
    if _c_make_encoder is not None
    else None
)


def canonical_json(value: Any) -> str:
    """The compact JSON a signature is computed over: exactly Python's
    json.dumps(separators=(",", ":")) as the reference implementation does ("Re-dumped JSON" in
    docs/metrics.md)."""
    if _COMPACT is None:  # pragma: no cover - a Python without the json C speedups
        return json.dumps(value, separators=(",", ":"))
    return "".join(_COMPACT(value, 0))


def encode(value: Any, encoding: Encoding) -> bytes:
    if encoding is Encoding.JSON:
        return canonical_json(value).encode("ascii")
    return cbor2.dumps(value)


# -- raw spans (signatures over the device's own text) ---------------------------------------


@dataclass(frozen=True)
class Span:
    start: int
    end: int


_WS = " \t\n\r"
_DECODER = json.JSONDecoder()


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def json_spans(text: str) -> dict[str, Span]:
    """Where each top-level member's value sits in a JSON object text (key -> span)."""
    spans: dict[str, Span] = {}
    i = _skip_ws(text, 0)
    if i >= len(text) or text[i] != "{":
        return spans
    i = _skip_ws(text, i + 1)
    while i < len(text) and text[i] != "}":
        if text[i] != '"':
            return spans
        key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]  # public since Python 2, not in typeshed
        i = _skip_ws(text, i)
        if i >= len(text) or text[i] != ":":
            return spans
        i = _skip_ws(text, i + 1)
        _, end = _DECODER.raw_decode(text, i)
        spans[key] = Span(i, end)
        i = _skip_ws(text, end)
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
    return spans


def array_item_spans(text: str, span: Span) -> list[Span]:
    """Where each item of the JSON array at `span` sits."""
    i = _skip_ws(text, span.start)
    if text[i] != "[":
        return []
    items: list[Span] = []
    i = _skip_ws(text, i + 1)
    while i < span.end and text[i] != "]":
        _, end = _DECODER.raw_decode(text, i)
        items.append(Span(i, end))
        i = _skip_ws(text, end)
        if text[i] == ",":
            i = _skip_ws(text, i + 1)
    return items
