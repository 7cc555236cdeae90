"""What the simulated firmware keeps in non-volatile memory, and how it survives torn writes.

The state is stored as two record copies (A/B), each with a sequence number and a CRC-32. A
save always goes to the copy that is not current, so a power cut mid-write can only tear the
copy being written; the boot code picks the valid copy with the highest sequence number.

Defective firmware stores it otherwise (`save_in_place`, `load_single`): one copy overwritten in
place, read back with or without its CRC checked. A cut mid-write then leaves the only copy
torn: new pages up to the cut, the old record after it.
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
    def from_bytes(cls, raw: bytes) -> NvState:
        """ValueError unless raw is a JSON object whose known fields have their types."""
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("NVM record payload is not an object")
        defaults = cls()
        values = {}
        for f in fields(cls):
            if f.name in data:
                value = data[f.name]
                if type(value) is not type(getattr(defaults, f.name)):
                    raise ValueError(f"NVM record field {f.name} has the wrong type")
                values[f.name] = value
        return cls(**values)


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

    def _read_slot(self, slot: str, check_crc: bool = True) -> tuple[str, int, NvState | None]:
        raw = self.eeprom.read(self._offset(slot), self.slot_size)
        if raw == b"\xff" * self.slot_size:
            return "blank", 0, None
        magic, version, seq, length = _HEADER.unpack_from(raw)
        end = _HEADER.size + length
        if magic != MAGIC or version != LAYOUT_VERSION or end + _CRC.size > self.slot_size:
            return "bad", 0, None
        (crc,) = _CRC.unpack_from(raw, end)
        if check_crc and zlib.crc32(raw[:end]) != crc:
            return "bad", 0, None
        try:
            return "ok", seq, NvState.from_bytes(raw[_HEADER.size : end])
        except (ValueError, TypeError):
            return "bad", 0, None

    def load(self) -> LoadResult:
        copies = {slot: self._read_slot(slot) for slot in ("A", "B")}
        valid = [(seq, slot, st) for slot, (kind, seq, st) in copies.items() if kind == "ok" and st is not None]
        kinds = {kind for kind, _, _ in copies.values()}
        if not valid:
            self.current_slot, self.seq, self.crc_ok = "-", 0, False
            status = "blank" if kinds == {"blank"} else "corrupt"
            return LoadResult(NvState(), status, "-", 0)
        seq, slot, state = max(valid, key=lambda v: v[0])
        self.current_slot, self.seq, self.crc_ok = slot, seq, True
        status = "recovered" if "bad" in kinds else "ok"
        return LoadResult(state, status, slot, seq)

    def _record(self, state: NvState, seq: int) -> bytes:
        payload = state.to_bytes()
        body = _HEADER.pack(MAGIC, LAYOUT_VERSION, seq, len(payload)) + payload
        record = body + _CRC.pack(zlib.crc32(body))
        if len(record) > self.slot_size:
            raise ValueError(f"NVM record of {len(record)} bytes exceeds the {self.slot_size}-byte slot")
        return record

    def save(self, state: NvState) -> None:
        """Write the next copy; raises PowerLost (old copy intact) if the supply fails."""
        seq = self.seq + 1
        record = self._record(state, seq)
        target = "B" if self.current_slot == "A" else "A"
        self.eeprom.write(self._offset(target), record)
        self.current_slot, self.seq, self.crc_ok = target, seq, True

    # -- a defective firmware's storage: one copy, written in place ---------------------------

    def save_in_place(self, state: NvState) -> None:
        """Overwrite the single copy (slot A); a PowerLost leaves it torn, with nothing to fall
        back on."""
        seq = self.seq + 1
        self.eeprom.write(self._offset("A"), self._record(state, seq))
        self.current_slot, self.seq, self.crc_ok = "A", seq, True

    def load_single(self, check_crc: bool = True) -> LoadResult:
        """Read the single copy (slot A). Without the CRC check a torn record whose bytes still
        parse is taken for the state; one that does not parse gives factory state."""
        kind, seq, state = self._read_slot("A", check_crc=check_crc)
        if kind != "ok" or state is None:
            self.current_slot, self.seq, self.crc_ok = "-", 0, False
            return LoadResult(NvState(), "blank" if kind == "blank" else "corrupt", "-", 0)
        self.current_slot, self.seq, self.crc_ok = "A", seq, True
        return LoadResult(state, "ok", "A", seq)

    def erase(self) -> None:
        self.eeprom.erase()
        self.current_slot, self.seq, self.crc_ok = "-", 0, False
