"""`paygo-bench ledger`: what the device ledger knows about a device (docs/ledger.md): its epoch,
the model's token state, whether it is trusted, a pending entry, and the last entries.

`add_parser(subparsers)` adds the subcommand to bench/cli.py's parser."""

from __future__ import annotations

import argparse
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from bench.openpaygo.model import ModelState
from bench.station.ledger import LEDGER_NAME, Ledger, LedgerError
from bench.station.ledger_state import LedgerState

EXAMPLES = """examples:
  paygo-bench ledger --rig lab.toml                  # the rig's DUT in the rig's ledger
  paygo-bench ledger --ledger reports/ledger.sqlite  # every device in a ledger file
  paygo-bench ledger --rig lab.toml --entries 50     # and its last 50 entries
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "ledger",
        help="show what the device ledger holds about a device",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rig", help="rig file: its DUT's serial and its ledger (dut.ledger, else reports/ledger.sqlite)")
    p.add_argument("--ledger", metavar="FILE", help="the ledger file (overrides the rig's)")
    p.add_argument("--serial", help="only this device (default: the rig's DUT, or every device in the file)")
    p.add_argument("--entries", type=int, default=10, metavar="N", help="show the last N entries (default 10)")
    p.set_defaults(func=lambda args, extra=None: run(args))
    return p


def _when(model_seconds: int, offset_s: int) -> str:
    utc = datetime.fromtimestamp(model_seconds - offset_s, UTC)
    return utc.strftime("%Y-%m-%d %H:%M:%S UTC")


def _ranges(counts: list[int]) -> str:
    """[36, 37, 38, 40] -> "36-38, 40"."""
    out: list[str] = []
    for c in counts:
        if out and int(out[-1].split("-")[-1]) == c - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{c}"
        else:
            out.append(str(c))
    return ", ".join(out) or "none"


def describe_state(s: ModelState, offset_s: int) -> str:
    now = int(datetime.now(UTC).timestamp()) + offset_s  # the model clock (docs/ledger.md)
    used = sorted(c for c in s.used if c != s.last_count)
    credit = (
        "PAYG disabled"
        if s.payg_disabled
        else f"credit until {_when(s.active_until, offset_s)}"
        if s.active_until > now
        else "no credit left"
    )
    lock = f", token entry locked until {_when(s.locked_until, offset_s)}" if s.locked_until > now else ""
    return (
        f"token count {s.last_count}, older counts used {_ranges(used)}, {credit}, "
        f"invalid streak {s.invalid_streak}{lock}"
    )


def describe(c: LedgerState) -> list[str]:
    lines = [
        f"device {c.serial}: epoch {c.epoch} ({c.epoch_how}, since {c.epoch_started})",
        f"  state: {describe_state(c.state, c.clock_offset_s)}",
        "  trusted" if c.trusted else f"  DOUBTFUL: {c.why_untrusted} (the next run re-bases it)",
    ]
    if c.clock_offset_s:
        lines.append(f"  the bench has set its clock {c.clock_offset_s} s ahead of UTC")
    if c.pending is not None:
        p = c.pending
        lines.append(
            f"  PENDING: token {p.code} sent at {p.at} (run {p.run_id}), no reply recorded; "
            f"predicted {p.predicted}: the next bring-up resolves it"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    serial = args.serial
    path = Path(args.ledger) if args.ledger else None
    if args.rig:
        from bench.rig import RigError, load_rig

        try:
            rig = load_rig(args.rig)
        except RigError as e:
            print(f"paygo-bench ledger: {e}")
            return 3
        serial = serial or rig.dut.serial_number
        path = path or (Path(rig.dut.ledger) if rig.dut.ledger else Path("reports") / LEDGER_NAME)
    if path is None:
        print("paygo-bench ledger: give --rig FILE or --ledger FILE")
        return 4
    if not path.is_file():
        print(f"paygo-bench ledger: {path}: no ledger there (a run makes it at its first bring-up)")
        return 1
    try:
        ledger = Ledger(path)
    except LedgerError as e:
        print(f"paygo-bench ledger: {e}")
        return 3
    with closing(ledger):
        serials = [serial] if serial else ledger.serials()
        print(f"ledger {path}")
        found = 0
        for sn in serials:
            current = ledger.current(sn)
            if current is None:
                print(f"device {sn}: no record")
                continue
            found += 1
            print("\n".join(describe(current)))
            for entry in ledger.entries(sn, last=args.entries):
                what = " ".join(
                    str(x)
                    for x in (
                        entry["code"],
                        entry["token_kind"],
                        f"count {entry['count']}" if entry["count"] else None,
                        f"predicted {entry['predicted']}" if entry["predicted"] else None,
                        f"reply {entry['reply']}" if entry["reply"] else None,
                        entry["note"],
                    )
                    if x
                )
                print(
                    f"    {entry['at']} {entry['action']:<9} {what} ({entry['test'] or 'bench'}, run {entry['run_id']})"
                )
        return 0 if found else 1
