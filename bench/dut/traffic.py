"""The serial traffic log: every line in and out, timestamped, secrets masked.

One file per test (the `dut` fixture switches the file), in the spirit of pytest-embedded's
per-test serial logs. Each line carries the UTC wall time (for the record) and the monotonic
offset from the start of the run (for durations). What a device sent is written as one printable
line: control bytes escaped, and cut with its length noted past FILE_LINE_LIMIT characters (the
lines kept for error messages past bench.secret.LINE_LIMIT).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from bench.locations import cannot
from bench.secret import LINE_LIMIT, Secret, mask, shown

FILE_LINE_LIMIT = 16384  # the link's longest line (bench/dut/link.py MAX_LINE): whole in the file


class TrafficLog:
    def __init__(self, secrets: Iterable[Secret] = (), keep: int = 50) -> None:
        self.secrets = list(secrets)
        self.recent: deque[str] = deque(maxlen=keep)  # masked RX lines, shown() short, for error messages
        self.leaks: list[str] = []  # masked RX lines in which a secret was found, shown() short
        self._t0 = time.monotonic()
        self._file: TextIO | None = None
        self._path: Path | None = None
        self._lock = threading.Lock()
        # A log file that cannot be written (a full disk) does not stop the traffic: the log goes
        # on in memory, the first failure is kept in one line and handed to on_write_error.
        self.write_error: str | None = None
        self.on_write_error: Callable[[str], None] | None = None
        # who else sees each line as it is logged (the live page): (direction, masked short text)
        self.watchers: list[Callable[[str, str], None]] = []

    def add_secret(self, secret: Secret) -> None:
        if secret not in self.secrets:
            self.secrets.append(secret)

    def to_file(self, path: Path | None) -> None:
        """Send the log to a new file (None: memory only)."""
        with self._lock:
            if self._file:
                try:
                    self._file.close()
                except OSError as e:
                    self._failed(e)
                self._file = None
            self._path = path
            if path is not None and self.write_error is None:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = path.open("a", encoding="utf-8")
                except OSError as e:
                    self._failed(e)

    def close(self) -> None:
        self.to_file(None)

    def record(self, direction: str, text: str) -> str:
        """Log one line (direction TX, RX, EV for unsolicited, or -- for a note); return it masked."""
        masked = mask(text, self.secrets)
        if direction in ("RX", "EV"):
            short = shown(masked, LINE_LIMIT)
            if masked != text:
                self.leaks.append(short)
            self.recent.append(short)
        for watch in self.watchers:
            watch(direction, shown(masked, LINE_LIMIT))
        stamp = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        entry = f"{stamp} +{time.monotonic() - self._t0:11.6f} {direction} {shown(masked, FILE_LINE_LIMIT)}\n"
        with self._lock:
            if self._file:
                try:
                    self._file.write(entry)
                    self._file.flush()
                except OSError as e:
                    self._failed(e)
        return masked

    def _failed(self, error: OSError) -> None:
        """Stop writing to files (the lock is held); keep and hand on the first failure."""
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass  # the same failure, flushing what it could not write
        if self.write_error is None:
            self.write_error = cannot("write", self._path or "the traffic log", error)
            if self.on_write_error is not None:
                self.on_write_error(self.write_error)

    def note(self, text: str) -> None:
        self.record("--", text)
