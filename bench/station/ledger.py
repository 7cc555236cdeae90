"""The device ledger: what the bench knows about each physical device it has driven, keyed by
serial number, kept in SQLite across runs and shared by a lab's stations (docs/ledger.md).

For each serial: its identity (starting code, a fingerprint of its key: never the key), its
provisioning epochs, every token the bench generated for it and every one it entered with the
DUT's reply, and the bench's model state after each step (count, used counts, credit end, PAYG,
invalid streak, lockout). A token entry is written *before* the token goes out (`begin_token`,
a pending entry) and completed when the reply came (`end_token`), so a run killed in the middle
of an entry leaves a pending entry that the next bring-up resolves, never a silent gap.

Model times (credit end, lockout end) are the bench's model clock: UTC seconds plus the seconds
the bench has set the DUT's clock ahead (`clock_offset_s`), so they mean the same thing in the
next run.

Commits are durable against the bench process being killed (SQLite WAL, synchronous=NORMAL): a
kill, Ctrl-C or crash loses nothing committed. A power failure of the host itself may lose the
last commits; the next bring-up then finds the device ahead of its ledger and says so.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.locations import storage_failure
from bench.openpaygo.model import ModelState
from bench.openpaygo.tokens import Token
from bench.station.ledger_state import (
    DeviceIdentity,
    LedgerState,
    Pending,
    state_from_json,
    state_json,
    utc_text,
)

LEDGER_VERSION = 1
BUSY_TIMEOUT_S = 30.0  # another station writing the same file holds it this long at most

_SCHEMA = """
CREATE TABLE devices (
    serial TEXT PRIMARY KEY, key_fingerprint TEXT NOT NULL, starting_code INTEGER NOT NULL,
    adapter TEXT NOT NULL, first_seen TEXT NOT NULL
);
CREATE TABLE epochs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, serial TEXT NOT NULL, started_at TEXT NOT NULL,
    how TEXT NOT NULL, run_id TEXT NOT NULL, test TEXT
);
CREATE TABLE entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, serial TEXT NOT NULL, epoch INTEGER NOT NULL,
    at TEXT NOT NULL, run_id TEXT NOT NULL, test TEXT, action TEXT NOT NULL,
    code TEXT, token_kind TEXT, value INTEGER, count INTEGER,
    predicted TEXT, reply TEXT, pending INTEGER NOT NULL DEFAULT 0,
    state_before TEXT, state_after TEXT, note TEXT
);
CREATE INDEX entries_serial ON entries (serial, id);
CREATE TABLE current (
    serial TEXT PRIMARY KEY, epoch INTEGER NOT NULL, state TEXT NOT NULL,
    clock_offset_s INTEGER NOT NULL, trusted INTEGER NOT NULL, why TEXT,
    max_count_sent INTEGER NOT NULL, pending_entry INTEGER, updated_at TEXT NOT NULL
);
"""


LEDGER_NAME = "ledger.sqlite"


def default_ledger_path(rig, run_dir: Path, reports: Path) -> Path:
    """Where the ledger is (docs/ledger.md): the rig's `dut.ledger`; else, for a virtual device
    that lives only for this run (no `sim.state_dir`), the run directory; else `reports/`."""
    if rig.dut.ledger is not None:
        return Path(rig.dut.ledger)
    if rig.virtual and not rig.sim.state_dir:
        return run_dir / LEDGER_NAME
    return reports / LEDGER_NAME


class LedgerError(Exception):
    """The ledger file cannot be used; the message names the file and what to do."""


class Ledger:
    def __init__(self, path: Path, run_id: str = "") -> None:
        self.path = Path(path)
        self.run_id = run_id
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self.con.execute("PRAGMA journal_mode=WAL")
            self.con.execute("PRAGMA synchronous=NORMAL")
            version = self.con.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:  # a new file: the tables, then the version, in one transaction
                self.con.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version = {LEDGER_VERSION};COMMIT;")
        except (sqlite3.DatabaseError, OSError) as e:
            raise LedgerError(
                storage_failure(e, self.path)  # a full disk, a read-only folder: the file and the errno
                or f"{self.path}: cannot be used as the device ledger ({e}); it is not a paygo-bench "
                "ledger, or its folder is not writable"
            ) from None
        if version > LEDGER_VERSION:
            self.con.close()
            raise LedgerError(
                f"{self.path} was written by a newer paygo-bench (ledger version {version}; this one "
                f"reads up to {LEDGER_VERSION}): update the bench"
            )

    def close(self) -> None:
        self.con.close()

    def _tx(self):
        return _Transaction(self.con)

    # -- reading ----------------------------------------------------------------------------
    def device(self, serial: str) -> DeviceIdentity | None:
        row = self.con.execute(
            "SELECT serial, key_fingerprint, starting_code, adapter FROM devices WHERE serial = ?", (serial,)
        ).fetchone()
        return DeviceIdentity(*row) if row else None

    def current(self, serial: str) -> LedgerState | None:
        row = self.con.execute(
            "SELECT c.epoch, e.how, e.started_at, c.state, c.clock_offset_s, c.trusted, c.why, c.max_count_sent, "
            "c.pending_entry, c.updated_at FROM current c JOIN epochs e ON e.id = c.epoch WHERE c.serial = ?",
            (serial,),
        ).fetchone()
        if row is None:
            return None
        epoch, how, started, state, offset, trusted, why, max_sent, pending_id, updated = row
        return LedgerState(
            serial,
            epoch,
            how,
            started,
            state_from_json(state),
            offset,
            bool(trusted),
            why,
            max_sent,
            self._pending(pending_id) if pending_id is not None else None,
            updated,
        )

    def _pending(self, entry_id: int) -> Pending:
        code, count, predicted, before, after, at, run_id = self.con.execute(
            "SELECT code, count, predicted, state_before, state_after, at, run_id FROM entries WHERE id = ?",
            (entry_id,),
        ).fetchone()
        return Pending(entry_id, code, count, predicted, state_from_json(before), state_from_json(after), at, run_id)

    def entries(self, serial: str, last: int | None = None) -> list[dict[str, Any]]:
        """The serial's entries, oldest first (the last `last` of them)."""
        cur = self.con.execute("SELECT * FROM entries WHERE serial = ? ORDER BY id", (serial,))
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur]
        return rows if last is None else rows[len(rows) - last :] if last > 0 else []

    def serials(self) -> list[str]:
        return [r[0] for r in self.con.execute("SELECT serial FROM devices ORDER BY serial")]

    # -- writing ----------------------------------------------------------------------------
    def new_epoch(
        self,
        identity: DeviceIdentity,
        how: str,
        state: ModelState,
        test: str | None = None,
        clock_offset_s: int | None = None,
    ) -> LedgerState:
        """The device was (re)provisioned or adopted: its token history starts again from `state`."""
        now = utc_text()
        with self._tx():
            self.con.execute(
                "INSERT INTO devices VALUES (?, ?, ?, ?, ?) ON CONFLICT(serial) DO UPDATE SET "
                "key_fingerprint = excluded.key_fingerprint, starting_code = excluded.starting_code, "
                "adapter = excluded.adapter",
                (identity.serial, identity.key_fingerprint, identity.starting_code, identity.adapter, now),
            )
            epoch = (
                self.con.execute(
                    "INSERT INTO epochs (serial, started_at, how, run_id, test) VALUES (?, ?, ?, ?, ?)",
                    (identity.serial, now, how, self.run_id, test),
                ).lastrowid
                or 0
            )
            self._entry(identity.serial, epoch, "epoch", test, note=how, state_after=state)
            old = self.con.execute("SELECT clock_offset_s FROM current WHERE serial = ?", (identity.serial,)).fetchone()
            offset = clock_offset_s if clock_offset_s is not None else (old[0] if old else 0)
            self.con.execute(
                "INSERT OR REPLACE INTO current VALUES (?, ?, ?, ?, 1, NULL, ?, NULL, ?)",
                (identity.serial, epoch, state_json(state), offset, state.last_count, now),
            )
        current = self.current(identity.serial)
        assert current is not None
        return current

    def note_generated(self, serial: str, tokens: Iterable[Token], test: str | None) -> None:
        """Tokens the bench generated for the device (entered or not)."""
        tokens = list(tokens)
        if not tokens:
            return
        with self._tx():
            epoch = self._epoch(serial)
            for t in tokens:
                self._entry(
                    serial, epoch, "generated", test, code=t.code, kind=t.kind.name, value=t.value, count=t.count
                )

    def begin_token(
        self,
        serial: str,
        code: str,
        token: Token | None,
        predicted: str,
        before: ModelState,
        after: ModelState,
        test: str | None,
    ) -> int:
        """Write the entry ahead of sending it: pending until end_token. Returns its id."""
        with self._tx():
            epoch = self._epoch(serial)
            entry = self._entry(
                serial,
                epoch,
                "token",
                test,
                code=code,
                kind=token.kind.name if token else None,
                value=token.value if token else None,
                count=token.count if token else None,
                predicted=predicted,
                pending=True,
                state_before=before,
                state_after=after,
            )
            sent = token.count if token is not None else after.last_count
            self.con.execute(
                "UPDATE current SET pending_entry = ?, max_count_sent = MAX(max_count_sent, ?), "
                "updated_at = ? WHERE serial = ?",
                (entry, sent, utc_text(), serial),
            )
        return entry

    def end_token(
        self, serial: str, entry_id: int, reply: dict[str, Any], state: ModelState, trusted: bool, why: str | None
    ) -> None:
        """The DUT's reply to a pending entry, and the model's state after it."""
        with self._tx():
            self.con.execute(
                "UPDATE entries SET reply = ?, pending = 0, state_after = ? WHERE id = ?",
                (json.dumps(reply, separators=(",", ":")), state_json(state), entry_id),
            )
            self._set_current(serial, state, trusted, why)

    def set_state(
        self,
        serial: str,
        state: ModelState,
        *,
        trusted: bool,
        why: str | None,
        action: str,
        note: str,
        test: str | None,
        clock_offset_s: int | None = None,
    ) -> None:
        """The model's state changed outside a token entry (a test chose between the states a power
        cut allows, a failure made it doubtful, the clock was set forward): an entry saying why."""
        with self._tx():
            epoch = self._epoch(serial)
            self._entry(serial, epoch, action, test, note=note, state_after=state)
            self._set_current(serial, state, trusted, why)
            if clock_offset_s is not None:
                self.con.execute("UPDATE current SET clock_offset_s = ? WHERE serial = ?", (clock_offset_s, serial))

    def resolve(self, entry_id: int, how: str) -> None:
        """A pending entry found at bring-up, settled: how it was found out."""
        with self._tx():
            self.con.execute(
                "UPDATE entries SET pending = 0, reply = ? WHERE id = ?",
                (json.dumps({"resolved": how}, separators=(",", ":")), entry_id),
            )
            self.con.execute("UPDATE current SET pending_entry = NULL WHERE pending_entry = ?", (entry_id,))

    # -- plumbing ---------------------------------------------------------------------------
    def _epoch(self, serial: str) -> int:
        row = self.con.execute("SELECT epoch FROM current WHERE serial = ?", (serial,)).fetchone()
        if row is None:
            raise LedgerError(f"{self.path}: no epoch for device {serial}: provision or adopt it first")
        return row[0]

    def _set_current(self, serial: str, state: ModelState, trusted: bool, why: str | None) -> None:
        self.con.execute(
            "UPDATE current SET state = ?, trusted = ?, why = ?, pending_entry = NULL, updated_at = ? WHERE serial = ?",
            (state_json(state), int(trusted), why, utc_text(), serial),
        )

    def _entry(
        self,
        serial: str,
        epoch: int,
        action: str,
        test: str | None,
        *,
        code: str | None = None,
        kind: str | None = None,
        value: int | None = None,
        count: int | None = None,
        predicted: str | None = None,
        pending: bool = False,
        state_before: ModelState | None = None,
        state_after: ModelState | None = None,
        note: str | None = None,
    ) -> int:
        cur = self.con.execute(
            "INSERT INTO entries (serial, epoch, at, run_id, test, action, code, token_kind, value, count, predicted, "
            "pending, state_before, state_after, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                serial,
                epoch,
                utc_text(),
                self.run_id,
                test,
                action,
                code,
                kind,
                value,
                count,
                predicted,
                int(pending),
                state_json(state_before) if state_before else None,
                state_json(state_after) if state_after else None,
                note,
            ),
        )
        return int(cur.lastrowid or 0)  # an INSERT always has one


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on an exception): one writer at a time per file."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con

    def __enter__(self) -> None:
        self.con.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self.con.execute("COMMIT" if exc_type is None else "ROLLBACK")
