"""What a simulated reference-firmware build offers, and the commands a build without a
capability does not have (docs/protocol.md "Capabilities").

A production firmware often ships without the test commands a lab would like (no factory
reset, no clock setting): `hide_capabilities` builds the simulated device that way, so the bench
can be shown to judge such a device correctly. A missing command is answered as any command the
firmware does not know: `ERR 404 unknown command '<command>'`.
"""

from __future__ import annotations

# Every build has token entry and a status readout: without them there is nothing to test.
ESSENTIAL = ("token", "status")

# The request forms each hideable capability stands for: (command word, first argument upper
# case; "" = the command without arguments). A capability without forms (rtc_subsecond,
# extended_tokens) changes what a command accepts or returns, not whether it exists.
FORMS: dict[str, tuple[tuple[str, str], ...]] = {
    "rtc": (("RTC", ""),),
    "rtc_subsecond": (),
    "rtc_set": (("RTC", "SET"),),
    "nvm": (("NVM", ""),),
    "factory_reset": (("NVM", "ERASE"),),
    "metrics_bridge": (("METRICS", "EXPORT"), ("METRICS", "IMPORT")),
    "metrics_report": (("METRICS", "CONFIG"), ("METRICS", "REPORT"), ("METRICS", "STATUS"), ("METRICS", "FORMAT")),
    "extended_tokens": (),
}
HIDEABLE = tuple(FORMS)


def validate_hidden(names) -> frozenset[str]:
    """The names as a set; ValueError naming the option and the offending name otherwise."""
    hidden = frozenset(names)
    for name in sorted(hidden):
        if name in ESSENTIAL:
            raise ValueError(
                f"hide_capabilities: '{name}' cannot be hidden: every device has "
                f"{' and '.join(ESSENTIAL)} (hideable: {', '.join(HIDEABLE)})"
            )
        if name not in FORMS:
            raise ValueError(
                f"hide_capabilities: unknown capability '{name}'; known: {', '.join(ESSENTIAL + HIDEABLE)}"
            )
    return hidden


def _forms_of(command: str) -> set[str]:
    return {sub for forms in FORMS.values() for word, sub in forms if word == command}


def missing_command(words: list[str], hidden: frozenset[str]) -> str | None:
    """The command this build lacks, as the firmware names it in its 404 reply, or None.

    A command word all of whose forms are hidden is unknown as a whole (`RTC` when both `rtc`
    and `rtc_set` are hidden); otherwise only the hidden form is (`NVM ERASE`)."""
    if not hidden or not words:
        return None
    command = words[0].upper()
    known = _forms_of(command)
    if not known:
        return None
    gone = {sub for name in hidden for word, sub in FORMS[name] if word == command}
    if gone and gone == known:
        return command
    sub = words[1].upper() if len(words) > 1 else ""
    if sub in gone:
        return f"{command} {sub}".rstrip()
    return None
