"""The virtual rig process: a simulated PSU on a loopback SCPI socket powering a simulated device
on a pty (or a loopback TCP port where there is no pty).

Run as `python -m bench.sim` (the bench starts it this way) or `paygo-bench sim`. It prints one
JSON line with the serial port and the VISA resource string, then serves until it is told to
stop (SIGINT, SIGTERM, or end of standard input when --watch-stdin is given).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from bench.sim.board import Board
from bench.sim.eeprom import EEPROM_SIZE, Eeprom
from bench.sim.faults import Fault, validate
from bench.sim.firmware import Firmware
from bench.sim.firmware_config import FirmwareConfig
from bench.sim.hdk_firmware import HdkFirmware
from bench.sim.nvstate import RecordStore
from bench.sim.psu.server import ScpiServer
from bench.sim.psu.supply import SimulatedSupply
from bench.sim.state_dir import StateDir
from bench.sim.transport import open_transport


@dataclass
class SimOptions:
    faults: list[str] = field(default_factory=list)
    rtc_drift_ppm: float = 0.0
    rtc_subsecond: bool = False
    psu_decay_s: float = 0.3
    link: str = "auto"
    brownout_v: float = 3.0
    nvm_page_write_ms: float = 1.0
    channel: int = 1
    boot_delay_s: float = 0.005  # supply up to boot banner; short, so that power-cut runs stay fast
    # where the device keeps its NVM image and RTC (bench/sim/state_dir.py); "" = a new temp dir
    state_dir: str = ""
    firmware: str = "reference"  # which firmware the board runs: a key of FIRMWARES
    extended_tokens: bool = True
    # the firmware build (FirmwareConfig): capabilities left out (reference firmware), the
    # lockout's "minute" in seconds, and the HDK with its documented defects fixed (hdk firmware)
    hide_capabilities: list[str] = field(default_factory=list)
    lockout_unit_s: float = 60.0
    hdk_fixed: bool = False
    # the firmware build's OpenPAYGO Metrics sessions (FirmwareConfig.metrics_*; off: none)
    metrics_mode: str = "off"
    metrics_period_s: float = 3600.0
    metrics_sample_s: int = 60
    metrics_encoding: str = "json"
    metrics_reply_timeout_s: float = 10.0

    @classmethod
    def from_json(cls, text: str) -> "SimOptions":
        data = json.loads(text)
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown simulator option(s): {', '.join(sorted(unknown))}")
        return cls(**data)


# rtc_drift_beyond_limit: what a mis-loaded crystal or an RC-clocked RTC adds to the drift, ppm.
RTC_FAULT_DRIFT_PPM = 2000.0

# The firmware the board runs, by the name of the host adapter that speaks its protocol.
FIRMWARES = {"reference": Firmware, "hdk": HdkFirmware}


def firmware_config(opts: SimOptions) -> FirmwareConfig:
    """The firmware build the options describe; ValueError naming the option that does not fit."""
    validate(opts.faults)
    if opts.firmware not in FIRMWARES:
        raise ValueError(f"unknown simulator firmware {opts.firmware!r}; known: {', '.join(FIRMWARES)}")
    if opts.hdk_fixed and opts.firmware != "hdk":
        raise ValueError(f"hdk_fixed is a build of the HDK firmware, not of the {opts.firmware!r} firmware")
    if opts.hide_capabilities and opts.firmware != "reference":
        raise ValueError(f"hide_capabilities applies to the reference firmware; the {opts.firmware!r} "
                         "firmware's capabilities are fixed by its protocol")
    return FirmwareConfig(
        faults=frozenset(opts.faults),
        rtc_subsecond=opts.rtc_subsecond,
        extended_tokens=opts.extended_tokens,
        hide_capabilities=frozenset(opts.hide_capabilities),
        lockout_unit_s=opts.lockout_unit_s,
        hdk_fixed=opts.hdk_fixed,
        metrics_mode=opts.metrics_mode,
        metrics_period_s=opts.metrics_period_s,
        metrics_sample_s=opts.metrics_sample_s,
        metrics_encoding=opts.metrics_encoding,
        metrics_reply_timeout_s=opts.metrics_reply_timeout_s,
    )


class VirtualRig:
    def __init__(self, opts: SimOptions) -> None:
        config = firmware_config(opts)
        self.opts = opts
        self.state = StateDir(opts.state_dir or tempfile.mkdtemp(prefix="paygo-sim-"), EEPROM_SIZE)
        self.supply = SimulatedSupply(decay_s=opts.psu_decay_s)
        self.scpi = ScpiServer(self.supply)
        self.transport = open_transport(opts.link)
        eeprom = Eeprom(self.state.eeprom_path, size=EEPROM_SIZE, page_write_s=opts.nvm_page_write_ms / 1000)
        drift = opts.rtc_drift_ppm + (RTC_FAULT_DRIFT_PPM if Fault.RTC_DRIFT_BEYOND_LIMIT in opts.faults else 0.0)
        rtc = self.state.restore_rtc(drift, default_start=time.time())
        rtc.on_set = lambda: self.state.save_rtc(rtc)
        self.board = Board(
            self.transport,
            lambda: self.supply.voltage(opts.channel),
            RecordStore(eeprom),
            rtc,
            config,
            brownout_v=opts.brownout_v,
            boot_delay_s=opts.boot_delay_s,
            firmware_factory=FIRMWARES[opts.firmware],
        )
        self.supply.set_load(opts.channel, self.board.draw)
        # The board's "NVM write" marker drives the PSU's trigger input (SIM:TRIG:NVM), and a hard
        # cut trips the board's brown-out detector at once.
        eeprom.on_page_written = lambda: self.supply.nvm_page_written(opts.channel)
        self.supply.subscribe(self._on_output)

    def _on_output(self, ch: int, on: bool) -> None:
        if ch == self.opts.channel and not on and self.supply.voltage(ch) < self.opts.brownout_v:
            self.board.collapse()

    def start(self) -> dict:
        self.state.save_rtc(self.board.rtc)  # from now on a killed simulator still leaves a clock
        self.scpi.start()
        self.board.start()
        return {"port": self.transport.url, "visa": self.scpi.visa_resource, "channel": self.opts.channel}

    def stop(self) -> None:
        self.board.stop()
        self.scpi.close()
        self.transport.close()
        if Fault.RTC_STOPPED_UNPOWERED in self.opts.faults:
            self.board.rtc.stop()  # the device is unpowered until the next run: a flat cell stops it
        self.state.save_rtc(self.board.rtc)
        self.state.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sim", description=__doc__.splitlines()[0])
    parser.add_argument("--options", default="{}", help="simulator options as JSON (see SimOptions)")
    parser.add_argument("--watch-stdin", action="store_true", help="exit when standard input closes")
    parser.add_argument("--human", action="store_true", help="print for a person instead of JSON")
    args = parser.parse_args(argv)
    try:
        rig = VirtualRig(SimOptions.from_json(args.options))
    except (ValueError, TypeError) as e:
        print(f"paygo-bench sim: {e}", file=sys.stderr)
        return 2
    endpoints = rig.start()
    if args.human:
        print("Virtual rig running (Ctrl-C to stop)")
        print(f"  DUT serial port : {endpoints['port']}   (115200 8N1; try: python -m serial.tools.miniterm {endpoints['port']})")
        print(f"  PSU VISA        : {endpoints['visa']}   (channel {endpoints['channel']}, output starts OFF)")
        print(f"  faults          : {', '.join(rig.opts.faults) or 'none'}")
    else:
        print(json.dumps({"event": "ready", **endpoints}))
    sys.stdout.flush()

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    if args.watch_stdin:
        threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    try:
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    rig.stop()
    return 0
