"""What the device ledger holds of one device, as the bench reads it: its identity (a one-way
fingerprint of its key, never the key), its current token state, an entry left pending, and how
a model state is written in the ledger file (docs/ledger.md)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from bench.openpaygo.model import ModelState
from bench.secret import Secret


def utc_text(when: datetime | None = None) -> str:
    return (when or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def key_fingerprint(key: Secret) -> str:
    """A one-way fingerprint of the device key: tells a key change from the key the ledger saw,
    and shows nothing of the key (16 random bytes cannot be searched back from it)."""
    return hashlib.sha256(b"paygo-bench ledger key\x00" + bytes.fromhex(key.reveal())).hexdigest()[:16]


def state_json(s: ModelState) -> str:
    return json.dumps(
        {
            "last_count": s.last_count,
            "used": sorted(s.used),
            "active_until": s.active_until,
            "payg_disabled": s.payg_disabled,
            "invalid_streak": s.invalid_streak,
            "locked_until": s.locked_until,
        },
        separators=(",", ":"),
    )


def state_from_json(text: str) -> ModelState:
    d = json.loads(text)
    return ModelState(
        int(d["last_count"]),
        frozenset(int(c) for c in d["used"]),
        int(d["active_until"]),
        bool(d["payg_disabled"]),
        int(d["invalid_streak"]),
        int(d["locked_until"]),
    )


@dataclass(frozen=True)
class DeviceIdentity:
    serial: str
    key_fingerprint: str
    starting_code: int
    adapter: str


@dataclass(frozen=True)
class Pending:
    """A token entry written ahead whose reply was never recorded (the run stopped)."""

    entry_id: int
    code: str
    count: int | None  # the count the token was made for (None: a code with no count, e.g. invalid)
    predicted: str  # the model's predicted outcome
    before: ModelState
    after: ModelState  # the model's state had the DUT done what it predicted
    at: str
    run_id: str


@dataclass(frozen=True)
class LedgerState:
    serial: str
    epoch: int
    epoch_how: str
    epoch_started: str
    state: ModelState
    clock_offset_s: int
    trusted: bool
    why_untrusted: str | None
    max_count_sent: int  # the highest count of a token the bench entered in this epoch
    pending: Pending | None
    updated_at: str
