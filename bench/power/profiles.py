"""PSU instrument profiles: every model quirk as data, so the driver has no model branches.

A profile holds the command templates (`{ch}` = channel number, `{value}` = a formatted setpoint),
the line terminators, the pacing a slow parser needs, and small parsers for the replies that
differ between families (output state, error queue, numbers with headers or units).
Sources: docs/power.md "Sources" and "Profiles". Claims marked "(verify)" come from
third-party drivers or manuals and have not been checked on a physical unit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Protocol

NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
"""An SCPI NR1/NR2/NR3 number (no NaN/Inf spelled out: a PSU never means those)."""


class OutputStateReply(Protocol):
    """Turns the output-query reply into on/off for one channel (ValueError if it can't)."""

    def parse(self, reply: str, channel: int) -> bool: ...


@dataclass(frozen=True)
class BoolReply:
    """The reply is a boolean word for the queried channel (`1`/`0`, `ON`/`OFF`).

    `pattern` must have a `state` group; anything around it (a command header) is ignored.
    """

    on: tuple[str, ...] = ("1", "ON")
    off: tuple[str, ...] = ("0", "OFF")
    pattern: str = r"(?P<state>\w+)"

    def parse(self, reply: str, channel: int) -> bool:
        m = re.fullmatch(self.pattern, reply.strip(), re.IGNORECASE)
        word = m.group("state").upper() if m else None
        if word in self.on:
            return True
        if word in self.off:
            return False
        raise ValueError(f"not an output state: expected one of {self.on + self.off}")


@dataclass(frozen=True)
class HexBitsReply:
    """The reply is a hex status word with one output bit per channel (bit first_bit + ch - 1)."""

    first_bit: int

    def parse(self, reply: str, channel: int) -> bool:
        text = reply.strip()
        if not re.fullmatch(r"(?:0[xX])?[0-9a-fA-F]+", text):
            raise ValueError("not a hex status word")
        return bool((int(text, 16) >> (self.first_bit + channel - 1)) & 1)


@dataclass(frozen=True)
class ErrorReply:
    """One error-queue reply: `pattern` has a `code` group and optionally a `message` group."""

    pattern: str
    no_error_code: int = 0

    def parse(self, reply: str) -> tuple[int, str]:
        m = re.fullmatch(self.pattern, reply.strip())
        if not m:
            raise ValueError(f"not an error-queue entry (expected /{self.pattern}/)")
        message = m.groupdict().get("message") or ""
        return int(m.group("code")), message.strip()

    def is_error(self, code: int) -> bool:
        return code != self.no_error_code


SCPI_ERROR = ErrorReply(r'(?P<code>[-+]?\d+)\s*,\s*"?(?P<message>[^"]*)"?')
"""SCPI-1999 `SYST:ERR?`: `+0,"No error"`, `-113,"Undefined header"`."""

NUMBER_ONLY = rf"(?P<value>{NUMBER})"

_CHANNEL_SCOPED = (
    "set_voltage",
    "set_current_limit",
    "output_on",
    "output_off",
    "measure_voltage",
    "measure_current",
)


@dataclass(frozen=True)
class PsuProfile:
    """How to talk to one PSU family. Templates use `{ch}` and `{value}`.

    When `select_channel` is None the channel is part of each command text (`channel_in_command`);
    otherwise the driver sends `select_channel` before every channel-scoped command, so a front
    panel or another client changing the selection can't redirect a setpoint.
    """

    name: str
    description: str
    lan_port: int
    select_channel: str | None
    set_voltage: str
    set_current_limit: str
    output_on: str
    output_off: str
    output_query: str
    measure_voltage: str
    measure_current: str
    error_query: str | None
    idn: str = "*IDN?"
    opc: str | None = "*OPC?"
    output_state: OutputStateReply = field(default_factory=BoolReply)
    error_reply: ErrorReply = SCPI_ERROR
    number_reply: str = NUMBER_ONLY
    """Regex (fullmatch) whose `value` group is the number; headers/units around it are stripped."""
    write_termination: str = "\n"
    read_termination: str = "\n"
    min_cmd_interval_s: float = 0.0
    """Minimum gap between the end of one command and the start of the next."""
    cmd_interval_per_char_s: float = 0.0
    """Extra gap per character of the previous command (slow parsers)."""
    value_format: str = "{:.6g}"
    nvm_cut_trigger: str | None = None
    """Optional: arm a cut of the output after the DUT's `{value}`-th NVM page write from now
    (0 disarms), for power-cut testing; only the virtual rig's simulated PSU has it."""
    nvm_cut_query: str | None = None
    """Optional: read back the page writes still to go before that cut (0 = not armed)."""
    off_time_skip: str | None = None
    """Optional: while the output is off, let `{value}` seconds pass at once for the DUT it
    powers (a long unpowered interval at no cost); only the virtual rig's simulated PSU, whose
    world's time it is, has it."""
    off_time_skip_query: str | None = None
    """Optional: read back the seconds skipped since the output was switched off."""
    notes: str = ""

    def __post_init__(self) -> None:
        for pattern in (self.number_reply, self.error_reply.pattern):
            re.compile(pattern)
        if "value" not in re.compile(self.number_reply).groupindex:
            raise ValueError(f"profile {self.name}: number_reply needs a (?P<value>...) group")
        if self.channel_in_command:
            missing = [f for f in _CHANNEL_SCOPED if "{ch}" not in getattr(self, f)]
            if missing:
                raise ValueError(f"profile {self.name}: no select_channel, so {', '.join(missing)} need {{ch}}")
        if self.min_cmd_interval_s < 0 or self.cmd_interval_per_char_s < 0:
            raise ValueError(f"profile {self.name}: command intervals must be >= 0")

    @property
    def channel_in_command(self) -> bool:
        return self.select_channel is None

    def command(self, template: str, channel: int, value: float | None = None) -> str:
        """Fill a template; `value` is formatted with `value_format`."""
        text = "" if value is None else self.value_format.format(value)
        return template.format(ch=channel, value=text)

    def parse_number(self, reply: str) -> float:
        m = re.fullmatch(self.number_reply, reply.strip())
        if not m:
            raise ValueError("not a number reply")
        return float(m.group("value"))

    def interval_after(self, command: str) -> float:
        """Seconds to wait after `command` before the next one may be sent."""
        return self.min_cmd_interval_s + len(command) * self.cmd_interval_per_char_s


KEYSIGHT_E36 = PsuProfile(
    name="keysight-e36",
    description="Keysight E36100/E36300 (and any SCPI-1999 PSU with INST:NSEL); raw socket 5025",
    lan_port=5025,
    select_channel="INST:NSEL {ch}",
    set_voltage="VOLT {value}",
    set_current_limit="CURR {value}",
    output_on="OUTP ON",
    output_off="OUTP OFF",
    output_query="OUTP?",
    measure_voltage="MEAS:VOLT?",
    measure_current="MEAS:CURR?",
    error_query="SYST:ERR?",
)

GENERIC_SCPI = replace(
    KEYSIGHT_E36,
    name="generic-scpi",
    description="Generic SCPI-1999 PSU (Keysight style): INST:NSEL, VOLT, CURR, OUTP, MEAS",
)

RIGOL_DP800 = PsuProfile(
    name="rigol-dp800",
    description="Rigol DP800 (DP811/821/831/832); channel in each command; raw socket 5555",
    lan_port=5555,
    select_channel=None,
    set_voltage=":SOUR{ch}:VOLT {value}",
    set_current_limit=":SOUR{ch}:CURR {value}",
    output_on=":OUTP CH{ch},ON",
    output_off=":OUTP CH{ch},OFF",
    output_query=":OUTP? CH{ch}",
    measure_voltage=":MEAS:VOLT? CH{ch}",
    measure_current=":MEAS:CURR? CH{ch}",
    error_query=":SYST:ERR?",
    notes="`:OUTP? CH1` is documented as ON/OFF by the programming guide and 1/0 elsewhere "
    "(verify); both are accepted.",
)

SIGLENT_SPD3303X = PsuProfile(
    name="siglent-spd3303x",
    description="Siglent SPD3303X/X-E; channel in each command; slow parser (20 ms + len/6000 s)",
    lan_port=5025,
    select_channel=None,
    set_voltage="CH{ch}:VOLT {value}",
    set_current_limit="CH{ch}:CURR {value}",
    output_on="OUTP CH{ch},ON",
    output_off="OUTP CH{ch},OFF",
    # UNVERIFIED: OUTP? is not in the command list; the state is read from SYST:STAT? with the
    # CH1/CH2 output bits at 4/5 (reference "(verify)"). The LAN port is unverified too.
    output_query="SYST:STAT?",
    measure_voltage="MEAS:VOLT? CH{ch}",
    measure_current="MEAS:CURR? CH{ch}",
    error_query="SYST:ERR?",
    output_state=HexBitsReply(first_bit=4),
    # `0  No Error`: code and text separated by blanks, not a comma.
    error_reply=ErrorReply(r"(?P<code>[-+]?\d+)(?:[\s,]+(?P<message>.*))?"),
    min_cmd_interval_s=0.020,
    cmd_interval_per_char_s=1 / 6000,
    notes="Output state via SYST:STAT? bits 4/5 and LAN port 5025 are unverified. *SAV needs "
    "~50 ms or the unit locks up (not used by the driver).",
)

# The same command set as the Keysight profile. Chosen: `OUTP ON|OFF` on the selected channel (as
# libsigrok does for HMP4040/HMC8043/NGE100). Not used: OUTP:SEL + OUTP:GEN (channel enable +
# master switch); on HMP, OUTP ON on a channel also turns the master on (verify), so the general
# output never has to be touched.
RS_HMP = replace(
    KEYSIGHT_E36,
    name="rs-hmp",
    description="R&S HMP2020/2030/4030/4040, HMC8043, NGE100: INST:NSEL, per-channel OUTP",
)

AIMTTI_CPX = PsuProfile(
    name="aimtti-cpx",
    description="Aim-TTi CPX400DP / PL-P / MX100 (IEEE-488.2, not an SCPI tree); raw socket 9221",
    lan_port=9221,
    select_channel=None,
    set_voltage="V{ch} {value}",
    set_current_limit="I{ch} {value}",
    output_on="OP{ch} 1",
    output_off="OP{ch} 0",
    output_query="OP{ch}?",
    measure_voltage="V{ch}O?",
    measure_current="I{ch}O?",
    # EER? reads and clears the execution error register: 0 = none.
    error_query="EER?",
    error_reply=ErrorReply(r"(?P<code>\d+)"),
    # `V1O?` -> `5.000V`, `I1O?` -> `0.100A`; `V1?` -> `V1 5.00` (3-char header).
    number_reply=rf"(?:[VI]\d+O?\s+)?(?P<value>{NUMBER})\s*[VA]?",
    output_state=BoolReply(pattern=r"(?:OP\d+\s+)?(?P<state>\w+)"),
    notes="Replies may end in CR LF; the driver strips CR. pymeasure uses a 5 s timeout.",
)

# The virtual rig's simulated PSU (bench/sim/psu/): the Keysight command set plus the
# simulator's trigger input for power-cut testing, the stand-in for a lab cutting its PSU (or a
# MOSFET in the supply line) from a DUT's "NVM write" GPIO marker (docs/power.md).
PAYGO_SIM = replace(
    KEYSIGHT_E36,
    name="paygo-sim",
    description="paygo-bench's simulated PSU: Keysight SCPI plus SIM:TRIG:NVM (cut after the "
    "DUT's k-th NVM page write) and SIM:TIME:SKIP (time passes at once for the unpowered DUT)",
    nvm_cut_trigger="SIM:TRIG:NVM {value}",
    nvm_cut_query="SIM:TRIG:NVM?",
    off_time_skip="SIM:TIME:SKIP {value}",
    off_time_skip_query="SIM:TIME:SKIP?",
)

PROFILES: dict[str, PsuProfile] = {
    p.name: p for p in (GENERIC_SCPI, KEYSIGHT_E36, RIGOL_DP800, SIGLENT_SPD3303X, RS_HMP, AIMTTI_CPX, PAYGO_SIM)
}


def get_profile(name: str) -> PsuProfile:
    """The profile called `name` (case-insensitive); ValueError listing the known names."""
    key = name.strip().lower()
    try:
        return PROFILES[key]
    except KeyError:
        raise ValueError(f"unknown PSU profile {name!r}; known profiles: {', '.join(sorted(PROFILES))}") from None
