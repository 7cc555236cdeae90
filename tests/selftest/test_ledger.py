"""The device ledger's store (bench/station/ledger.py) on a real SQLite file: epochs, write-ahead
token entries that survive the writer being killed, generated tokens, doubt and trust, and no
secret in the file in any encoding."""

from __future__ import annotations

import base64
import multiprocessing
import os
import signal
import sqlite3

import pytest

from bench.openpaygo.model import ModelState
from bench.openpaygo.tokens import TokenGenerator
from bench.secret import Secret
from bench.station.ledger import LEDGER_VERSION, Ledger, LedgerError
from bench.station.ledger_state import DeviceIdentity, key_fingerprint, state_from_json, state_json

KEY = "a29ab82edc5fbbc41ec9530f6dac86b1"
IDENT = DeviceIdentity("SN1", key_fingerprint(Secret(KEY)), 123456789, "reference")
FRESH = ModelState(1, frozenset({1}), 0, False, 0, 0)
AFTER = ModelState(2, frozenset({1, 2}), 86400, False, 0, 0)


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(tmp_path / "ledger.sqlite", "run-1")
    yield led
    led.close()


def test_state_round_trips_through_json():
    s = ModelState(40, frozenset({24, 30, 40}), 1_800_000_000, True, 3, 1_800_000_120)
    assert state_from_json(state_json(s)) == s


def test_a_new_epoch_is_the_current_state(ledger):
    current = ledger.new_epoch(IDENT, "provisioned a blank device", FRESH)
    assert (current.state, current.trusted, current.pending, current.epoch_how) == (
        FRESH,
        True,
        None,
        "provisioned a blank device",
    )
    assert ledger.device("SN1") == IDENT and ledger.serials() == ["SN1"]
    again = ledger.new_epoch(IDENT, "factory reset and provisioned", AFTER)
    assert again.epoch == current.epoch + 1 and again.state == AFTER


def test_an_entry_is_written_before_the_reply_and_completed_after(ledger):
    ledger.new_epoch(IDENT, "provisioned", FRESH)
    entry = ledger.begin_token("SN1", "588224011", None, "accepted", FRESH, AFTER, "test_x")
    pending = ledger.current("SN1").pending
    assert pending is not None and (pending.entry_id, pending.code, pending.before, pending.after) == (
        entry,
        "588224011",
        FRESH,
        AFTER,
    )
    ledger.end_token("SN1", entry, {"result": "accepted"}, AFTER, True, None)
    current = ledger.current("SN1")
    assert current.pending is None and current.state == AFTER and current.trusted
    last = ledger.entries("SN1", last=1)[0]
    assert (last["action"], last["pending"], last["reply"], last["test"]) == (
        "token",
        0,
        '{"result":"accepted"}',
        "test_x",
    )


def _begin_and_die(path: str) -> None:
    led = Ledger(path, "run-killed")
    led.new_epoch(IDENT, "provisioned", FRESH)
    led.begin_token("SN1", "588224011", None, "accepted", FRESH, AFTER, "test_killed")
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no end_token: the process is gone


def test_a_writer_killed_mid_entry_leaves_the_entry_pending(tmp_path):
    path = str(tmp_path / "ledger.sqlite")
    proc = multiprocessing.get_context("fork").Process(target=_begin_and_die, args=(path,))
    proc.start()
    proc.join(10)
    assert proc.exitcode == -signal.SIGKILL
    led = Ledger(path, "run-2")
    pending = led.current("SN1").pending
    assert pending is not None and pending.run_id == "run-killed" and pending.predicted == "accepted"
    led.resolve(pending.entry_id, "the DUT had taken it")
    assert led.current("SN1").pending is None
    assert '"resolved"' in led.entries("SN1")[-1]["reply"]
    led.close()


def test_doubt_and_the_clock_offset_are_kept(ledger):
    ledger.new_epoch(IDENT, "provisioned", FRESH)
    ledger.set_state("SN1", AFTER, trusted=False, why="test_y did not pass", action="doubt", note="x", test="test_y")
    current = ledger.current("SN1")
    assert (current.trusted, current.why_untrusted, current.state) == (False, "test_y did not pass", AFTER)
    ledger.set_state("SN1", AFTER, trusted=True, why=None, action="clock", note="ahead", test="t", clock_offset_s=3600)
    assert ledger.current("SN1").clock_offset_s == 3600
    assert ledger.new_epoch(IDENT, "factory reset and provisioned", FRESH).clock_offset_s == 3600


def test_generated_tokens_are_kept_with_their_counts(ledger):
    ledger.new_epoch(IDENT, "provisioned", FRESH)
    issued = []
    gen = TokenGenerator(KEY, 123456789, 1, on_issue=issued.append)
    gen.add_days(1), gen.set_days(2), gen.disable()
    ledger.note_generated("SN1", issued, "test_g")
    rows = [e for e in ledger.entries("SN1") if e["action"] == "generated"]
    assert [(r["token_kind"], r["count"], r["code"]) for r in rows] == [(t.kind.name, t.count, t.code) for t in issued]


def test_writing_before_an_epoch_is_refused_naming_the_device(ledger):
    with pytest.raises(LedgerError, match="no epoch for device SN9"):
        ledger.begin_token("SN9", "1", None, "invalid", FRESH, FRESH, None)


def test_no_key_in_the_file_in_any_encoding(ledger, tmp_path):
    ledger.new_epoch(IDENT, "provisioned", FRESH)
    ledger.begin_token("SN1", "588224011", None, "accepted", FRESH, AFTER, "t")
    ledger.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    key = bytes.fromhex(KEY)
    for form in (
        KEY.encode(),
        KEY.upper().encode(),
        key,
        base64.b64encode(key),
        base64.urlsafe_b64encode(key),
        base64.b64encode(key).rstrip(b"="),
        str(int.from_bytes(key, "big")).encode(),
        str(int.from_bytes(key, "little")).encode(),
    ):
        assert form not in raw, form


def test_a_file_that_is_no_ledger_is_refused_in_one_line(tmp_path):
    bad = tmp_path / "notes.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError) as e:
        Ledger(bad)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_a_newer_ledger_is_refused(tmp_path):
    path = tmp_path / "ledger.sqlite"
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {LEDGER_VERSION + 1}")
    con.close()
    with pytest.raises(LedgerError, match="newer paygo-bench"):
        Ledger(path)


def test_two_writers_share_one_file(tmp_path):
    a, b = Ledger(tmp_path / "l.sqlite", "run-a"), Ledger(tmp_path / "l.sqlite", "run-b")
    a.new_epoch(IDENT, "provisioned", FRESH)
    entry = b.begin_token("SN1", "588224011", None, "accepted", FRESH, AFTER, "t")
    assert a.current("SN1").pending.entry_id == entry
    a.close(), b.close()


def test_the_ledger_command_shows_state_doubt_and_a_pending_entry(tmp_path, capsys):
    from bench.cli import main

    path = tmp_path / "ledger.sqlite"
    led = Ledger(path, "run-1")
    led.new_epoch(IDENT, "provisioned a blank device", FRESH)
    led.set_state("SN1", AFTER, trusted=False, why="test_y did not pass", action="doubt", note="x", test="test_y")
    led.begin_token("SN1", "588224011", None, "accepted", AFTER, AFTER, "test_z")
    led.close()
    assert main(["ledger", "--ledger", str(path), "--entries", "2"]) == 0
    out = capsys.readouterr().out
    assert "device SN1: epoch 1 (provisioned a blank device" in out
    assert "token count 2, older counts used 1" in out and "DOUBTFUL: test_y did not pass" in out
    assert "PENDING: token 588224011" in out and "predicted accepted" in out
    assert len([line for line in out.splitlines() if line.startswith("    ")]) == 2  # --entries 2
    assert main(["ledger", "--ledger", str(path), "--serial", "SN9"]) == 1
    assert main(["ledger", "--ledger", str(tmp_path / "none.sqlite")]) == 1
    assert "no ledger there" in capsys.readouterr().out
