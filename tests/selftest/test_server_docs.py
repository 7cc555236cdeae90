"""docs/server.md stays true to the server: every error code, status and serve option."""

from __future__ import annotations

import re
from pathlib import Path

from bench.cli import build_parser
from bench.openpaygo.metrics.errors import CODES

DOC = (Path(__file__).resolve().parents[2] / "docs" / "server.md").read_text()


def test_every_error_code_is_documented_with_its_status():
    documented = {code: int(status) for status, code in re.findall(r"^\| (\d{3}) \| `(\w+)` \|", DOC, re.M)}
    assert documented == {code: status for code, (status, _) in CODES.items()}


def test_every_serve_option_is_documented():
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    options = {o for a in serve._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
    missing = sorted(o for o in options if f"`{o}`" not in DOC)
    assert not missing, f"docs/server.md does not document {missing}"
