"""What a Metrics session needs from the firmware it runs in (DevicePort), and the reference
firmware's answer (FirmwareMetricsPort): identity and settings from NVM, the request counter stored
before each request leaves, the current data, and a reply's tokens entered through the firmware's
own token path.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from bench.sim.faults import Fault
from bench.sim.token_decoder import TokenState, decode

if TYPE_CHECKING:
    from bench.sim.firmware import Firmware


class DevicePort(Protocol):
    """What the session needs from the firmware it runs in."""

    @property
    def serial(self) -> str: ...
    @property
    def key_hex(self) -> str: ...
    @property
    def auth(self) -> str: ...
    @property
    def data_format_id(self) -> int: ...
    @property
    def base_url(self) -> str: ...

    def rtc_now(self) -> float: ...
    def next_request_count(self) -> int: ...  # rc + 1, written to NVM before it is returned
    def current_data(self) -> dict[str, Any]: ...  # token_count, firmware_version, ... by name
    def load_on(self) -> bool: ...  # the PAYG output is on (credit left)
    def enter_tokens(self, codes: list[str]) -> int: ...  # in increasing count; returns how many were accepted
    def follow(self, base_url: str | None, data_format_id: int | None) -> None: ...  # written to NVM


class FirmwareMetricsPort:
    """The firmware as the Metrics session sees it (DevicePort)."""

    def __init__(self, fw: Firmware) -> None:
        self.fw = fw

    @property
    def serial(self) -> str:
        return self.fw.state.serial

    @property
    def key_hex(self) -> str:
        return self.fw.state.key_hex

    @property
    def auth(self) -> str:
        return self.fw.state.auth

    @property
    def data_format_id(self) -> int:
        return self.fw.state.data_format_id

    @property
    def base_url(self) -> str:
        return self.fw.state.metrics_url

    def rtc_now(self) -> float:
        return self.fw.rtc.now()

    def next_request_count(self) -> int:
        fw = self.fw
        fw.state = replace(fw.state, metrics_rc=fw.state.metrics_rc + 1)
        fw._persist()
        return fw.state.metrics_rc

    def current_data(self) -> dict[str, Any]:
        st = self.fw.state
        return {
            "token_count": st.last_count,
            "firmware_version": self.fw.firmware_version,
            "tampered": False,  # the simulated enclosure has no switch, and is never opened
            "payg_active_until": st.active_until,
            "payg_disabled": st.payg_disabled,
        }

    def load_on(self) -> bool:
        st = self.fw.state
        return st.payg_disabled or st.active_until > self.fw._now()

    def enter_tokens(self, codes: list[str]) -> int:
        """Enter the reply's tokens in increasing count (found by a dry-run decode; those that do
        not decode keep their place after the others), each as if typed. Codes of a length the
        keypad does not take are skipped."""
        fw = self.fw
        if Fault.METRICS_TOKENS_NOT_APPLIED in fw.faults:
            return 0  # the reply handler parses tkl, but its call into token entry is a stub
        st = fw.state
        lengths = fw._token_lengths()
        usable = [c for c in codes if c.isdigit() and c.isascii() and len(c) in lengths]
        key = bytes.fromhex(st.key_hex)

        def count_of(item: tuple[int, str]) -> tuple[float, int]:
            index, code = item
            result, _ = decode(
                code,
                key,
                st.starting_code,
                TokenState(st.last_count, st.used_mask),
                restricted_digits=st.restricted,
                extended=len(code) in (12, 20),
                faults=fw.faults,
            )
            return (result.count if result.outcome == "accepted" and result.count is not None else float("inf"), index)

        accepted = 0
        for _, code in sorted(enumerate(usable), key=count_of):
            if fw.enter_token(code).startswith("OK result=accepted"):
                accepted += 1
        return accepted

    def follow(self, base_url: str | None, data_format_id: int | None) -> None:
        fw = self.fw
        changes: dict[str, Any] = {}
        if base_url is not None:
            changes["metrics_url"] = base_url
        if data_format_id is not None:
            changes["data_format_id"] = data_format_id
        fw.state = replace(fw.state, **changes)
        fw._persist()
