"""What a token session writes to the device ledger: each entry before the token goes out and its
reply after, the tokens its generator handed out, the state the test settled on."""

from __future__ import annotations

import dataclasses

from bench.dut.adapter import TokenOutcome
from bench.openpaygo.model import ModelState, Prediction
from bench.openpaygo.tokens import Token
from bench.station.ledger import Ledger


class NoKnownState(Exception):
    """The DUT's token state could not be made known for a test (one line: why, what to do)."""


class LedgerRecorder:
    """A session's entries into the ledger, for one test; the tokens its generator hands out
    are kept and written with the next entry (or when the test ends)."""

    def __init__(self, ledger: Ledger, serial: str, test: str | None) -> None:
        self.ledger, self.serial, self.test = ledger, serial, test
        self.generated: list[Token] = []
        self.open_entry: int | None = None  # begun, its reply not recorded (a power cut took it)

    def flush(self) -> None:
        tokens, self.generated = self.generated, []
        self.ledger.note_generated(self.serial, tokens, self.test)

    def begin(
        self, code: str, token: Token | None, predicted: Prediction, before: ModelState, after: ModelState
    ) -> int:
        self.flush()
        self.open_entry = self.ledger.begin_token(self.serial, code, token, predicted.outcome, before, after, self.test)
        return self.open_entry

    def end(self, entry: int, outcome: TokenOutcome, state: ModelState, matched: bool, why: str | None) -> None:
        reply = {k: v for k, v in dataclasses.asdict(outcome).items() if v is not None}
        self.ledger.end_token(self.serial, entry, reply, state, matched, why)
        self.open_entry = None

    def adopt(self, state: ModelState, note: str) -> None:
        if self.open_entry is not None:  # the entry no reply came for: the test settled what it did
            self.ledger.resolve(self.open_entry, f"no reply; {note}")
            self.open_entry = None
        self.ledger.set_state(self.serial, state, trusted=True, why=None, action="adopted", note=note, test=self.test)

    def clock(self, offset_s: int, state: ModelState) -> None:
        self.ledger.set_state(
            self.serial,
            state,
            trusted=True,
            why=None,
            action="clock",
            note=f"the DUT's clock set ahead: {offset_s} s ahead of host UTC in all",
            test=self.test,
            clock_offset_s=offset_s,
        )
