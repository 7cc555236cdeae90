"""The simulated firmware's hash step H (docs/tokens.md "How a token is made"), in C.

H(x) is SipHash-2-4 under the device's 16-byte key of x as big-endian bytes (a standard token's
32 bits written twice, an extended token's 64 bits once), folded to a token: a standard token
XORs the hash's two 32-bit halves and keeps bits 2-31, less 73,741,825 above 999,999,999; an
extended one keeps bits 24-63, less 99,511,627,777 above 999,999,999,999. That is the public
OpenPAYGO Token algorithm (github.com/EnAccess/OpenPAYGO-Token, and openpaygo's
`generate_next_token`).

A firmware computes it in C, openpaygo in pure Python (about 7 us a hash against 0.7 us here):
near the top of the count a decode walks 65,000 of them, and the simulators were a quarter of
the self-tests' CPU. The `siphash24` package (the bench's dependency for Metrics signatures)
gives the same SipHash; a self-test holds these steps to openpaygo's on random values
(tests/selftest/test_sim_token_hash.py). Without the C package, openpaygo's steps are used.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from openpaygo.token_shared import OpenPAYGOTokenShared
from openpaygo.token_shared_extended import OpenPAYGOTokenSharedExtended

try:
    from siphash24 import siphash24 as _siphash  # type: ignore[import-not-found]  # no stubs
except ImportError:  # pragma: no cover - an install without the C extension
    _siphash = None

_U64 = 2**64 - 1
_U32 = 2**32 - 1
_BITS_2_31 = ((1 << 31) - 1) << 2
_pack32 = struct.Struct(">L").pack
_pack64 = struct.Struct(">Q").pack


def _standard(last: int, key: bytes) -> int:
    half = _pack32(last)
    h = _siphash(half + half, key=key).intdigest() & _U64  # intdigest is signed
    token = (((h >> 32) ^ (h & _U32)) & _BITS_2_31) >> 2
    return token - 73_741_825 if token > 999_999_999 else token


def _extended(last: int, key: bytes) -> int:
    h = _siphash(_pack64(last), key=key).intdigest() & _U64
    token = h >> 24
    return token - 99_511_627_777 if token > 999_999_999_999 else token


IMPL = "C (siphash24)" if _siphash is not None else "pure Python (openpaygo)"


def next_token(extended: bool) -> Callable[[int, bytes], int]:
    """H for the token form: (last raw value, key) -> the next raw value."""
    if _siphash is None:  # pragma: no cover
        return (OpenPAYGOTokenSharedExtended if extended else OpenPAYGOTokenShared).generate_next_token
    return _extended if extended else _standard
