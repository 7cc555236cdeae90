"""The simulator's hash step in C (bench/sim/token_hash.py) gives openpaygo's values: a
difference would make the simulated device refuse every token the bench makes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpaygo.token_shared import OpenPAYGOTokenShared
from openpaygo.token_shared_extended import OpenPAYGOTokenSharedExtended

from bench.sim import token_hash

KEYS = st.binary(min_size=16, max_size=16)


def test_the_c_step_is_in_use():
    pytest.importorskip("siphash24")
    assert token_hash.IMPL.startswith("C")


@settings(max_examples=3000, deadline=None)
@given(last=st.integers(0, 999_999_999), key=KEYS)
def test_standard_step_is_openpaygos(last, key):
    assert token_hash.next_token(False)(last, key) == OpenPAYGOTokenShared.generate_next_token(last, key)


@settings(max_examples=3000, deadline=None)
@given(last=st.integers(0, 999_999_999_999), key=KEYS)
def test_extended_step_is_openpaygos(last, key):
    assert token_hash.next_token(True)(last, key) == OpenPAYGOTokenSharedExtended.generate_next_token(last, key)


def _folded(extended: bool, last: int, key: bytes) -> bool:
    """Whether openpaygo's step for `last` took the fold above the token's limit."""
    if extended:
        h = OpenPAYGOTokenShared.generate_hash(key, struct.pack(">Q", last))  # the same SipHash
        return (h >> 24) > 999_999_999_999
    h = OpenPAYGOTokenShared.generate_hash(key, struct.pack(">L", last) * 2)
    return ((((h >> 32) ^ (h & 0xFFFFFFFF)) >> 2) & (2**30 - 1)) > 999_999_999


@pytest.mark.parametrize("extended", [False, True])
def test_a_walked_chain_is_openpaygos(extended):
    """Each output fed back in, as the decoder walks: 2,000 steps from the quick test's
    starting code (docs/tokens.md "Test vectors"), the fold above the limit taken on some."""
    key = bytes.fromhex("a29ab82edc5fbbc41ec9530f6dac86b1")
    shared = OpenPAYGOTokenSharedExtended if extended else OpenPAYGOTokenShared
    step = token_hash.next_token(extended)
    ours = theirs = 123456789
    folded = 0
    for _ in range(2000):
        folded += _folded(extended, theirs, key)
        ours, theirs = step(ours, key), shared.generate_next_token(theirs, key)
        assert ours == theirs
    assert folded, "no step took the fold above the limit: the walk did not reach that branch"
