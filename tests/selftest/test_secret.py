"""bench.secret: a key is masked in every common encoding a firmware might print it in, and
foreign text is shown as one bounded, printable line."""

from __future__ import annotations

import base64

import pytest

from bench.secret import MASK, Secret, mask, redacted, shown

KEY = "a29ab82edc5fbbc41ec9530f6dac86b1"
RAW = bytes.fromhex(KEY)

ENCODINGS = {
    "hex": KEY,
    "HEX": KEY.upper(),
    "hex colon": ":".join(f"{b:02x}" for b in RAW),
    "HEX space": " ".join(f"{b:02X}" for b in RAW),
    "hex dash": "-".join(f"{b:02x}" for b in RAW),
    "C array": ", ".join(f"0x{b:02X}" for b in RAW),
    "escaped": "".join(f"\\x{b:02x}" for b in RAW),
    "hex unpadded": "".join(f"{b:X}" for b in RAW),
    "base64": base64.b64encode(RAW).decode(),
    "base64 url unpadded": base64.urlsafe_b64encode(RAW).decode().rstrip("="),
    "base64 of the hex text": base64.b64encode(KEY.encode()).decode(),
    "decimal big-endian": str(int.from_bytes(RAW, "big")),
    "decimal little-endian": str(int.from_bytes(RAW, "little")),
}


@pytest.mark.parametrize("name", ENCODINGS)
def test_key_masked_in_every_encoding(name):
    line = f"OK sn=SIM1 key={ENCODINGS[name]} done"
    assert mask(line, [Secret(KEY)]) == f"OK sn=SIM1 key={MASK} done"
    assert mask(line, [KEY]) == f"OK sn=SIM1 key={MASK} done"  # a plain string works the same


def test_url_safe_base64_differs_and_is_masked():
    """A key whose base64 has '+' and '/': its URL-safe spelling is another string, masked too."""
    raw = bytes.fromhex("fbffbf" * 5 + "01")
    std, url = base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()
    assert std != url
    for spelling in (std, url, url.rstrip("=")):
        assert mask(f"k={spelling};", [Secret(raw.hex())]) == f"k={MASK};"


def test_other_text_and_other_keys_untouched():
    other = "00112233445566778899aabbccddeeff"
    line = f"OK sn=SIM1 count=12 key={other} t=1700000000 b64=AAECAw=="
    assert mask(line, [Secret(KEY)]) == line


def test_non_hex_secret_masked_as_text_and_base64():
    jwt = "correct-horse-battery"
    line = f"secret {jwt.upper()} b64={base64.b64encode(jwt.encode()).decode()}"
    assert mask(line, [Secret(jwt)]) == f"secret {MASK} b64={MASK}"


def test_short_secret_not_masked():
    assert mask("abc ab", [Secret("abc")]) == "abc ab"


def test_shown_escapes_control_bytes_and_cuts_long_lines():
    assert shown("OK\x07\x1b[31mred\r") == "OK\\x07\\x1b[31mred\\x0d"
    long = "x" * 1_000_000
    out = shown(long, limit=50)
    assert out.startswith("x" * 50) and "1000000 characters in all" in out and len(out) < 120


def test_redacted_masks_before_cutting():
    """A key straddling the cut is masked whole, never shown in part."""
    line = "y" * 199 + KEY
    out = redacted(line, [Secret(KEY)])
    assert KEY[:10] not in out and out.endswith("*... [202 characters in all, 2 not shown]")
