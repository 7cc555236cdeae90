"""What the simulated firmware keeps in non-volatile memory, and how it survives torn writes.

The state is stored as two record copies (A/B), each with a sequence number and a CRC-32. A
save always goes to the copy that is not current, so a power cut mid-write can only tear the
copy being written; the boot code picks the valid copy with the highest sequence number.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import asdict, dataclass, fields

from bench.sim.eeprom import Eeprom

MAGIC = b"PG"
LAYOUT_VERSION = 1
_HEADER = struct.Struct(">2sBIH")  # magic, layout version, sequence, payload length
_CRC = struct.Struct(">I")


@dataclass
class NvState:
    provisioned: bool = False
    serial: str = ""
    key_hex: str = ""  # the device secret: never logged, never sent
    starting_code: int = 0
    time_divider: int = 1
    restricted: bool = False
    metrics_url: str = ""
    data_format_id: int = 0
    auth: str = "none"
    last_count: int = 0
    used_mask: int = 0
    active_until: int = 0
    payg_disabled: bool = False
    invalid_streak: int = 0
    locked_until: int = 0
    metrics_rc: int = 0

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> "NvState":
        data = json.loads(raw)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class LoadResult:
    state: NvState
    status: str  # ok | recovered | blank | corrupt
    slot: str  # A | B | -
    seq: int


class RecordStore:
    """A/B copies of NvState in an Eeprom."""

    def __init__(self, eeprom: Eeprom) -> None:
        self.eeprom = eeprom
        self.slot_size = eeprom.size // 2
        self.current_slot: str = "-"
        self.seq = 0
        self.crc_ok = False

    def _offset(self, slot: str) -> int:
        return 0 if slot == "A" else self.slot_size

    def _read_slot(self, slot: str) -> tuple[str, int, NvState | None]:
        raw = self.eeprom.read(self._offset(slot), self.slot_size)
        if raw == b"\xff" * self.slot_size:
            return "blank", 0, None
        magic, version, seq, length = _HEADER.unpack_from(raw)
        end = _HEADER.size + length
        if magic != MAGIC or version != LAYOUT_VERSION or end + _CRC.size > self.slot_size:
            return "bad", 0, None
        (crc,) = _CRC.unpack_from(raw, end)
        if zlib.crc32(raw[:end]) != crc:
            return "bad", 0, None
        try:
            return "ok", seq, NvState.from_bytes(raw[_HEADER.size : end])
        except (ValueError, TypeError):
            return "bad", 0, None

    def load(self) -> LoadResult:
        copies = {slot: self._read_slot(slot) for slot in ("A", "B")}
        valid = [(seq, slot, st) for slot, (kind, seq, st) in copies.items() if kind == "ok"]
        kinds = {kind for kind, _, _ in copies.values()}
        if not valid:
            self.current_slot, self.seq, self.crc_ok = "-", 0, False
            status = "blank" if kinds == {"blank"} else "corrupt"
            return LoadResult(NvState(), status, "-", 0)
        seq, slot, state = max(valid, key=lambda v: v[0])
        self.current_slot, self.seq, self.crc_ok = slot, seq, True
        status = "recovered" if "bad" in kinds else "ok"
        return LoadResult(state, status, slot, seq)

    def save(self, state: NvState) -> None:
        """Write the next copy; raises PowerLost (old copy intact) if the supply fails."""
        payload = state.to_bytes()
        seq = self.seq + 1
        body = _HEADER.pack(MAGIC, LAYOUT_VERSION, seq, len(payload)) + payload
        record = body + _CRC.pack(zlib.crc32(body))
        if len(record) > self.slot_size:
            raise ValueError(f"NVM record of {len(record)} bytes exceeds the {self.slot_size}-byte slot")
        target = "B" if self.current_slot == "A" else "A"
        self.eeprom.write(self._offset(target), record)
        self.current_slot, self.seq, self.crc_ok = target, seq, True

    def erase(self) -> None:
        self.eeprom.erase()
        self.current_slot, self.seq, self.crc_ok = "-", 0, False
