"""The simulated device's OpenPAYGO Metrics payloads: the condensed request it sends, signed, and
the Server Response it reads back and checks.

An independent implementation, as a device firmware has its own: it shares nothing with the
bench's codec (bench/openpaygo/metrics_codec.py, _condense, _reply), which is what judges it; only
the SipHash-2-4 primitive is shared (a hash, not protocol logic). Sources: the Metrics spec
v1.0.0-rc1 and the reference library's behaviour, as docs/metrics.md states them.

Request (condensed, short keys), keys in this order: `sn`, `df` (or `dfo`, the embedded format,
when the device has no registered id), `ts`, `rc`, `d` (array in data_order), `hd` (arrays in
historical_data_order, oldest first; omitted when there are no rows), `a`. Arrays lose their
trailing nulls. JSON is compact canonical JSON (Python's json.dumps with (",", ":"), ASCII), so a
server that re-dumps the values to check a signature gets the device's own text ("Re-dumped
JSON" in docs/metrics.md); CBOR is the same values through cbor2.

Signatures (`a` = method + lowercase hex of SipHash-2-4 keyed with the device key, NOT zero-padded
(a firmware's `%llx`; the reference compares strings: "Unpadded hex" in docs/metrics.md)):
- sa: sn;  ta: sn + ts;  ca: sn + rc;
- da: sn + ts + rc + JSON(d) + JSON(hd), each left out when absent or empty;
- ra: h = H(sn); h = H(hex(h) + ts); h = H(hex(h) + rc) (each when present); h = H(hex(h) +
  JSON(d), "[]" without data); then h = H(hex(h) + JSON(row)) for each row.

Reply: long or short keys. `sn` is required in a non-empty reply and must be this device's (the
async flow: it tells a reply is its own); `{}` means "nothing to say". `a` (`da` over sn +
request ts + request rc + auts + asl + JSON(tkl) + JSON(st) + JSON(ed), each left out when falsy)
is checked whenever present, and required when the reply carries anything but tokens (auts, asl,
st, ed): tokens authenticate themselves, the rest does not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2

from bench.openpaygo.metrics.auth import siphash64
from bench.sim.faults import NO_FAULTS, Fault

AUTH_METHODS = ("sa", "ta", "ca", "da", "ra")
JSON_CT = "application/json"
CBOR_CT = "application/cbor"
ENCODINGS = {"json": JSON_CT, "cbor": CBOR_CT}

_REPLY_KEYS = {
    "sn": "serial_number",
    "tkl": "token_list",
    "auts": "active_until_timestamp",
    "asl": "active_seconds_left",
    "st": "settings",
    "ed": "extra_data",
    "a": "auth",
}
_REPLY_AUTH = re.compile(r"da([0-9a-fA-F]{1,16})")
_DIGITS = re.compile(r"[0-9]{1,20}")


def compact_json(value: Any) -> str:
    """Canonical compact JSON: no spaces, ASCII, Python's number forms (what the reference
    re-dumps a request into before checking its signature)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _hex(key_hex: str, message: str) -> str:
    return format(siphash64(key_hex, message), "x")


# -- requests ---------------------------------------------------------------------------------


def sign_request(
    method: str,
    key_hex: str,
    serial: str,
    *,
    ts: int | None = None,
    rc: int | None = None,
    data: Any = None,
    historical: Sequence[Any] | None = None,
) -> str:
    """The `a` of a request. `data` / `historical` None = not sent. ValueError for an unknown
    method, or ta without ts / ca without rc."""
    ts_text = str(ts) if ts else ""
    rc_text = str(rc) if rc else ""
    if method == "sa":
        return "sa" + _hex(key_hex, serial)
    if method == "ta":
        if not ts_text:
            raise ValueError("timestamp auth (ta) needs a timestamp")
        return "ta" + _hex(key_hex, serial + ts_text)
    if method == "ca":
        if not rc_text:
            raise ValueError("counter auth (ca) needs a request count")
        return "ca" + _hex(key_hex, serial + rc_text)
    if method == "da":
        message = serial + ts_text + rc_text
        if data:
            message += compact_json(data)
        if historical:
            message += compact_json(list(historical))
        return "da" + _hex(key_hex, message)
    if method == "ra":
        h = _hex(key_hex, serial)
        for step in (ts_text, rc_text):
            if step:
                h = _hex(key_hex, h + step)
        h = _hex(key_hex, h + (compact_json(data) if data is not None else "[]"))
        for row in historical or ():
            h = _hex(key_hex, h + compact_json(row))
        return "ra" + h
    raise ValueError(f"unknown auth method {method!r}; one of {', '.join(AUTH_METHODS)}")


def condense(values: Mapping[str, Any], order: Sequence[str]) -> list:
    """Values in the order's positions, trailing nulls dropped."""
    out = [values.get(name) for name in order]
    while out and out[-1] is None:
        out.pop()
    return out


def condense_rows(
    rows: Sequence[Mapping[str, Any]], order: Sequence[str], interval_s: int | None, time_key: str = "timestamp"
) -> list[list]:
    """Historical rows (each with its absolute `time_key`) as arrays. A row's time is sent when
    it is the first, or when it is not `interval_s` after the previous row; otherwise it is left
    out (the format's interval gives it)."""
    out = []
    prev: int | None = None
    for row in rows:
        t = row[time_key]
        values = dict(row)
        if prev is not None and interval_s is not None and t - prev == interval_s:
            values[time_key] = None
        out.append(condense(values, order))
        prev = t
    return out


@dataclass(frozen=True)
class Request:
    """One request as it leaves the device."""

    body: bytes
    content_type: str
    payload: dict  # the values it encodes (short keys)
    ts: int | None
    rc: int | None
    rows: int  # historical rows it carries


def build_request(
    *,
    serial: str,
    key_hex: str,
    auth: str,
    ts: int | None,
    rc: int | None,
    data: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    data_format: Mapping[str, Any],
    df: int,
    encoding: str = "json",
    faults: frozenset[Fault] = NO_FAULTS,
) -> Request:
    """The condensed request. `data` and each row map variable names to values (rows with an
    absolute `timestamp`); `df` 0 embeds `data_format` (dfo) instead of naming it. `auth` is
    one of sa/ta/ca/da/ra, or "none" for an unsigned request.

    `faults` (bench/sim/faults.py) that live here:
    - metrics_wrong_short_key: the key table spells request_count's short key `rqc`, not `rc`
      (the signature still covers the count, as the firmware believes it sent it);
    - metrics_unsigned: auth compiled out (a debug build): no `a`, whatever `auth` says;
    - metrics_mis_signed: the signature is finished before the newest row is appended to `hd`,
      so it covers every row but the last (da and ra fail whenever a request carries rows)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding {encoding!r}; one of {', '.join(ENCODINGS)}")
    payload: dict[str, Any] = {"sn": serial}
    if df:
        payload["df"] = df
    else:
        payload["dfo"] = dict(data_format)
    if ts is not None:
        payload["ts"] = ts
    if rc is not None:
        payload["rqc" if Fault.METRICS_WRONG_SHORT_KEY in faults else "rc"] = rc
    d = condense(data, data_format["data_order"])
    payload["d"] = d
    hd = condense_rows(rows, data_format["historical_data_order"], data_format.get("historical_data_interval"))
    if hd:
        payload["hd"] = hd
    if auth != "none" and Fault.METRICS_UNSIGNED not in faults:
        signed_hd = hd[:-1] if Fault.METRICS_MIS_SIGNED in faults else hd
        payload["a"] = sign_request(auth, key_hex, serial, ts=ts, rc=rc, data=d, historical=signed_hd or None)
    body = compact_json(payload).encode("ascii") if encoding == "json" else cbor2.dumps(payload)
    return Request(body, ENCODINGS[encoding], payload, ts, rc, len(hd))


# -- replies ----------------------------------------------------------------------------------


class ReplyRefused(ValueError):
    """A reply the device does not act on. `reason` is one word (for events and ERR lines)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Reply:
    tokens: tuple[str, ...] = ()  # digit strings, in the order received
    active_until_timestamp: int | None = None
    active_seconds_left: int | None = None
    settings: Mapping[str, Any] | None = None
    extra_data: Mapping[str, Any] | None = None
    authenticated: bool = False  # a valid `a` came with it
    empty: bool = False  # `{}`: the server had nothing to say


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ReplyRefused("malformed", f"key {key[:20]!r} given twice")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_reply(body: bytes, content_type: str | None = None) -> Any:
    """Reply bytes -> value: by Content-Type when given, else by the first byte (`{` is JSON,
    a CBOR map starts with 0xa0..0xbf). ReplyRefused("malformed") if it does not decode."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media in ("application/cbor", "cbor"):
        is_cbor = True
    elif media in ("application/json", "json"):
        is_cbor = False
    elif media:
        raise ReplyRefused("malformed", f"content type {media[:40]!r} is neither JSON nor CBOR")
    else:
        is_cbor = bool(body) and 0xA0 <= body[0] <= 0xBF
    try:
        if is_cbor:
            return cbor2.loads(body)
        return json.loads(body.decode("utf-8"), object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    except ReplyRefused:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure is a malformed reply
        raise ReplyRefused("malformed", f"not {'CBOR' if is_cbor else 'JSON'}: {type(e).__name__}") from None


def token_text(item: Any) -> str:
    """A `tkl` item as the digits a user would type: integers lose their leading zeros on the
    wire, so they are zero-filled to 9 digits (12 for an extended token)."""
    if isinstance(item, str):
        return item
    text = str(item)
    return text.zfill(9) if len(text) <= 9 else text.zfill(12) if len(text) <= 12 else text


def _whole(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ReplyRefused("malformed", f"{name} is not a whole number >= 0")
    return value


def reply_signature(
    key_hex: str,
    serial: str,
    *,
    ts: int | None,
    rc: int | None,
    auts: Any = None,
    asl: Any = None,
    tkl: Any = None,
    st: Any = None,
    ed: Any = None,
) -> int:
    """The SipHash a reply's `da` must carry for the request (ts, rc) it answers."""
    message = serial
    for value in (ts, rc, auts, asl):
        if value:
            message += str(value)
    for value in (tkl, st, ed):
        if value:
            message += compact_json(value)
    return siphash64(key_hex, message)


def _reply_fields(value: dict) -> dict[str, Any]:
    """The reply's known keys by their long names (short or long keys on the wire); others dropped."""
    fields: dict[str, Any] = {}
    for key, v in value.items():
        if not isinstance(key, str):
            raise ReplyRefused("malformed", "a reply key is not a string")
        name = _REPLY_KEYS.get(key, key)
        if name not in _REPLY_KEYS.values():
            continue  # a key this firmware does not know: not acted upon (and not signed over)
        if name in fields:
            raise ReplyRefused("malformed", f"{name} given twice")
        fields[name] = v
    return fields


def _check_signature(auth: Any, key_hex: str, serial: str, **signed: Any) -> None:
    """ReplyRefused unless `a` is `da` + the reply's signature over `signed` (reply_signature)."""
    m = _REPLY_AUTH.fullmatch(auth) if isinstance(auth, str) else None
    if m is None:
        raise ReplyRefused("bad_auth", "a is not da + 1..16 hex digits")
    try:
        expected = reply_signature(key_hex, serial, **signed)
    except (TypeError, ValueError):
        raise ReplyRefused("malformed", "the reply holds values that have no JSON form") from None
    if int(m.group(1), 16) != expected:
        raise ReplyRefused("bad_auth", "the reply signature does not verify with this device's key")


def parse_reply(value: Any, *, serial: str, key_hex: str, ts: int | None, rc: int | None) -> Reply:
    """A decoded Server Response -> Reply, for the request (ts, rc) it answers; ReplyRefused if
    it is malformed, not this device's, or not authenticated where it must be."""
    if not isinstance(value, dict):
        raise ReplyRefused("malformed", "the reply is not an object")
    if not value:
        return Reply(empty=True)
    fields = _reply_fields(value)
    sn = fields.get("serial_number")
    if sn is None:
        raise ReplyRefused("no_serial", "the reply carries no sn: it cannot be told to be this device's")
    if sn != serial:
        raise ReplyRefused("not_own", "the reply is for another serial number")
    tkl = fields.get("token_list")
    if tkl is not None:
        if not isinstance(tkl, list) or not all(
            (isinstance(t, int) and not isinstance(t, bool) and t >= 0) or (isinstance(t, str) and _DIGITS.fullmatch(t))
            for t in tkl
        ):
            raise ReplyRefused("malformed", "tkl is not a list of tokens")
    auts = fields.get("active_until_timestamp")
    asl = fields.get("active_seconds_left")
    if auts is not None:
        _whole(auts, "auts")
    if asl is not None:
        _whole(asl, "asl")
    st = fields.get("settings")
    ed = fields.get("extra_data")
    for name, v in (("st", st), ("ed", ed)):
        if v is not None and not isinstance(v, dict):
            raise ReplyRefused("malformed", f"{name} is not an object")
    auth = fields.get("auth")
    authenticated = auth is not None
    if authenticated:
        _check_signature(auth, key_hex, serial, ts=ts, rc=rc, auts=auts, asl=asl, tkl=tkl, st=st, ed=ed)
    elif any(v is not None for v in (auts, asl, st, ed)):
        raise ReplyRefused("auth_missing", "an unsigned reply may carry tokens only")
    return Reply(
        tokens=tuple(token_text(t) for t in tkl or ()),
        active_until_timestamp=auts,
        active_seconds_left=asl,
        settings=st,
        extra_data=ed,
        authenticated=authenticated,
    )
