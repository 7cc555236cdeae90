"""The simulated EEPROM (page writes, torn pages) and the A/B record store built on it.

The power-loss harness mirrors littlefs's emulated block device: every save is repeated with the
power cut after k pages, for every k, and the store read back from the image file must hold the
old or the new state, never anything else.
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from bench.sim.eeprom import Eeprom, PowerLost
from bench.sim.nvstate import NvState, RecordStore

PAGE = 32
SIZE = 4096


def make(path: Path, **kw) -> Eeprom:
    kw.setdefault("page_write_s", 0)
    return Eeprom(path, size=kw.pop("size", SIZE), page_size=kw.pop("page_size", PAGE), **kw)


def pages_spanned(addr: int, length: int, page: int = PAGE) -> int:
    return (addr + length - 1) // page - addr // page + 1


# -- the EEPROM part ------------------------------------------------------------------------------


def test_new_image_is_erased(tmp_path):
    """A fresh image file is the erased state: every byte 0xFF, the declared size."""
    e = make(tmp_path / "e.bin")
    assert (tmp_path / "e.bin").stat().st_size == SIZE
    assert e.read(0, SIZE) == b"\xff" * SIZE


def test_existing_image_is_kept_and_wrong_size_is_reerased(tmp_path):
    """An image of the right size survives a re-open (NVM); one of another size is re-erased."""
    p = tmp_path / "e.bin"
    make(p).write(10, b"hello")
    assert make(p).read(10, 5) == b"hello"
    p.write_bytes(b"\x00" * 100)
    assert make(p).read(0, SIZE) == b"\xff" * SIZE


def test_erase_returns_to_ff(tmp_path):
    """erase() sets every byte back to 0xFF."""
    e = make(tmp_path / "e.bin")
    e.write(0, bytes(range(256)) * 4)
    e.erase()
    assert e.read(0, SIZE) == b"\xff" * SIZE


@pytest.mark.parametrize(
    "addr,length",
    [(0, 1), (0, PAGE), (5, PAGE), (PAGE - 1, 2), (30, 100), (PAGE * 3, PAGE * 4), (SIZE - 40, 40)],
)
def test_write_spans_pages_one_page_at_a_time(tmp_path, addr, length):
    """Data crossing page boundaries lands intact and costs exactly one program per page touched."""
    e = make(tmp_path / "e.bin")
    data = bytes((i * 7 + 3) % 256 for i in range(length))
    e.write(addr, data)
    assert e.read(addr, length) == data
    assert e.pages_written == pages_spanned(addr, length)
    image = e.read(0, SIZE)
    assert image[:addr] == b"\xff" * addr  # nothing outside the range was touched
    assert image[addr + length :] == b"\xff" * (SIZE - addr - length)


@pytest.mark.parametrize("addr,length", [(-1, 1), (SIZE - 1, 2), (SIZE, 1), (0, SIZE + 1)])
def test_out_of_range_access_is_refused(tmp_path, addr, length):
    """Reads and writes outside the part raise ValueError and change nothing."""
    e = make(tmp_path / "e.bin")
    with pytest.raises(ValueError, match="outside"):
        e.read(addr, length)
    with pytest.raises(ValueError, match="outside"):
        e.write(addr, b"\x00" * length)
    assert e.read(0, SIZE) == b"\xff" * SIZE


def test_power_off_before_write_raises_and_programs_nothing(tmp_path):
    """With the supply already below brown-out, a write raises PowerLost and leaves the image."""
    e = make(tmp_path / "e.bin", power_ok=lambda: False)
    with pytest.raises(PowerLost):
        e.write(0, b"\x00" * 100)
    assert e.read(0, SIZE) == b"\xff" * SIZE
    assert e.pages_written == 0


def test_power_lost_while_programming_tears_that_page(tmp_path):
    """Supply collapsing during page 2's program: pages 0-1 new, page 2 = new prefix + old rest,
    page 3 untouched old."""
    p = tmp_path / "e.bin"
    old = bytes([0xAA]) * (PAGE * 4)
    make(p).write(0, old)
    checks = {"n": 0}

    def power_ok() -> bool:  # two checks per page (before, after); fail after page 2 programs
        checks["n"] += 1
        return checks["n"] < 6

    e = make(p, power_ok=power_ok)
    new = bytes(range(PAGE * 4))
    with pytest.raises(PowerLost, match="while programming"):
        e.write(0, new)
    got = make(p).read(0, PAGE * 4)
    assert got[: 2 * PAGE] == new[: 2 * PAGE]
    torn = got[2 * PAGE : 3 * PAGE]
    assert torn != new[2 * PAGE : 3 * PAGE] and torn != old[2 * PAGE : 3 * PAGE]
    half = PAGE // 2
    assert torn[:half] == new[2 * PAGE : 2 * PAGE + half]  # prefix new
    assert torn[half:] == old[2 * PAGE + half : 3 * PAGE]  # rest old
    assert got[3 * PAGE :] == old[3 * PAGE :]


def test_power_lost_between_pages_stops_before_next_page(tmp_path):
    """A supply that fails after page 0 completed (checked before page 1) leaves page 1 untouched."""
    p = tmp_path / "e.bin"
    checks = {"n": 0}

    def power_ok() -> bool:  # before p0, after p0 ok; before p1 fails
        checks["n"] += 1
        return checks["n"] <= 2

    e = make(p, power_ok=power_ok)
    with pytest.raises(PowerLost, match="before page"):
        e.write(0, b"\x11" * (PAGE * 2))
    assert e.read(0, PAGE) == b"\x11" * PAGE
    assert e.read(PAGE, PAGE) == b"\xff" * PAGE


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_cut_after_pages_tears_page_k(tmp_path, k):
    """cut_after_pages=k programs k whole pages, tears page k (new prefix, old rest), stops."""
    p = tmp_path / "e.bin"
    e = make(p)
    e.write(0, b"\x55" * (PAGE * 4))
    e.cut_after_pages = k
    new = bytes(range(100, 100 + PAGE * 4))
    with pytest.raises(PowerLost, match="power cut"):
        e.write(0, new)
    got = make(p).read(0, PAGE * 4)
    assert got[: k * PAGE] == new[: k * PAGE]
    half = PAGE // 2
    assert got[k * PAGE : k * PAGE + half] == new[k * PAGE : k * PAGE + half]
    assert got[k * PAGE + half :] == b"\x55" * (PAGE * 4 - k * PAGE - half)


def test_cut_after_all_pages_does_not_fire(tmp_path):
    """cut_after_pages equal to the pages a write takes lets the write complete."""
    e = make(tmp_path / "e.bin")
    e.cut_after_pages = 3
    e.write(0, b"\x01" * (PAGE * 3))
    assert e.read(0, PAGE * 3) == b"\x01" * (PAGE * 3)


def test_page_write_latency_is_real(tmp_path):
    """page_write_s is a real per-page busy time (the part programs until its deadline)."""
    import time

    e = make(tmp_path / "e.bin", page_write_s=0.01)
    t0 = time.monotonic()
    e.write(0, b"\x00" * (PAGE * 5))
    assert time.monotonic() - t0 >= 0.045


def test_writes_are_serialised_between_threads(tmp_path):
    """Two threads writing whole records never interleave pages (the part's lock)."""
    e = make(tmp_path / "e.bin", page_write_s=0.001)
    a, b = b"\xa0" * (PAGE * 4), b"\xb0" * (PAGE * 4)
    ts = [threading.Thread(target=e.write, args=(0, d)) for d in (a, b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert e.read(0, PAGE * 4) in (a, b)


# -- the A/B record store -------------------------------------------------------------------------


def state(i: int) -> NvState:
    """A distinct, realistic state per i (varying lengths so records differ in size)."""
    return NvState(
        provisioned=True,
        serial=f"SIM{i:06d}" + "X" * (i % 5),
        key_hex="a29ab82edc5fbbc41ec9530f6dac86b1",
        starting_code=123456789,
        last_count=1 + 2 * i,
        used_mask=(0x5A5A >> (i % 7)) & 0xFFFF,
        active_until=1_700_000_000 + 86400 * i,
        invalid_streak=i % 4,
        locked_until=0 if i % 3 else 1_700_000_000 + 120 * i,
        metrics_rc=i,
    )


def test_blank_image_loads_blank(tmp_path):
    """An erased part loads as status blank, factory state, no slot."""
    r = RecordStore(make(tmp_path / "e.bin")).load()
    assert (r.status, r.slot, r.seq) == ("blank", "-", 0)
    assert r.state == NvState()


def test_saves_alternate_slots_and_advance_seq(tmp_path):
    """Each save goes to the other copy with seq+1; a fresh store loads the newest."""
    p = tmp_path / "e.bin"
    store = RecordStore(make(p))
    store.load()
    seen = []
    for i in range(5):
        store.save(state(i))
        seen.append((store.current_slot, store.seq))
        r = RecordStore(make(p)).load()
        assert (r.status, r.slot, r.seq, r.state) == ("ok", store.current_slot, store.seq, state(i))
    assert seen == [("A", 1), ("B", 2), ("A", 3), ("B", 4), ("A", 5)]


def test_save_after_reload_continues_the_sequence(tmp_path):
    """A store rebuilt from the image (reboot) continues seq and writes the non-current copy."""
    p = tmp_path / "e.bin"
    s1 = RecordStore(make(p))
    s1.load()
    s1.save(state(0))
    s1.save(state(1))  # B, seq 2
    s2 = RecordStore(make(p))
    s2.load()
    s2.save(state(2))
    r = RecordStore(make(p)).load()
    assert (r.slot, r.seq, r.state) == ("A", 3, state(2))


def saved_twice(tmp_path: Path) -> tuple[Path, RecordStore]:
    """The part's file and its store after two saves: state(1) in A (seq 1), state(2) in B (seq 2)."""
    p = tmp_path / "e.bin"
    store = RecordStore(make(p))
    store.load()
    store.save(state(1))  # A seq 1
    store.save(state(2))  # B seq 2
    return p, store


def _corrupt(p: Path, offset: int) -> None:
    raw = bytearray(p.read_bytes())
    raw[offset] ^= 0x01
    p.write_bytes(bytes(raw))


@pytest.mark.parametrize("where", [0, 5, 20, "crc"])
def test_corrupt_current_copy_falls_back_to_other(tmp_path, where):
    """One flipped bit anywhere in the newest copy (magic, seq, payload, CRC): load returns the
    older copy with status recovered."""
    p, _ = saved_twice(tmp_path)
    b = SIZE // 2
    if where == "crc":
        length = len(state(2).to_bytes())
        offset = b + 9 + length + 2  # header is 9 bytes, then the payload, then the CRC
    else:
        offset = b + where
    _corrupt(p, offset)
    r = RecordStore(make(p)).load()
    assert (r.status, r.slot, r.seq, r.state) == ("recovered", "A", 1, state(1))


def test_corrupt_older_copy_still_loads_newest_as_recovered(tmp_path):
    """A bad older copy does not hide the good newest one; status says something was repaired."""
    p, _ = saved_twice(tmp_path)
    _corrupt(p, 30)  # inside A
    r = RecordStore(make(p)).load()
    assert (r.status, r.slot, r.state) == ("recovered", "B", state(2))


def test_both_copies_corrupt_is_corrupt_factory_state(tmp_path):
    """No valid copy: status corrupt, factory state, no slot."""
    p, _ = saved_twice(tmp_path)
    _corrupt(p, 30)
    _corrupt(p, SIZE // 2 + 30)
    r = RecordStore(make(p)).load()
    assert (r.status, r.slot, r.seq, r.state) == ("corrupt", "-", 0, NvState())


def test_erase_makes_store_blank(tmp_path):
    """erase() clears both copies: the next load is blank and the next save starts at A seq 1."""
    p, store = saved_twice(tmp_path)
    store.erase()
    assert RecordStore(make(p)).load().status == "blank"
    store.save(state(3))
    assert (store.current_slot, store.seq) == ("A", 1)


def test_oversized_record_is_refused_without_writing(tmp_path):
    """A record that cannot fit a slot raises ValueError before touching the part."""
    e = make(tmp_path / "e.bin", size=256)
    store = RecordStore(e)
    store.load()
    with pytest.raises(ValueError, match="exceeds"):
        store.save(replace(state(1), metrics_url="http://x/" + "a" * 300))
    assert e.pages_written == 0


def test_unknown_fields_in_record_are_ignored(tmp_path):
    """A record written by a newer layout with extra JSON keys still loads (forward compatible)."""
    raw = b'{"provisioned":true,"serial":"S1","future_field":42}'
    st = NvState.from_bytes(raw)
    assert st.provisioned and st.serial == "S1"


def _pages_per_save(p: Path, st: NvState) -> int:
    """How many page programs the next save of `st` takes (measured on a scratch copy)."""
    scratch = p.with_suffix(".probe")
    shutil.copyfile(p, scratch)
    e = make(scratch)
    s = RecordStore(e)
    s.load()
    s.save(st)
    scratch.unlink()
    return e.pages_written


def test_power_cut_after_every_page_of_every_save(tmp_path):
    """littlefs-style: for each of a sequence of saves and every cut point k, the image read back
    holds the old or the new state (never garbage); a torn copy is reported as recovered, and
    once any state was saved a cut never yields blank/corrupt."""
    p = tmp_path / "e.bin"
    snapshot = tmp_path / "before.bin"
    make(p)
    old: NvState | None = None  # nothing saved yet
    cases = 0
    for i in range(6):
        new = state(i)
        shutil.copyfile(p, snapshot)
        n_pages = _pages_per_save(p, new)
        assert n_pages >= 2, "the harness needs multi-page records to mean anything"
        for k in range(n_pages + 1):
            shutil.copyfile(snapshot, p)
            eeprom = make(p)
            store = RecordStore(eeprom)
            store.load()
            eeprom.cut_after_pages = k
            if k < n_pages:
                with pytest.raises(PowerLost):
                    store.save(new)
            else:
                store.save(new)
            eeprom.cut_after_pages = None
            r = RecordStore(make(p)).load()
            cases += 1
            where = f"save #{i}, cut after {k}/{n_pages} pages"
            if k == n_pages:
                assert (r.status, r.state) == ("ok", new), where
                continue
            if old is None:  # first save torn: no old copy existed, factory state
                assert r.state == NvState(), where
                assert r.status == "corrupt", where
            else:
                assert r.state in (old, new), f"{where}: garbage state {r.state}"
                assert r.status in ("ok", "recovered"), f"{where}: status {r.status}"
                if r.state == old:
                    assert r.status == "recovered", f"{where}: torn copy not reported"
        # commit the save for real and move on
        shutil.copyfile(snapshot, p)
        store = RecordStore(make(p))
        store.load()
        store.save(new)
        old = new
    assert cases > 12


def test_power_loss_via_supply_mid_save_keeps_old_state(tmp_path):
    """The same guarantee when power_ok (the board's supply sense) fails part way through."""
    p = tmp_path / "e.bin"
    store = RecordStore(make(p))
    store.load()
    store.save(state(1))
    store.save(state(2))
    for fail_at in range(1, 12):
        snap = p.read_bytes()
        calls = {"n": 0}

        def power_ok(fail_at=fail_at) -> bool:
            calls["n"] += 1
            return calls["n"] < fail_at

        e = make(p, power_ok=power_ok)
        s = RecordStore(e)
        s.load()
        try:
            s.save(state(3))
            completed = True
        except PowerLost:
            completed = False
        r = RecordStore(make(p)).load()
        if completed:
            assert r.state == state(3)
        else:
            assert r.state in (state(2), state(3)), f"power lost at check {fail_at}"
            assert r.status in ("ok", "recovered")
        p.write_bytes(snap)
