"""The fault catalogue: realistic firmware and board defects the virtual rig can switch on.

Each entry names the device tests that must fail when the defect is present (and only those:
every other device test must still pass). `tests/selftest/test_fault_detection.py` proves it
for every entry by running the device suite against a simulator with that one defect.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    name: str
    layer: str  # firmware | decoder | board
    description: str
    caught_by: tuple[str, ...]  # device test node ids, relative to the repository root


_T = "tests/device/"

CATALOGUE: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault(
            "reused_token_accepted",
            "decoder",
            "the used-count check is skipped: a token already entered is accepted again",
            (_T + "test_tokens.py::test_reused_token_refused",
             _T + "test_persistence.py::test_token_state_survives_power_cycle"),
        ),
        Fault(
            "accepts_starting_code",
            "decoder",
            "the starting code itself decodes as an ADD 0 token at count 0 (openpaygo 0.6.3 bug)",
            (_T + "test_tokens.py::test_invalid_tokens_refused",),
        ),
        Fault(
            "count_not_persisted",
            "firmware",
            "the token count and used-count mask are kept in RAM only: after a power cycle the "
            "device has forgotten which tokens it accepted",
            (_T + "test_persistence.py::test_token_state_survives_power_cycle",),
        ),
        Fault(
            "provisioning_not_persisted",
            "firmware",
            "factory data (serial, key, starting code) is never committed to NVM: the device comes "
            "back unprovisioned after a power cycle",
            (_T + "test_persistence.py::test_provisioning_survives_power_cycle",
             _T + "test_persistence.py::test_token_state_survives_power_cycle"),
        ),
        Fault(
            "serial_truncated",
            "firmware",
            "the serial number is stored in an 8-byte buffer: longer serials are cut",
            (_T + "test_identity.py::test_provisioning_round_trip",),
        ),
        Fault(
            "key_echoed",
            "firmware",
            "a debug leftover echoes the secret key in the provisioning reply",
            (_T + "test_identity.py::test_provisioning_round_trip",),
        ),
        Fault(
            "wrong_protocol_major",
            "firmware",
            "the firmware implements an incompatible major version of the test protocol (0.9)",
            (_T + "test_identity.py::test_identity",),
        ),
        Fault(
            "backfeed_from_uart",
            "board",
            "the board is powered through the UART adapter's lines: switching the PSU off does not "
            "power the device down (a wiring fault that voids every power test)",
            (_T + "test_power.py::test_device_silent_when_unpowered",
             _T + "test_power.py::test_power_cycle_reboots_device",
             _T + "test_persistence.py::test_provisioning_survives_power_cycle",
             _T + "test_persistence.py::test_token_state_survives_power_cycle"),
        ),
    )
}


def validate(names) -> tuple[str, ...]:
    """Return names as a tuple, or raise ValueError naming the unknown ones and the valid ones."""
    names = tuple(names)
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        raise ValueError(
            f"unknown simulator fault(s) {', '.join(unknown)}; known: {', '.join(sorted(CATALOGUE))}"
        )
    return names
