"""A finished run into the results database, and the queue of records that could not get there.

`paygo-bench run` calls `publish_run` once its verdict is known: the record goes to the database
in force (bench/history/db.py). When the database cannot be reached or used, the record is
copied to reports/results-queue/<run-id>.json and one line says so; the verdict is never changed.
The queue is sent first by the next run and by `paygo-bench history --upload` or `--db`. Writes
are idempotent (bench/history/index.py), so a record sent twice is one run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.history.db import resolve
from bench.history.reader import RecordSkipped, parse_record
from bench.record.writer import RECORD_NAME

if TYPE_CHECKING:
    from bench.history.index import HistoryIndex

QUEUE_DIR = "results-queue"
UPLOAD_HINT = "sent at the next run, or by paygo-bench history --upload"


@dataclass
class Delivery:
    lines: list[str] = field(default_factory=list)  # what to print, one line each
    sent: list[str] = field(default_factory=list)  # run ids sent from the queue
    queued: list[str] = field(default_factory=list)  # run ids left in (or put in) the queue


def queue_dir(reports: Path) -> Path:
    return reports / QUEUE_DIR


def queued(reports: Path) -> list[Path]:
    q = queue_dir(reports)
    return sorted(q.glob("*.json")) if q.is_dir() else []


def deliver(url: str, reports: Path, record: Path | None = None) -> Delivery:
    """Send the queue, then `record` (a reports/<run-id>/record.json) when given; whatever cannot
    be sent stays in, or goes to, the queue. Never raises for the database's sake."""
    from bench.history.index import HistoryIndex, HistoryIndexError  # SQLAlchemy: only once a run is stored

    out = Delivery()
    pending = queued(reports)
    try:
        db = HistoryIndex(url)
    except HistoryIndexError as e:
        return _queue_all(out, reports, pending, record, str(e))
    with db:
        for i, file in enumerate(pending):
            try:
                _send(db, file.read_bytes(), f"{file.stem}/{RECORD_NAME}")
            except (RecordSkipped, OSError) as e:
                out.lines.append(f"results: {file} dropped from the queue: {e}")
                file.unlink(missing_ok=True)
                continue
            except Exception as e:  # the database went away (or refused the row) midway
                return _queue_all(out, reports, pending[i:], record, db.describe_error(e))
            file.unlink(missing_ok=True)
            out.sent.append(file.stem)
        if out.sent:
            out.lines.append(f"results: {len(out.sent)} queued run(s) sent to {db.shown}: {', '.join(out.sent)}")
        if record is not None:
            rel = f"{record.parent.name}/{RECORD_NAME}"
            try:
                outcome = _send(db, record.read_bytes(), rel)
            except (RecordSkipped, OSError) as e:
                out.lines.append(f"results: {record} not stored: {e}")
                return out
            except Exception as e:
                return _queue_all(out, reports, [], record, db.describe_error(e))
            said = {
                "stored": "stored in",
                "unchanged": "already in",
                "older": "not stored: a newer record of it is already in",
            }[outcome]
            out.lines.append(f"results: run {record.parent.name} {said} {db.shown}")
    return out


def _send(db: HistoryIndex, data: bytes, rel: str) -> str:
    return db.store(parse_record(data, rel, hashlib.sha256(data).hexdigest()))


def _queue_all(out: Delivery, reports: Path, pending: list[Path], record: Path | None, why: str) -> Delivery:
    out.queued += [p.stem for p in pending]
    if pending:
        out.lines.append(f"results: {len(pending)} queued run(s) not sent ({why}); {UPLOAD_HINT}")
    if record is not None:
        target = queue_dir(reports) / f"{record.parent.name}.json"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(record.read_bytes())
            tmp.replace(target)
        except OSError as e:
            out.lines.append(f"results: not stored ({why}), and could not be queued: {e.strerror or e}")
            return out
        out.queued.append(record.parent.name)
        out.lines.append(f"results: record queued in {target} ({why}); {UPLOAD_HINT}")
    return out


def publish_run(record: Path, rig, stale: bool = False) -> str:
    """The end of `paygo-bench run`: the lines saying where its record went (never raises)."""
    if stale or not record.is_file():
        return "results: no record from this run to store"
    reports = record.parent.parent
    try:
        url = resolve(None, rig.station.results_db, reports)
        return "\n".join(deliver(url, reports, record).lines)
    except Exception as e:  # the verdict is the device's, whatever the database does
        return f"results: not stored ({type(e).__name__}); the record stays in {record}"
