"""The adapter for paygo-bench's reference UART test protocol (docs/protocol.md).

Every reply is parsed into a typed object here, at the edge: a reply that is missing a field or
carries a malformed value raises ProtocolError naming the port, the request and the line.
"""

from __future__ import annotations

import time

from bench.dut.adapter import (
    Banner,
    DeviceAdapter,
    DeviceStatus,
    Identity,
    NvmInfo,
    Provisioning,
    TokenOutcome,
)
from bench.dut.errors import DeviceRefused, ProtocolError
from bench.dut.link import SerialLink

PROTOCOL_MAJOR = 1
ALL_CAPABILITIES = frozenset(
    {"token", "status", "rtc", "rtc_subsecond", "rtc_set", "nvm", "factory_reset", "metrics_bridge", "extended_tokens"}
)
TOKEN_KINDS = {"ADD_TIME", "SET_TIME", "DISABLE_PAYG", "COUNTER_SYNC"}


def parse_fields(line: str) -> dict[str, str]:
    """`KEY=V KEY2=V2` words into a dict; words without '=' are kept under their own name."""
    out: dict[str, str] = {}
    for word in line.split():
        key, sep, value = word.partition("=")
        out[key] = value if sep else ""
    return out


class ReferenceAdapter(DeviceAdapter):
    name = "reference"

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
    def _call(self, request: str, required: tuple[str, ...] = (), timeout_s: float | None = None) -> dict[str, str]:
        reply = self.link.request(request, timeout_s or self.reply_timeout_s)
        shown = self.link._masked(request)
        if reply.startswith("ERR"):
            parts = reply.split(" ", 2)
            if len(parts) < 2 or not parts[1].isdigit():
                raise ProtocolError(self.link.url, shown, reply, "is an ERR line without a numeric code")
            raise DeviceRefused(self.link.url, shown, int(parts[1]), parts[2] if len(parts) > 2 else "")
        if reply != "OK" and not reply.startswith("OK "):
            raise ProtocolError(self.link.url, shown, reply, "is neither 'OK ...' nor 'ERR <code> <reason>'")
        fields = parse_fields(reply[2:])
        missing = [k for k in required if k not in fields]
        if missing:
            raise ProtocolError(self.link.url, shown, reply, f"lacks {', '.join(k + '=' for k in missing)}")
        return fields

    def _int(self, fields: dict[str, str], key: str, request: str, line: str = "") -> int:
        raw = fields[key]
        try:
            return int(raw)
        except ValueError:
            raise ProtocolError(self.link.url, request, line or f"{key}={raw}", f"has a non-integer {key}=") from None

    # -- boot -----------------------------------------------------------------------------------
    def wait_boot(self, timeout_s: float, since: float | None = None) -> Banner:
        line = self.link.wait_event("! BOOT", timeout_s, since=since)
        return Banner(line, parse_fields(line[len("! BOOT"):]), time.monotonic())

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
            request += f" url={p.metrics_url}"
        if p.data_format_id:
            request += f" df={p.data_format_id}"
        if p.auth != "none":
            request += f" auth={p.auth}"
        return self._call(request, ("sn",))["sn"]

    def enter_token(self, code: str) -> TokenOutcome:
        request = f"TOKEN {code}"
        t0 = time.monotonic()
        f = self._call(request, ("result",), timeout_s=max(self.reply_timeout_s, 10.0))
        elapsed = time.monotonic() - t0
        result = f["result"]
        if result == "accepted":
            for key in ("type", "value", "count"):
                if key not in f:
                    raise ProtocolError(self.link.url, request, "OK result=accepted ...", f"lacks {key}=")
            if f["type"] not in TOKEN_KINDS:
                raise ProtocolError(self.link.url, request, f"type={f['type']}", "has an unknown token type")
            value = None if f["value"] == "-" else self._int(f, "value", request)
            return TokenOutcome("accepted", f["type"], value, self._int(f, "count", request), elapsed_s=elapsed)
        if result == "locked":
            if "seconds" not in f:
                raise ProtocolError(self.link.url, request, "OK result=locked", "lacks seconds=")
            return TokenOutcome("locked", locked_s=self._int(f, "seconds", request), elapsed_s=elapsed)
        if result in ("invalid", "already_used"):
            return TokenOutcome(result, elapsed_s=elapsed)
        raise ProtocolError(self.link.url, request, f"result={result}", "has an unknown result")

    def status(self) -> DeviceStatus:
        keys = ("payg", "active_until", "left", "count", "invalid", "locked")
        f = self._call("STATUS", keys)
        if f["payg"] not in ("active", "inactive", "disabled"):
            raise ProtocolError(self.link.url, "STATUS", f"payg={f['payg']}", "has an unknown payg state")
        return DeviceStatus(
            payg=f["payg"],
            active_until=self._int(f, "active_until", "STATUS"),
            seconds_left=self._int(f, "left", "STATUS"),
            token_count=self._int(f, "count", "STATUS"),
            invalid_streak=self._int(f, "invalid", "STATUS"),
            locked_s=self._int(f, "locked", "STATUS"),
        )

    def rtc_read(self) -> float:
        f = self._call("RTC", ("t",))
        try:
            return float(f["t"])
        except ValueError:
            raise ProtocolError(self.link.url, "RTC", f"t={f['t']}", "has a non-numeric t=") from None

    def rtc_set(self, t: int) -> None:
        self._call(f"RTC SET {int(t)}", ("t",))

    def nvm_info(self) -> NvmInfo:
        f = self._call("NVM", ("slot", "seq", "crc", "writes", "size"))
        return NvmInfo(f["slot"], self._int(f, "seq", "NVM"), f["crc"] == "ok", self._int(f, "writes", "NVM"), self._int(f, "size", "NVM"))

    def factory_reset(self, boot_timeout_s: float) -> Banner:
        since = time.monotonic()
        self._call("NVM ERASE")
        return self.wait_boot(boot_timeout_s, since=since)


ADAPTERS = {"reference": ReferenceAdapter}
