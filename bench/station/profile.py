"""One mapping from the rig's DUT profile to everything built from it: what the DUT is
provisioned with, the brute-force lockout it must follow, the bench's model of its token state
and the token server that issues its tokens. Every caller takes them from here, so a profile
field is read in one place."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from bench.dut.adapter import Provisioning
from bench.openpaygo.model import DeviceModel, LockoutSchedule, ModelState
from bench.openpaygo.tokens import Token, TokenGenerator
from bench.rig import DutProfile

# The fields a test may change when it provisions the DUT differently from its profile
# (`reprovisioned`): the device-side ones need a factory reset; extended tokens are host side.
DEVICE_SIDE = ("time_divider", "restricted_digits", "token_count")
HOST_SIDE = ("extended_tokens",)


def changed(profile: DutProfile, **overrides) -> DutProfile:
    """The profile with the given fields replaced (TypeError naming an unknown one)."""
    unknown = set(overrides) - set(DEVICE_SIDE) - set(HOST_SIDE)
    if unknown:
        raise TypeError(
            f"a DUT profile change may touch {', '.join(DEVICE_SIDE + HOST_SIDE)}; not {', '.join(sorted(unknown))}"
        )
    return dataclasses.replace(profile, **overrides)


def provisioning_for(profile: DutProfile) -> Provisioning:
    return Provisioning(
        serial_number=profile.serial_number,
        secret_key=profile.secret_key,
        starting_code=profile.starting_code,
        token_count=profile.token_count,
        time_divider=profile.time_divider,
        restricted_digits=profile.restricted_digits,
    )


def lockout_for(profile: DutProfile) -> LockoutSchedule:
    """The brute-force lockout the profile declares (docs/rig.md `dut.lockout_*`; by default the
    reference firmware's: two free errors, then error n locks 2^(n-2) minutes, capped at 512,
    the streak capped at 11)."""
    return LockoutSchedule(
        free_errors=profile.lockout_free_errors,
        first_minutes=profile.lockout_first_minutes,
        max_minutes=profile.lockout_max_minutes,
        max_streak=profile.lockout_max_streak,
        unit_s=profile.lockout_unit_s,
    )


def fresh_state(profile: DutProfile) -> ModelState:
    """The token state of a device just provisioned with the profile: its count, nothing used
    but the count itself, no credit, PAYG on, no invalid streak."""
    c = profile.token_count
    return ModelState(c, frozenset({c}), 0, False, 0, 0)


def model_for(profile: DutProfile, state: ModelState | None = None) -> DeviceModel:
    """The bench's model of the device in `state` (default: just provisioned)."""
    s = state or fresh_state(profile)
    return DeviceModel(
        profile.secret_key,
        profile.starting_code,
        s.last_count,
        used=s.used,
        time_divider=profile.time_divider,
        restricted_digits=profile.restricted_digits,
        extended=profile.extended_tokens,
        active_until=s.active_until,
        payg_disabled=s.payg_disabled,
        invalid_streak=s.invalid_streak,
        locked_until=s.locked_until,
        lockout=lockout_for(profile),
        sync_lowers_count=profile.sync_lowers_count,
        extended_special=profile.extended_998_999 == "disable_sync",
        extended_only=profile.extended_only,
    )


def generator_for(
    profile: DutProfile,
    count: int | None = None,
    on_issue: Callable[[Token], None] | None = None,
    extended: bool | None = None,
) -> TokenGenerator:
    """A token server for the profile's device whose last issued count is `count` (default the
    profile's starting count); `on_issue` hears of every token it hands out. It issues standard
    tokens even to a device that takes extended ones too (docs/tokens.md "Where a device may
    choose"), extended ones where the profile takes only those or `extended` asks for them."""
    return TokenGenerator(
        profile.secret_key,
        profile.starting_code,
        profile.token_count if count is None else count,
        profile.time_divider,
        profile.restricted_digits,
        profile.extended_only if extended is None else extended,
        on_issue=on_issue,
    )
