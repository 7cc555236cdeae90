"""The C SipHash-2-4 (siphash24) gives exactly openpaygo's pure-Python values: the server
verifies signatures with it for speed, so any difference would refuse a correct device."""

from __future__ import annotations

import random

import pytest

from bench.openpaygo.metrics import auth
from bench.openpaygo.metrics.auth import SignedFields, request_signature, siphash64, siphash64_reference
from bench.secret import Secret

KEY = "dac86b1a29ab82edc5fbbc41ec9530f6"  # docs/metrics.md "Reference vectors"


def test_the_c_hash_is_in_use():
    pytest.importorskip("siphash24")
    assert auth.SIPHASH_IMPL.startswith("C")


def test_c_and_pure_python_agree_on_many_keys_and_messages():
    rng = random.Random(19)
    for n in range(600):
        key = "".join(rng.choice("0123456789abcdefABCDEF") for _ in range(32))
        size = n % 70 if n < 300 else rng.randrange(0, 3000)  # every length around the 8-byte blocks
        msg = "".join(chr(rng.choice((rng.randrange(32, 127), rng.randrange(160, 0x2FFF)))) for _ in range(size))
        assert siphash64(key, msg) == siphash64_reference(key, msg), (n, size)
        assert siphash64(Secret(key), msg) == siphash64_reference(Secret(key), msg)


@pytest.mark.parametrize(
    "method, expected",
    [
        ("sa", "safc4499591b87ba1c"),
        ("ta", "tabdc447493edff1ef"),
        ("da", "da64c00b295ccf6ef5"),
        ("ra", "ra4b2b119e6bb63f1a"),
    ],
)
def test_the_spec_vectors_with_the_hash_in_use(method, expected):
    f = SignedFields(
        "A111222", 1611583070, None, [13, False, "1.14.2"], [[17.5, 12.5, 2.2, 3.2], [15.7, 12.6, 2.2, 3.2, 0.7]]
    )
    assert request_signature(f, method, KEY) == expected


def test_a_bad_key_is_refused_as_before():
    with pytest.raises(ValueError, match="32 hexadecimal"):
        siphash64("not a key", "x")
