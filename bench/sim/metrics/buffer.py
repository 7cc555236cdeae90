"""The device's historical rows in RAM, oldest first, with the rows of the request in flight
protected from overflow (docs/simulator.md "Metrics sessions")."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any


@dataclass(frozen=True)
class Row:
    id: int  # increasing: the order rows were sampled in
    t: int  # RTC seconds
    values: Mapping[str, Any]  # variable -> value, `timestamp` included


class RowBuffer:
    """Rows oldest first. The first `in_flight` rows belong to the request awaiting a reply."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.rows: deque[Row] = deque()
        self.next_id = 1
        self.dropped = 0
        self.protected_id = 0  # rows with id <= this are in flight

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, t: int, values: Mapping[str, Any]) -> Row | None:
        """Append a row; when full, drop the oldest row not in flight (or this one if every
        buffered row is in flight). None if the new row itself was dropped."""
        if len(self.rows) >= self.capacity:
            self.dropped += 1
            victim = next((i for i, r in enumerate(self.rows) if r.id > self.protected_id), None)
            if victim is None:
                return None
            del self.rows[victim]
        row = Row(self.next_id, t, dict(values))
        self.next_id += 1
        self.rows.append(row)
        return row

    def oldest(self, n: int) -> list[Row]:
        return list(islice(self.rows, n))

    def ack(self, last_id: int) -> int:
        """A reply came: forget the rows up to last_id. Returns how many were cleared."""
        cleared = 0
        while self.rows and self.rows[0].id <= last_id:
            self.rows.popleft()
            cleared += 1
        return cleared

    @property
    def last_time(self) -> int | None:
        return self.rows[-1].t if self.rows else None
