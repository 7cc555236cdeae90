"""The raw hash chains both sides of a token test walk, kept once per process.

A token at count c for a value is put_base(H^c(put_base(SC, base)), base), H being openpaygo's
`generate_next_token` (docs/tokens.md "How a token is made"). The bench's token generator walks
that chain to craft a token and its device model walks the very same chain to predict the
device's reply: at the top of the count (65,535) each walk is 65,000 openpaygo hashes, most of a
boundary test's CPU. The chain depends only on the key, the starting code, the token form
(standard or extended) and the base, so one copy serves both. Entries are keyed by a digest of
the key, never the key itself, and the least recently used are dropped past `KEPT`.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from openpaygo.token_shared import OpenPAYGOTokenShared
from openpaygo.token_shared_extended import OpenPAYGOTokenSharedExtended

KEPT = 128  # chains kept in all (one per value's base in use; a walk uses a few dozen)

_chains: OrderedDict[tuple[bytes, int, bool, int], list[int]] = OrderedDict()


def raw_chain(key: bytes, starting_code: int, extended: bool, base: int, upto: int) -> list[int]:
    """Raw hash outputs at counts 0..upto (at least) for this base. The list is shared: read it,
    never change it."""
    shared = OpenPAYGOTokenSharedExtended if extended else OpenPAYGOTokenShared
    slot = (hashlib.blake2b(key, digest_size=16, person=b"paygo-chain").digest(), starting_code, extended, base)
    chain = _chains.pop(slot, None) or [shared.put_base_in_token(starting_code, base)]
    _chains[slot] = chain  # most recently used last
    while len(_chains) > KEPT:
        _chains.popitem(last=False)
    while len(chain) <= upto:
        chain.append(shared.generate_next_token(chain[-1], key))
    return chain
