"""Atomic writes of record.json: whoever reads it (a person, a LIMS, the next run after a crash)
sees either the previous complete record or the new complete one, never half of one.

The text is serialised completely before the file is touched (a value JSON cannot hold fails
here, leaving the old file intact), written to a temporary file in the same directory, fsynced,
and renamed over the record with os.replace (atomic on POSIX and Windows within one volume).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from bench.record.model import RunRecord
from bench.secret import Secret, mask

RECORD_NAME = "record.json"


def write_json_atomic(path: Path, document: dict, secrets: Iterable[Secret | str | None] = ()) -> None:
    """Serialise `document` (strict JSON: no NaN), mask every secret in the text, and replace
    `path` with it atomically."""
    text = mask(dumps_by_line(document), secrets)
    write_text_atomic(path, text)


def dumps_by_line(document: dict) -> str:
    """JSON with one top-level key a line and one list item (a test, an attachment) a line. Every
    piece goes through json's C encoder, which indent= would switch off for its pure-Python one:
    the record is rewritten after each test, and an indented dump of a long run's record cost
    more CPU than the run's own checks."""
    encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
    lines = []
    for key, value in document.items():
        if isinstance(value, list) and value:
            items = ",\n    ".join(encode(v) for v in value)
            lines.append(f"  {encode(key)}: [\n    {items}\n  ]")
        else:
            lines.append(f"  {encode(key)}: {encode(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n" if lines else "{}\n"


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # keep the record as readable as before (mkstemp makes it owner-only)
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            os.chmod(tmp, mode)
        except OSError:
            pass
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); Windows cannot open a directory: skipped there."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_record(run_dir: Path, record: RunRecord, secrets: Iterable[Secret | str | None] = ()) -> Path:
    path = run_dir / RECORD_NAME
    write_json_atomic(path, record.to_dict(), secrets)
    return path
