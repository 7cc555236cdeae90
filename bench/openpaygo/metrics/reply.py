"""The Server Response Object: built and signed by the server, read and checked by a device.

Unlike openpaygo's `get_answer_payload` (docs/metrics.md "openpaygo 0.6.3: what the bench does not
inherit"), the reply always carries `sn`, `auts` and `asl` are integers with the right sign, and the
`da` signature covers sn + request ts/rc + auts|asl|tkl + st + ed in the library's order (so a
device using the reference code verifies it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from bench.openpaygo.metrics.auth import reply_signature, verify_reply
from bench.openpaygo.metrics.errors import MetricsError
from bench.openpaygo.metrics.format import type_name
from bench.openpaygo.metrics.keys import REPLY_LONG_TO_SHORT, REPLY_SHORT_TO_LONG
from bench.openpaygo.metrics.wire import Encoding, decode, encode, encoding_of
from bench.secret import Secret


@dataclass(frozen=True)
class MetricsReply:
    serial_number: str | None  # required by v1.0; the spec's own examples leave it out
    token_list: tuple[int | str, ...] | None = None
    active_until_timestamp: int | None = None
    active_seconds_left: int | None = None
    settings: Mapping[str, Any] | None = None
    extra_data: Mapping[str, Any] | None = None
    auth: str | None = None

    def has_content(self) -> bool:
        """False when there is nothing to tell the device (the server answers `{}`)."""
        return any(
            v is not None
            for v in (
                self.token_list,
                self.active_until_timestamp,
                self.active_seconds_left,
                self.settings,
                self.extra_data,
            )
        )

    def _signed_fields(self) -> dict[str, Any]:
        return {
            "active_until_timestamp": self.active_until_timestamp,
            "active_seconds_left": self.active_seconds_left,
            "token_list": list(self.token_list) if self.token_list is not None else None,
            "settings": dict(self.settings) if self.settings is not None else None,
            "extra_data": dict(self.extra_data) if self.extra_data is not None else None,
        }

    def signed(self, key: Secret | str, *, request_timestamp: Any = None, request_count: Any = None) -> MetricsReply:
        """This reply with `a` = data auth over its content and the request's ts/rc."""
        if self.serial_number is None:
            raise ValueError("a signed reply needs the serial number")
        auth = reply_signature(
            key, self.serial_number, timestamp=request_timestamp, request_count=request_count, **self._signed_fields()
        )
        return replace(self, auth=auth)

    def verify(self, key: Secret | str, *, request_timestamp: Any = None, request_count: Any = None) -> bool:
        return (
            self.auth is not None
            and self.serial_number is not None
            and verify_reply(
                self.auth,
                key,
                self.serial_number,
                timestamp=request_timestamp,
                request_count=request_count,
                **self._signed_fields(),
            )
        )

    def to_wire(self, condensed: bool = True) -> dict:
        """{} if there is nothing to say, else the object with short (or long) keys."""
        if not self.has_content():
            return {}
        out: dict[str, Any] = {}
        for name in (
            "serial_number",
            "token_list",
            "active_until_timestamp",
            "active_seconds_left",
            "settings",
            "extra_data",
            "auth",
        ):
            value = getattr(self, name)
            if value is None:
                continue
            if name == "token_list":
                value = list(value)
            elif name in ("settings", "extra_data"):
                value = dict(value)
            out[REPLY_LONG_TO_SHORT[name] if condensed else name] = value
        return out

    def encode(self, encoding: Encoding, condensed: bool = True) -> bytes:
        return encode(self.to_wire(condensed), encoding)


def parse_reply(value: Any, *, expected_serial: str | None = None) -> MetricsReply | None:
    """A decoded reply -> MetricsReply (None for `{}`). Long and short keys both read. With
    `expected_serial` (a device checking a reply is its own, async flow) `sn` must be there."""
    if not isinstance(value, dict):
        raise MetricsError("not_an_object", f"a Server Response must be an object, got {type_name(value)}", "$")
    if not value:
        return None
    fields: dict[str, Any] = {}
    for key, v in value.items():
        name = REPLY_SHORT_TO_LONG.get(key, key)
        if name not in REPLY_LONG_TO_SHORT:
            raise MetricsError("unknown_field", f"unknown key {key[:40]!r} in a Server Response", key[:40])
        if name in fields:
            raise MetricsError("duplicate_field", f"{name} given twice", key)
        fields[name] = v
    sn = fields.get("serial_number")
    if sn is not None and not isinstance(sn, str):
        raise MetricsError("wrong_type", "serial_number must be a string", "sn")
    if expected_serial is not None and sn is None:
        raise MetricsError(
            "missing_field",
            "the response carries no serial_number (sn), so it cannot be told apart from another device's",
            "sn",
        )
    if expected_serial is not None and sn != expected_serial:
        raise MetricsError("bad_value", f"the response is for {sn!r}, not {expected_serial!r}", "sn")
    tkl = fields.get("token_list")
    if tkl is not None and (
        not isinstance(tkl, list) or not all(isinstance(t, (int, str)) and not isinstance(t, bool) for t in tkl)
    ):
        raise MetricsError("wrong_type", "token_list must be an array of tokens (integers or digit strings)", "tkl")
    for name in ("active_until_timestamp", "active_seconds_left"):
        v = fields.get(name)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise MetricsError(
                "wrong_type", f"{name} must be a whole number >= 0, got {type_name(v)}", REPLY_LONG_TO_SHORT[name]
            )
    for name in ("settings", "extra_data"):
        v = fields.get(name)
        if v is not None and not isinstance(v, dict):
            raise MetricsError("wrong_type", f"{name} must be an object", REPLY_LONG_TO_SHORT[name])
    auth = fields.get("auth")
    if auth is not None and not isinstance(auth, str):
        raise MetricsError("wrong_type", "auth must be a string", "a")
    return MetricsReply(
        sn,
        tuple(tkl) if tkl is not None else None,
        fields.get("active_until_timestamp"),
        fields.get("active_seconds_left"),
        fields.get("settings"),
        fields.get("extra_data"),
        auth,
    )


def decode_reply(body: bytes, content_type: str | None, *, expected_serial: str | None = None) -> MetricsReply | None:
    return parse_reply(decode(body, encoding_of(content_type)), expected_serial=expected_serial)
