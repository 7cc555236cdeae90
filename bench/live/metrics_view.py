"""Per device, what a Metrics server captured and the tokens it served, read from its SQLite file.

Read on a connection of its own, read-only, so the page never holds the server's lock or
changes its file; the store's tables are those of bench/server/store.py."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

RECENT_TOKENS = 5


def device_summaries(db: Path) -> list[dict]:
    """[{serial, requests, accepted, refused, last_at, token_count, last_tokens}] for one store;
    [] while the file cannot be read (being created, already removed)."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return []
    try:
        rows = conn.execute(
            "SELECT serial_number, COUNT(*), SUM(verdict = 'accepted'), MAX(received_at) FROM requests"
            " WHERE serial_number IS NOT NULL GROUP BY serial_number ORDER BY serial_number"
        ).fetchall()
        tokens = {
            serial: (count, last)
            for serial, count, last in conn.execute("SELECT serial_number, token_count, last_tokens FROM devices")
        }
    except sqlite3.Error:
        return []
    finally:
        conn.close()
    out = []
    for serial, n, accepted, last_at in rows:
        count, last = tokens.get(serial, (None, "[]"))
        try:
            served = [t.get("code") for t in json.loads(last)][-RECENT_TOKENS:]
        except (ValueError, AttributeError, TypeError):
            served = []
        out.append(
            {
                "serial": serial,
                "requests": n,
                "accepted": int(accepted or 0),
                "refused": n - int(accepted or 0),
                "last_at": last_at,
                "token_count": count,
                "last_tokens": served,
            }
        )
    return out
