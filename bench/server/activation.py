"""What a token reply holds: the tokens that bring a device from where it is to its target.

Most devices run in "time" mode, and the spec's note says the server usually sends one SET_TIME
token for (target - now). A SET carries at most 995 x 1/divider days, so a longer remainder
follows as ADD_TIME tokens, in increasing count (the order the spec asks for). Rules:
- no target: no tokens;
- the target changed since the last tokens, or the device reports a count above the server's
  (someone else gave it tokens, so its state is unknown): issue afresh above the higher count;
- the device reports a count more than MAX_AHEAD above the server's: no token from the server's
  count can reach it in one step (a device accepts a token at most 64 counts above its own, a
  COUNTER_SYNC 100: docs/tokens.md "Windows", bench/openpaygo/model.py), so the report is not
  a state the server can follow: no tokens, the server's count and tokens unchanged, the rest
  of the reply as usual (`beyond_windows`; the app logs why). Tokens are never hashed up to a
  reported count: OpenPAYGO hashes once per count, so one bogus count of 2**64 would hold the
  server for ever;
- same target, device still below the last tokens' count: send those again (it has not entered
  them; they are still valid and idempotent);
- otherwise the device is where it should be: no tokens.
A remainder is rounded UP to the token's granularity: a device is never locked before its time.
So a plan hashes at most MAX_TOKENS x (the server's count + MAX_AHEAD + 2 x MAX_TOKENS) times:
its cost is set by the registry's count, never by what a device says."""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction

from bench.openpaygo.model import MAX_TOKEN_JUMP, MAX_TOKEN_JUMP_COUNTER_SYNC
from bench.server.devices import Device
from bench.server.store import DeviceState, IssuedToken

DAY = 86400
MAX_CHUNK = 995  # raw value of one SET/ADD token
MAX_TOKENS = 8  # 8 x 995 days is more than 21 years: a longer target is capped
# The furthest one token moves a device's count forward (a COUNTER_SYNC; any other token 64).
MAX_AHEAD = max(MAX_TOKEN_JUMP, MAX_TOKEN_JUMP_COUNTER_SYNC)


def beyond_windows(state: DeviceState, reported_count: int | None) -> bool:
    """True if the device reports a count no token could have taken it to from the server's
    count: the plan ignores such a count (see the module's rules)."""
    return reported_count is not None and reported_count > state.token_count + MAX_AHEAD


def plan_tokens(
    device: Device, state: DeviceState, reported_count: int | None, now: float
) -> tuple[list[IssuedToken], DeviceState]:
    """(tokens to send, new state). `reported_count` is the device's `token_count`."""
    target = state.target_until
    reported = reported_count if reported_count is not None else 0
    if target is None or beyond_windows(state, reported_count):
        return [], state
    ahead = reported > state.token_count
    if state.synced_target == target and not ahead:
        pending = [t for t in state.last_tokens if t.count > reported]
        return pending, state
    remaining = max(0.0, target - now)
    raw = math.ceil(Fraction(remaining) * device.time_divider / DAY)
    gen = device.generator(max(state.token_count, reported))
    tokens: list[IssuedToken] = []
    first = min(raw, MAX_CHUNK)
    t = gen.set_days(Fraction(first, device.time_divider))
    tokens.append(IssuedToken(t.code, t.count, "set_time", first))
    rest = raw - first
    while rest > 0 and len(tokens) < MAX_TOKENS:
        chunk = min(rest, MAX_CHUNK)
        t = gen.add_days(Fraction(chunk, device.time_divider))
        tokens.append(IssuedToken(t.code, t.count, "add_time", chunk))
        rest -= chunk
    return tokens, replace(state, token_count=gen.count, synced_target=target, last_tokens=tuple(tokens))


def active_until_timestamp(state: DeviceState) -> int:
    """`auts`: the target as an integer UNIX time (0: no target)."""
    return int(state.target_until) if state.target_until is not None else 0


def active_seconds_left(state: DeviceState, now: float) -> int:
    """`asl`: whole seconds from now to the target, never negative (the reference has the sign
    backwards and answers a float: "asl sign" and "auts float" in
    docs/metrics.md)."""
    if state.target_until is None:
        return 0
    return max(0, int(state.target_until - now))
