"""The adapter for paygo-bench's reference UART test protocol (docs/protocol.md).

Every reply is parsed into a typed object here, at the edge: a reply that is missing a field or
carries a malformed value raises ProtocolError naming the port, the request and the line.
"""

from __future__ import annotations

import base64
import binascii
import builtins  # _Reply has a method named int
import json
import re
import time

from bench.dut.adapter import (
    Banner,
    DeviceAdapter,
    DeviceStatus,
    Identity,
    MetricsConfig,
    MetricsExport,
    MetricsFormat,
    MetricsImported,
    MetricsStatus,
    NvmInfo,
    Provisioning,
    TokenOutcome,
)
from bench.dut.errors import DeviceRefused, ProtocolError
from bench.dut.link import SerialLink

PROTOCOL_MAJOR = 1
BANNER_PREFIX = "! BOOT"
ALL_CAPABILITIES = frozenset(
    {
        "token",
        "status",
        "rtc",
        "rtc_subsecond",
        "rtc_set",
        "nvm",
        "factory_reset",
        "metrics_bridge",
        "metrics_report",
        "extended_tokens",
    }
)
TOKEN_KINDS = {"ADD_TIME", "SET_TIME", "DISABLE_PAYG", "COUNTER_SYNC"}
METRICS_MODES = ("off", "direct", "bridge")
METRICS_AUTH = ("none", "sa", "ta", "ca", "da", "ra")
METRICS_CONTENT_TYPES = ("application/json", "application/cbor")
MAX_LINE = 1024
NO_URL = "-"  # METRICS CONFIG url=-: no base URL (docs/protocol.md "Metrics sessions")
MAX_METRICS_LINE = 8192  # METRICS IMPORT and the reply to METRICS EXPORT (docs/protocol.md "Framing")
_URL = re.compile(r"https?://[^\s=]{1,192}")
# METRICS EXPORT may wait for the RTC's next second before it answers (docs/protocol.md "Metrics bridge")
EXPORT_EXTRA_S = 1.5


def parse_fields(line: str) -> dict[str, str]:
    """`KEY=V KEY2=V2` words into a dict; words without '=' are kept under their own name."""
    out: dict[str, str] = {}
    for word in line.split():
        key, sep, value = word.partition("=")
        out[key] = value if sep else ""
    return out


class _Reply:
    """One OK reply: its fields, and errors that name the port, the request and the whole line."""

    def __init__(self, port: str, request: str, line: str) -> None:
        self.port, self.request, self.line = port, request, line
        self.fields: dict[str, str] = {}

    def __getitem__(self, key: str) -> str:
        return self.fields[key]

    def __contains__(self, key: str) -> bool:
        return key in self.fields

    def error(self, problem: str) -> ProtocolError:
        return ProtocolError(self.port, self.request, self.line, problem)

    def require(self, *keys: str) -> None:
        missing = [k for k in keys if k not in self.fields]
        if missing:
            raise self.error(f"lacks {', '.join(k + '=' for k in missing)}")

    def int(self, key: str) -> int:
        self.require(key)
        try:
            return int(self.fields[key])
        except ValueError:
            raise self.error(f"has a non-integer {key}=") from None

    def optional_int(self, key: str, none: str = "-") -> builtins.int | None:
        """An integer field that may be `none` ("-": not known yet)."""
        self.require(key)
        return None if self.fields[key] == none else self.int(key)

    def number(self, key: str) -> float:
        self.require(key)
        try:
            value = float(self.fields[key])
        except ValueError:
            raise self.error(f"has a non-numeric {key}=") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise self.error(f"has a non-finite {key}=")
        return value

    def b64(self, key: str) -> bytes:
        self.require(key)
        try:
            return base64.b64decode(self.fields[key], validate=True)
        except (binascii.Error, ValueError):
            raise self.error(f"has a {key}= that is not base64") from None

    def ratio(self, key: str) -> tuple[builtins.int, builtins.int]:
        """`a/b` of whole numbers."""
        self.require(key)
        a, sep, b = self.fields[key].partition("/")
        if not sep or not a.isdigit() or not b.isdigit():
            raise self.error(f"has a {key}= that is not <n>/<n>")
        return int(a), int(b)

    def choice(self, key: str, allowed, what: str) -> str:
        self.require(key)
        if self.fields[key] not in allowed:
            raise self.error(f"has an unknown {what}")
        return self.fields[key]


_CONFIG_FIELDS = ("mode", "period", "sample", "enc", "auth", "df", "url")


class ReferenceAdapter(DeviceAdapter):
    name = "reference"
    protocol_major = PROTOCOL_MAJOR
    # protocol v1 always has ID, a boot banner with reset=, and TOKEN/STATUS lockout fields
    protocol_capabilities = frozenset({"identity", "boot_reason", "lockout"})

    def __init__(self, link: SerialLink, reply_timeout_s: float = 2.0, declared: frozenset[str] | None = None) -> None:
        self.link = link
        self.reply_timeout_s = reply_timeout_s
        self._declared = declared or None  # the rig's declared capabilities, if any
        self._reported: frozenset[str] | None = None

    @property
    def capabilities(self) -> frozenset[str]:
        if self._declared is not None:
            return self._declared
        if self._reported is None:
            self.identify()
        return self._reported or frozenset()

    # -- plumbing -------------------------------------------------------------------------------
    def _call(self, request: str, required: tuple[str, ...] = (), timeout_s: float | None = None) -> _Reply:
        raw = self.link.request(request, timeout_s or self.reply_timeout_s)
        # errors carry the reply as masked text: a faulty DUT may echo its key
        reply = _Reply(self.link.url, self.link.masked(request), self.link.masked(raw))
        if raw.startswith("ERR"):
            parts = reply.line.split(" ", 2)
            if len(parts) < 2 or not parts[1].isdigit():
                raise reply.error("is an ERR line without a numeric code")
            raise DeviceRefused(self.link.url, reply.request, int(parts[1]), parts[2] if len(parts) > 2 else "")
        if raw != "OK" and not raw.startswith("OK "):
            raise reply.error("is neither 'OK ...' nor 'ERR <code> <reason>'")
        reply.fields = parse_fields(raw[2:])
        reply.require(*required)
        return reply

    # -- boot -----------------------------------------------------------------------------------
    def wait_boot(self, timeout_s: float, since: float | None = None) -> Banner:
        """The boot banner; a line the reset cut off before it is dropped (SerialLink.wait_event)."""
        return self.parse_banner(self.link.wait_event(BANNER_PREFIX, timeout_s, since=since, after_reset=True))

    def parse_banner(self, line: str, at: float | None = None) -> Banner:
        """`! BOOT model=... fw=... proto=... reset=... nvm=...` (docs/protocol.md "Unsolicited lines")."""
        fields = parse_fields(line[len(BANNER_PREFIX) :]) if line.startswith(BANNER_PREFIX) else {}
        return Banner(line, fields, time.monotonic() if at is None else at)

    def ping(self) -> None:
        self._call("PING")

    # -- commands -------------------------------------------------------------------------------
    def identify(self) -> Identity:
        f = self._call("ID", ("model", "fw", "proto", "sn", "caps"))
        caps = frozenset(c for c in f["caps"].split(",") if c)
        self._reported = caps
        return Identity(
            model=f["model"],
            firmware=f["fw"],
            protocol=f["proto"],
            serial_number=None if f["sn"] == "-" else f["sn"],
            capabilities=caps,
        )

    def provision(self, p: Provisioning) -> str:
        self.link.log.add_secret(p.secret_key)
        request = (
            f"PROV sn={p.serial_number} key={p.secret_key.reveal()} sc={p.starting_code} "
            f"count={p.token_count} td={p.time_divider} rd={int(p.restricted_digits)}"
        )
        if p.metrics_url:
            if not _URL.fullmatch(p.metrics_url):
                raise ValueError(f"Metrics base URL {p.metrics_url!r}: expected http(s)://host[:port][/path]")
            request += f" url={p.metrics_url}"
        if p.data_format_id:
            request += f" df={p.data_format_id}"
        if p.auth != "none":
            request += f" auth={p.auth}"
        return self._call(request, ("sn",))["sn"]

    def enter_token(self, code: str) -> TokenOutcome:
        t0 = time.monotonic()
        r = self._call(f"TOKEN {code}", ("result",), timeout_s=max(self.reply_timeout_s, 10.0))
        elapsed = time.monotonic() - t0
        result = r.choice("result", ("accepted", "invalid", "already_used", "locked"), "result")
        if result == "accepted":
            r.require("type", "value", "count")
            kind = r.choice("type", TOKEN_KINDS, "token type")
            value = None if r["value"] == "-" else r.int("value")
            return TokenOutcome("accepted", kind, value, r.int("count"), elapsed_s=elapsed)
        if result == "locked":
            return TokenOutcome("locked", locked_s=r.int("seconds"), elapsed_s=elapsed)
        return TokenOutcome(result, elapsed_s=elapsed)

    def status(self) -> DeviceStatus:
        r = self._call("STATUS", ("payg", "active_until", "left", "count", "invalid", "locked"))
        return DeviceStatus(
            payg=r.choice("payg", ("active", "inactive", "disabled"), "payg state"),
            seconds_left=r.int("left"),
            active_until=r.int("active_until"),
            token_count=r.int("count"),
            invalid_streak=r.int("invalid"),
            locked_s=r.int("locked"),
        )

    def rtc_read(self) -> float:
        r = self._call("RTC", ("t",))
        try:
            return float(r["t"])
        except ValueError:
            raise r.error("has a non-numeric t=") from None

    def rtc_set(self, t: int) -> None:
        self._call(f"RTC SET {int(t)}", ("t",))

    def nvm_info(self) -> NvmInfo:
        r = self._call("NVM", ("slot", "seq", "crc", "writes", "size"))
        return NvmInfo(r["slot"], r.int("seq"), r["crc"] == "ok", r.int("writes"), r.int("size"))

    def metrics_export(self) -> MetricsExport:
        r = self._call("METRICS EXPORT", ("ct", "rc", "b64"), timeout_s=self.reply_timeout_s + EXPORT_EXTRA_S)
        content_type = r.choice("ct", METRICS_CONTENT_TYPES, "content type")
        return MetricsExport(content_type, r.int("rc"), r.b64("b64"))

    def metrics_import(self, body: bytes, content_type: str | None = None) -> MetricsImported:
        request = f"METRICS IMPORT b64={base64.b64encode(body).decode()}"
        if content_type is not None:
            ct = content_type.split(";")[0].strip().lower()
            if not ct or any(c.isspace() or c == "=" for c in ct) or not ct.isascii():
                raise ValueError(f"content type {content_type!r} cannot be sent in a METRICS IMPORT line")
            request += f" ct={ct}"
        if len(request) > MAX_METRICS_LINE:
            raise ValueError(f"a reply of {len(body)} bytes does not fit a {MAX_METRICS_LINE}-byte METRICS IMPORT line")
        r = self._call(request, ("tokens",))
        accepted, received = r.ratio("tokens")
        return MetricsImported(
            accepted, received, r.int("rc") if "rc" in r else None, r.int("rows") if "rows" in r else None
        )

    def metrics_configure(
        self,
        url: str | None,
        data_format_id: int,
        auth: str,
        mode: str | None = None,
        period_s: float | None = None,
        sample_s: int | None = None,
    ) -> MetricsConfig:
        if url is not None and not _URL.fullmatch(url):
            raise ValueError(
                f"Metrics base URL {url!r}: expected http(s)://host[:port][/path] without spaces "
                "or '=', at most 200 characters (None: no base URL)"
            )
        if auth not in METRICS_AUTH:
            raise ValueError(f"Metrics auth {auth!r}: expected one of {', '.join(METRICS_AUTH)}")
        if not isinstance(data_format_id, int) or not 0 <= data_format_id < 2**31:
            raise ValueError(f"data format id {data_format_id!r}: expected 0..2147483647")
        # a value is never empty: `url=-` is the protocol's "no base URL" (docs/protocol.md)
        request = f"METRICS CONFIG url={url or NO_URL} df={data_format_id} auth={auth}"
        if mode is not None:
            if mode not in METRICS_MODES:
                raise ValueError(f"Metrics mode {mode!r}: expected one of {', '.join(METRICS_MODES)}")
            request += f" mode={mode}"
        if period_s is not None:
            if not 0.05 <= period_s <= 9_999_999:
                raise ValueError(f"Metrics period {period_s!r} s: expected 0.05..9999999 s")
            request += " period=" + f"{period_s:.3f}".rstrip("0").rstrip(".")
        if sample_s is not None:
            if not isinstance(sample_s, int) or isinstance(sample_s, bool) or not 1 <= sample_s <= 86400:
                raise ValueError(f"Metrics sample interval {sample_s!r} s: expected whole seconds 1..86400")
            request += f" sample={sample_s}"
        return self._metrics_config_reply(self._call(request, _CONFIG_FIELDS))

    def metrics_config(self) -> MetricsConfig:
        return self._metrics_config_reply(self._call("METRICS CONFIG", _CONFIG_FIELDS))

    def _metrics_config_reply(self, r: _Reply) -> MetricsConfig:
        return MetricsConfig(
            mode=r.choice("mode", METRICS_MODES, "Metrics mode"),
            period_s=r.number("period"),
            sample_s=r.int("sample"),
            encoding=r.choice("enc", ("json", "cbor"), "Metrics encoding"),
            auth=r.choice("auth", METRICS_AUTH, "Metrics auth method"),
            data_format_id=r.int("df"),
            url=None if r["url"] == NO_URL else r["url"],
        )

    def metrics_status(self) -> MetricsStatus:
        r = self._call(
            "METRICS STATUS",
            (
                "mode",
                "rc",
                "rows",
                "inflight",
                "requests",
                "answered",
                "failed",
                "sent_rows",
                "dropped",
                "tokens",
                "last",
                "auts",
                "asl",
                "reply_at",
            ),
        )
        return MetricsStatus(
            mode=r.choice("mode", METRICS_MODES, "Metrics mode"),
            request_count=r.int("rc"),
            rows=r.int("rows"),
            inflight=r.optional_int("inflight"),
            requests=r.int("requests"),
            answered=r.int("answered"),
            failed=r.int("failed"),
            sent_rows=r.int("sent_rows"),
            dropped=r.int("dropped"),
            tokens=r.int("tokens"),
            last=None if r["last"] == "-" else r["last"],
            active_until=r.optional_int("auts"),
            seconds_left=r.optional_int("asl"),
            reply_at=r.optional_int("reply_at"),
        )

    def metrics_report_now(self) -> None:
        self._call("METRICS REPORT")

    def metrics_format(self) -> MetricsFormat:
        r = self._call("METRICS FORMAT", ("id", "interval", "b64"))
        try:
            fmt = json.loads(r.b64("b64"))
        except (UnicodeDecodeError, ValueError):
            raise r.error("has a b64= that is not base64 of JSON") from None
        if not isinstance(fmt, dict):
            raise r.error("has a b64= whose JSON is not an object (a Data Format object)")
        return MetricsFormat(r.int("id"), r.int("interval"), fmt)

    def factory_reset(self, boot_timeout_s: float) -> Banner:
        since = time.monotonic()
        self._call("NVM ERASE")
        return self.wait_boot(boot_timeout_s, since=since)
