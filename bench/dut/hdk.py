"""The adapter for the OpenPAYGO HDK firmware's UART protocol (EnAccess/OpenPAYGO-HDK; docs/protocol.md
"Other protocols: the OpenPAYGO HDK").

    #SETUP;<sn>;<starting code>;<key hex>   only while unconfigured; answered by INFO: lines only
    #TOKEN;<token>   ->  #TOKEN;INVALID | ALREADY_USED | PAYG_DISABLED | VALID;<seconds left>
    #STATUS;         ->  #STATUS;INACTIVE | ACTIVE;<seconds left> | PAYG_DISABLED
    anything else    ->  #INVALID

The firmware's quirks, and how they are handled here:
- `INFO: ...` debug lines come before (and around) replies: the link sets them aside as events.
- `#TOKEN;VALID;<s>` and `#STATUS;INACTIVE` have no newline: the request names the reply's shape
  and the link takes a partial line of that shape as complete once it has been quiet for
  `quiet_s` (0.1 s by default). A stale partial line is discarded before the next request.
- seconds left is a uint32 difference that wraps once the credit has expired: values of 2^31
  and above are reported as 0, with a note in the traffic log.
- replies come after blocking LED blinks (up to 5 x 0.5 s): token replies get at least
  TOKEN_TIMEOUT_S.
- the command name is read up to `;`, so status is sent as `#STATUS;`.
- there is no identity command (identify() raises CapabilityMissing('identity')), no RTC, NVM
  or factory reset command and no lockout; sn and starting code are read with %d, so the serial
  must be a plain decimal integer; a provisioning takes effect after a restart.
"""

from __future__ import annotations

import re
import time

from bench.dut.adapter import (
    Banner,
    CapabilityMissing,
    DeviceAdapter,
    DeviceStatus,
    Identity,
    Provisioning,
    TokenOutcome,
)
from bench.dut.errors import DeviceRefused, LinkSilent, ProtocolError
from bench.dut.link import QUIET_S, SerialLink
from bench.secret import Secret

HDK_CAPABILITIES = frozenset({"token", "status"})
DEBUG_PREFIX = "INFO:"
BOOT_STARTED = "INFO: OpenPAYGO-HDK Started!"
SETUP_COMPLETE = "INFO: Setup complete"  # "INFO: Setup complete. RESTART DEVICE."
SETUP_ECHO = re.compile(r"INFO: SN: (\d+), SC: (\d+), KEY: ")
NOT_CONFIGURED = "#INVALID"  # what an unconfigured HDK answers to #TOKEN and #STATUS
TOKEN_TIMEOUT_S = 10.0  # 5 red blinks x 2 x 250 ms = 2.5 s, plus decoding, with a margin
SETUP_TIMEOUT_S = 5.0  # an EEPROM commit (flash sector erase) on the ESP32
INT32_MAX = 2**31 - 1
UINT32 = 2**32
WRAPPED_FROM = 2**31  # a "seconds left" this large is a negative difference that wrapped

_TOKEN_REPLY = re.compile(r"#TOKEN;(?:(INVALID|ALREADY_USED|PAYG_DISABLED)|VALID;(\d+))")
_STATUS_REPLY = re.compile(r"#STATUS;(?:(INACTIVE|PAYG_DISABLED)|ACTIVE;(\d+))")
_TOKEN_RESULTS = {"INVALID": "invalid", "ALREADY_USED": "already_used"}


def _token_unterminated(partial: str) -> bool:
    return re.fullmatch(r"#TOKEN;VALID;\d+", partial) is not None


def _status_unterminated(partial: str) -> bool:
    return partial == "#STATUS;INACTIVE"


def printed_key(key_hex: str) -> str:
    """The key as the HDK echoes it at setup (`Serial.print(byte, HEX)`: upper case, no zero
    padding), so the traffic log can mask that form too."""
    return "".join(f"{b:X}" for b in bytes.fromhex(key_hex))


class HdkAdapter(DeviceAdapter):
    name = "hdk"
    restart_after_provision = True
    reports_locked = False  # #TOKEN has no LOCKED answer: a corrected HDK answers INVALID while locked
    max_seconds_left = WRAPPED_FROM - 1  # above it a seconds left reads as a wrapped difference

    def __init__(
        self,
        link: SerialLink,
        reply_timeout_s: float = 2.0,
        declared: frozenset[str] | None = None,
        quiet_s: float = QUIET_S,
    ) -> None:
        self.link = link
        self.reply_timeout_s = reply_timeout_s
        self.quiet_s = quiet_s
        link.unsolicited = (DEBUG_PREFIX,)  # the HDK's debug output is never a reply
        if declared:
            extra = declared - HDK_CAPABILITIES
            if extra:
                raise ValueError(
                    f"the rig declares capabilities the HDK protocol cannot offer: {', '.join(sorted(extra))} "
                    f"(it offers {', '.join(sorted(HDK_CAPABILITIES))})"
                )
        self._capabilities = frozenset(declared) if declared else HDK_CAPABILITIES

    @property
    def capabilities(self) -> frozenset[str]:
        return self._capabilities

    # -- plumbing -------------------------------------------------------------------------------
    def _ask(self, request: str, timeout_s: float, unterminated=None) -> str:
        return self.link.request(request, timeout_s, unterminated=unterminated, quiet_s=self.quiet_s)

    def _error(self, request: str, line: str, problem: str) -> ProtocolError:
        return ProtocolError(self.link.url, self.link.masked(request), self.link.masked(line), problem)

    def _match(self, pattern: re.Pattern, request: str, line: str) -> re.Match:
        """The reply at the start of the line; debug output glued after it is logged, not parsed."""
        m = pattern.match(line)
        if m is None:
            raise self._error(request, line, "is not a reply this request can get")
        rest = line[m.end() :]
        if rest.startswith(DEBUG_PREFIX):  # a reply without newline, then debug output
            self.link.log.note(f"debug output glued to the reply (no newline between): '{self.link.shown(rest)}'")
        elif rest:
            raise self._error(request, line, "has text after the reply")
        return m

    def _seconds(self, raw: str, request: str, line: str) -> int:
        """A uint32 'seconds left'; a wrapped (negative) difference means expired: 0."""
        value = int(raw)
        if value >= UINT32:
            raise self._error(request, line, "has seconds left beyond a uint32")
        if value >= WRAPPED_FROM:
            self.link.log.note(
                f"seconds left {value} is a wrapped uint32 difference (credit expired {UINT32 - value} s ago): "
                "reported as 0"
            )
            return 0
        return value

    def _not_configured(self, request: str) -> DeviceRefused:
        return DeviceRefused(self.link.url, request, 409, "not provisioned (the HDK answers #INVALID until #SETUP)")

    # -- boot -----------------------------------------------------------------------------------
    def wait_boot(self, timeout_s: float, since: float | None = None) -> Banner:
        """Boot is `INFO: OpenPAYGO-HDK Starting...` ... `INFO: OpenPAYGO-HDK Started!`; the
        banner is the last line, with setup=done|not_done when the firmware said which. A line
        the reset cut off before it is dropped (SerialLink.wait_event)."""
        deadline = time.monotonic() + timeout_s
        fields: dict[str, str] = {}
        while True:
            try:
                line = self.link.wait_event(
                    DEBUG_PREFIX, max(0.0, deadline - time.monotonic()), since=since, after_reset=True
                )
            except LinkSilent as e:
                raise LinkSilent(
                    self.link.url, f"'{BOOT_STARTED}' boot banner", timeout_s, e.last_lines, e.unterminated, e.pending
                ) from None
            if line.startswith("INFO: Factory setup NOT done"):
                fields["setup"] = "not_done"
            elif line.startswith("INFO: Factory setup done"):
                fields["setup"] = "done"
            elif line.startswith(BOOT_STARTED):
                return Banner(line, fields, time.monotonic())

    def ping(self) -> None:
        """The HDK has no PING: `#STATUS;` is side-effect free and answered in every state."""
        request = "#STATUS;"
        line = self._ask(request, self.reply_timeout_s, _status_unterminated)
        if line != NOT_CONFIGURED:
            self._match(_STATUS_REPLY, request, line)

    # -- commands -------------------------------------------------------------------------------
    def identify(self) -> Identity:
        """The HDK has no identity command and never reports its serial: nothing to read back.
        Making one up (model "OpenPAYGO-HDK", sn from the rig) would pass identity checks that
        were never made, so this raises and the identity tests are listed as not covered."""
        raise CapabilityMissing("identity", self.name)

    def provision(self, p: Provisioning) -> str:
        """`#SETUP;<sn>;<sc>;<key>`; returns the serial the HDK echoes in its `INFO: SN:` line.

        Raises ValueError for a profile the HDK cannot take (non-integer serial, time divider,
        restricted digits: build-time settings), DeviceRefused 409 if it is already configured.
        The device must then be restarted (restart_after_provision)."""
        sn = p.serial_number
        if not (sn.isascii() and sn.isdigit() and str(int(sn)) == sn and int(sn) <= INT32_MAX):
            raise ValueError(
                f"the HDK reads the serial number with %d: {sn!r} would not read back as sent; "
                f"use a decimal integer 0..{INT32_MAX} without leading zeros"
            )
        if p.time_divider != 1 or p.restricted_digits:
            raise ValueError(
                "the HDK's time divider and restricted digit mode are build-time settings (TIME_DIVIDER, "
                f"RESTRICTED_DIGIT_SET_MODE) that #SETUP cannot set; the profile asks for time_divider="
                f"{p.time_divider}, restricted_digits={p.restricted_digits}"
            )
        log = self.link.log
        log.add_secret(p.secret_key)
        log.add_secret(Secret(printed_key(p.secret_key.reveal()), "device key as the HDK prints it"))
        if p.token_count != 0:
            log.note(f"the HDK starts at token count 0 after #SETUP (the profile says {p.token_count})")
        if p.metrics_url or p.data_format_id or p.auth != "none":
            log.note("metrics settings not sent: the HDK takes them at build time")
        request = f"#SETUP;{sn};{p.starting_code};{p.secret_key.reveal()}"
        shown = self.link.masked(request)
        since = time.monotonic()
        got = self.link.request(
            request,
            max(self.reply_timeout_s, SETUP_TIMEOUT_S),
            until_event=lambda line: line.startswith(SETUP_COMPLETE),
        )
        if got == NOT_CONFIGURED:
            raise DeviceRefused(
                self.link.url, shown, 409, "already provisioned (the HDK takes #SETUP only while unconfigured)"
            )
        if not got.startswith(SETUP_COMPLETE):
            raise self._error(request, got, "is neither #INVALID nor the end of setup")
        echo = next((m for t, line in self.link.events if t >= since and (m := SETUP_ECHO.match(line))), None)
        if echo is None:
            raise self._error(request, got, "ended setup without an 'INFO: SN: <sn>, SC: <sc>, KEY: ...' line before")
        if int(echo.group(2)) != p.starting_code:
            raise self._error(
                request, self.link.masked(echo.group(0)), f"confirms starting code {echo.group(2)}, not the one sent"
            )
        return echo.group(1)

    def enter_token(self, code: str) -> TokenOutcome:
        if not (code.isascii() and code.isdigit()):
            raise ValueError(f"a token is digits only, got {code!r}")
        if len(code) != 9:
            if len(code) in (12, 20):
                raise CapabilityMissing("extended_tokens", self.name)
            raise ValueError(f"the HDK takes 9-digit tokens (read with %d), got {len(code)} digits")
        request = f"#TOKEN;{code}"
        t0 = time.monotonic()
        line = self._ask(request, max(self.reply_timeout_s, TOKEN_TIMEOUT_S), _token_unterminated)
        elapsed = time.monotonic() - t0
        if line == NOT_CONFIGURED:
            raise self._not_configured(request)
        m = self._match(_TOKEN_REPLY, request, line)
        word, seconds = m.group(1), m.group(2)
        if word == "PAYG_DISABLED":
            return TokenOutcome("accepted", kind="DISABLE_PAYG", elapsed_s=elapsed)
        if word is not None:
            return TokenOutcome(_TOKEN_RESULTS[word], elapsed_s=elapsed)
        # VALID: ADD, SET or COUNTER_SYNC; the HDK does not say which, nor the value or count
        return TokenOutcome("accepted", elapsed_s=elapsed, seconds_left=self._seconds(seconds, request, line))

    def status(self) -> DeviceStatus:
        request = "#STATUS;"
        line = self._ask(request, self.reply_timeout_s, _status_unterminated)
        if line == NOT_CONFIGURED:
            raise self._not_configured(request)
        m = self._match(_STATUS_REPLY, request, line)
        word, seconds = m.group(1), m.group(2)
        if word == "PAYG_DISABLED":
            return DeviceStatus("disabled", 0)
        if word == "INACTIVE":
            return DeviceStatus("inactive", 0)
        return DeviceStatus("active", self._seconds(seconds, request, line))
