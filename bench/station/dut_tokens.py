"""The DUT's token state across a run: every test gets a known one, from a factory reset where
the DUT has one, else from the device ledger.

Two ways to a known starting state (docs/ledger.md):
- fresh: the DUT offers `factory_reset`: each test resets and provisions it, and the ledger opens
  a new epoch at the profile's starting state;
- ledger: it does not: the DUT was provisioned once (at bring-up, or long before) and each test
  continues from the state the ledger holds. After a test that failed (or a run that stopped in
  the middle of an entry) that state is doubtful: the next test first re-bases the DUT with a
  counter-sync and a SET token (`rebase.rebaseline`), whose outcome fixes every part of the
  token state, and checks the status against it.

A lockout left by an earlier test is run out before a test gets the DUT (the clock set past it
with `rtc_set`, else a wait within the run's lockout budget).
"""

from __future__ import annotations

from collections.abc import Callable

from bench.dut.adapter import DeviceAdapter
from bench.openpaygo.model import ModelState
from bench.openpaygo.tokens import TokenGenerator
from bench.rig import DutProfile
from bench.station.ledger import Ledger
from bench.station.ledger_recorder import LedgerRecorder, NoKnownState
from bench.station.ledger_state import DeviceIdentity, LedgerState, key_fingerprint
from bench.station.profile import fresh_state, generator_for, model_for, provisioning_for
from bench.station.rebase import rebaseline
from bench.station.token_session import ModelClock, TokenSession


class DutTokens:
    def __init__(
        self,
        profile: DutProfile,
        ledger: Ledger,
        adapter: DeviceAdapter,
        restart: Callable[[], object],
        boot_timeout_s: float,
        clock: ModelClock | None = None,
    ) -> None:
        self.profile = profile
        self.ledger = ledger
        self.dut = adapter
        self.restart = restart  # power-cycle the DUT (a provisioning the DUT applies at restart)
        self.boot_timeout_s = boot_timeout_s
        self.clock = clock or ModelClock()
        self.findings: list[str] = []  # what bring-up and re-basing found, for the record

    @property
    def serial(self) -> str:
        return self.profile.serial_number

    @property
    def fresh(self) -> bool:
        """Each test starts from a factory reset (the DUT offers one)."""
        return self.dut.offers("factory_reset")

    def identity(self, profile: DutProfile | None = None) -> DeviceIdentity:
        p = profile or self.profile
        return DeviceIdentity(p.serial_number, key_fingerprint(p.secret_key), p.starting_code, self.dut.name)

    def current(self) -> LedgerState:
        state = self.ledger.current(self.serial)
        if state is None:
            raise NoKnownState(
                f"the ledger {self.ledger.path} has no record of device {self.serial}: "
                "it was neither provisioned nor adopted at bring-up"
            )
        return state

    def note(self, text: str) -> None:
        self.findings.append(text)
        self.dut.link.log.note(f"ledger: {text}")

    # -- provisioning ----------------------------------------------------------------------------
    def provision(self, how: str, test: str | None, profile: DutProfile | None = None) -> LedgerState:
        """Provision the DUT (blank, or just reset) with the profile; a new ledger epoch."""
        p = profile or self.profile
        self.dut.provision(provisioning_for(p))  # what the DUT confirms is judged by test_identity
        if self.dut.restart_after_provision:
            self.restart()
        return self.ledger.new_epoch(self.identity(p), how, fresh_state(p), test, clock_offset_s=self.clock.offset_s)

    def factory_fresh(self, test: str | None, profile: DutProfile | None = None) -> LedgerState:
        """Reset and provision the DUT (capability `factory_reset`)."""
        self.dut.factory_reset(self.boot_timeout_s)
        return self.provision("factory reset and provisioned", test, profile)

    # -- sessions --------------------------------------------------------------------------------
    def session(self, test: str | None, profile: DutProfile | None = None) -> TokenSession:
        """A session on the ledger's current state (re-based first if it is doubtful), with any
        lockout an earlier test left run out. Raises NoKnownState when that cannot be done."""
        p = profile or self.profile
        state = self.current()
        if not state.trusted or state.pending is not None:
            why = state.why_untrusted or "an entry was sent and its reply never recorded"
            rebaseline(self, test, why)
            state = self.current()
        recorder = LedgerRecorder(self.ledger, self.serial, test)
        session = self.new_session(model_for(p, state.state), recorder)
        if not session.end_lock():
            raise NoKnownState(
                f"token entry is locked for {session.lock_left()} s more (an earlier test's lockout), "
                "the DUT's clock cannot be set forward, and that is longer than the rig's "
                f"dut.lockout_wait_budget_s ({self.profile.lockout_wait_budget_s:g} s)"
            )
        return session

    def new_session(self, model, recorder) -> TokenSession:
        return TokenSession(self.dut, model, self.clock, recorder, self.profile.lockout_wait_budget_s)

    def generator(
        self, session: TokenSession, profile: DutProfile | None = None, extended: bool | None = None
    ) -> TokenGenerator:
        """A token server at the session's count, every token it issues kept in the ledger
        (extended tokens: `generator_for`)."""
        recorder = session.recorder
        on_issue = recorder.generated.append if isinstance(recorder, LedgerRecorder) else None
        return generator_for(profile or self.profile, session.model.last_count, on_issue=on_issue, extended=extended)

    def end(self, session: TokenSession, passed: bool, test: str | None, why: str | None = None) -> None:
        """The test is over: its generated tokens written; a failed test leaves the state doubtful."""
        if isinstance(session.recorder, LedgerRecorder):
            session.recorder.flush()
        if not passed:
            self.distrust(
                session.model.snapshot(), why or f"{test} did not pass: the DUT's state may not be the model's", test
            )

    def distrust(self, state: ModelState, why: str, test: str | None) -> None:
        self.ledger.set_state(self.serial, state, trusted=False, why=why, action="doubt", note=why, test=test)

    def trust(self, state: ModelState, why: str, test: str | None) -> None:
        """The doubt `distrust` raised is settled (what it was about is over and the model followed)."""
        self.ledger.set_state(self.serial, state, trusted=True, why=None, action="settled", note=why, test=test)
