"""The virtual rig process: a simulated PSU on a loopback SCPI socket powering a simulated device
on a pty (or a loopback TCP port where there is no pty).

Run as `python -m bench.sim` (the bench starts it this way) or `paygo-bench sim`. It prints one
JSON line with the serial port and the VISA resource string, then serves until it is told to
stop (SIGINT, SIGTERM, or end of standard input when --watch-stdin is given).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from bench.sim.board import Board
from bench.sim.eeprom import EEPROM_SIZE, Eeprom
from bench.sim.faults import Fault, validate
from bench.sim.firmware import Firmware
from bench.sim.firmware_config import FirmwareConfig
from bench.sim.hdk_firmware import HdkFirmware
from bench.sim.metrics.uplink import Uplink, read_jwt_secret
from bench.sim.nvstate import RecordStore
from bench.sim.psu.server import ScpiServer
from bench.sim.psu.supply import SimulatedSupply
from bench.sim.state_dir import StateDir
from bench.sim.transport import open_transport

# The firmware the board runs, by the name of the host adapter that speaks its protocol.
FIRMWARES = {"reference": Firmware, "hdk": HdkFirmware}

# The options that choose the firmware build (FirmwareConfig's fields a rig may set), and the
# build the simulator runs where they say nothing: the reference build with extended tokens.
BUILD_OPTIONS = (
    "faults",
    "rtc_subsecond",
    "extended_tokens",
    "hide_capabilities",
    "lockout_unit_s",
    "hdk_fixed",
    "sync_keeps_higher_count",
    "extended_as_time",
    "extended_only",
    "metrics_mode",
    "metrics_period_s",
    "metrics_sample_s",
    "metrics_encoding",
    "metrics_reply_timeout_s",
)
# Direct mode's HTTPS and JWT provisioning (bench/sim/metrics/uplink.py): the CA file, and where
# the JWT secret is (a file, or an environment variable of this process): the options are a
# command-line argument, so they never hold the secret itself.
UPLINK_OPTIONS = ("metrics_ca_file", "metrics_jwt_secret_file", "metrics_jwt_secret_env")
# The token choices only the reference firmware's decoder can be built to make (docs/tokens.md
# "Where a device may choose").
REFERENCE_CHOICES = ("sync_keeps_higher_count", "extended_as_time", "extended_only")
DEFAULT_BUILD = FirmwareConfig(extended_tokens=True, metrics_first_row_at_start=True)


@dataclass
class SimOptions:
    """The virtual rig around the device, and the firmware build it runs (one FirmwareConfig,
    built once from the options: `from_dict`, `from_json`)."""

    rtc_drift_ppm: float = 0.0
    psu_decay_s: float = 0.04  # the rail's fall after OFF: one or two of the bench's 20 ms polls see it above 0.5 V
    link: str = "auto"
    brownout_v: float = 3.0
    nvm_page_write_ms: float = 0.25
    channel: int = 1
    boot_delay_s: float = 0.001  # supply up to boot banner; short, so that power-cut runs stay fast
    # where the device keeps its NVM image and RTC (bench/sim/state_dir.py); "" = a new temp dir
    state_dir: str = ""
    firmware: str = "reference"  # which firmware the board runs: a key of FIRMWARES
    # the firmware build: its faults, capabilities left out (reference firmware), the lockout's
    # "minute" in seconds, the HDK with its documented defects fixed (hdk firmware), its Metrics
    # sessions (off: none)
    build: FirmwareConfig = DEFAULT_BUILD

    def __post_init__(self) -> None:
        check_firmware(self.firmware, self.build.hdk_fixed, self.build.hide_capabilities)
        chosen = [o for o in REFERENCE_CHOICES if getattr(self.build, o)]
        if chosen and self.firmware != "reference":
            raise ValueError(
                f"{', '.join(chosen)}: a choice of the reference firmware's decoder, not the {self.firmware!r} one's"
            )

    @classmethod
    def from_dict(cls, options: Mapping[str, Any]) -> SimOptions:
        """The options as the bench gives them (one flat mapping, BUILD_OPTIONS among them);
        ValueError naming the option that does not fit."""
        rig_fields = {f.name for f in fields(cls)} - {"build"}
        unknown = set(options) - rig_fields - set(BUILD_OPTIONS) - set(UPLINK_OPTIONS)
        if unknown:
            raise ValueError(f"unknown simulator option(s): {', '.join(sorted(unknown))}")
        validate(options.get("faults", ()))  # the faults, then the firmware, then the rest of the build
        check_firmware(
            options.get("firmware", "reference"), options.get("hdk_fixed", False), options.get("hide_capabilities", ())
        )
        build = replace(
            DEFAULT_BUILD,
            **{k: v for k, v in options.items() if k in BUILD_OPTIONS},
            metrics_uplink=uplink_from(options),
        )
        return cls(**{k: v for k, v in options.items() if k in rig_fields}, build=build)

    @classmethod
    def from_json(cls, text: str) -> SimOptions:
        return cls.from_dict(json.loads(text))


def uplink_from(options: Mapping[str, Any]) -> Uplink:
    """The build's Uplink from the options (ValueError naming what does not fit, never the secret)."""
    file, var = options.get("metrics_jwt_secret_file", ""), options.get("metrics_jwt_secret_env", "")
    if file and var:
        raise ValueError("metrics_jwt_secret_file and metrics_jwt_secret_env: expected one of them")
    if var and var not in os.environ:
        raise ValueError(f"metrics_jwt_secret_env: environment variable {var} is not set")
    try:
        secret = read_jwt_secret(file, os.environ[var] if var else None)
    except OSError as e:
        raise ValueError(f"metrics_jwt_secret_file: {file}: unreadable ({type(e).__name__})") from None
    return Uplink(options.get("metrics_ca_file", ""), secret)


def check_firmware(firmware: str, hdk_fixed: bool, hide_capabilities: Collection[str]) -> None:
    """ValueError if the firmware is unknown or the build options do not apply to it."""
    if firmware not in FIRMWARES:
        raise ValueError(f"unknown simulator firmware {firmware!r}; known: {', '.join(FIRMWARES)}")
    if hdk_fixed and firmware != "hdk":
        raise ValueError(f"hdk_fixed is a build of the HDK firmware, not of the {firmware!r} firmware")
    if hide_capabilities and firmware != "reference":
        raise ValueError(
            f"hide_capabilities applies to the reference firmware; the {firmware!r} "
            "firmware's capabilities are fixed by its protocol"
        )


# rtc_drift_beyond_limit: what a mis-loaded crystal or an RC-clocked RTC adds to the drift, ppm.
RTC_FAULT_DRIFT_PPM = 2000.0


class VirtualRig:
    def __init__(self, opts: SimOptions) -> None:
        config = opts.build
        self.opts = opts
        self.state = StateDir(opts.state_dir or tempfile.mkdtemp(prefix="paygo-sim-"), EEPROM_SIZE)
        self.supply = SimulatedSupply(decay_s=opts.psu_decay_s)
        self.scpi = ScpiServer(self.supply)
        self.transport = open_transport(opts.link)
        eeprom = Eeprom(self.state.eeprom_path, size=EEPROM_SIZE, page_write_s=opts.nvm_page_write_ms / 1000)
        drift = opts.rtc_drift_ppm + (RTC_FAULT_DRIFT_PPM if Fault.RTC_DRIFT_BEYOND_LIMIT in config.faults else 0.0)
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
            supply_lowest=lambda: self.supply.lowest_since_last(opts.channel),
        )
        self.supply.set_load(opts.channel, self.board.draw)
        # The board's "NVM write" marker drives the PSU's trigger input (SIM:TRIG:NVM), and a hard
        # cut trips the board's brown-out detector at once.
        eeprom.on_page_written = lambda: self.supply.nvm_page_written(opts.channel)
        self.supply.time_skipper = self.board.skip_unpowered  # SIM:TIME:SKIP: time passes for the unpowered device
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
        if Fault.RTC_STOPPED_UNPOWERED in self.opts.build.faults:
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
        print(
            f"  DUT serial port : {endpoints['port']}   (115200 8N1; try: python -m serial.tools.miniterm {endpoints['port']})"
        )
        print(f"  PSU VISA        : {endpoints['visa']}   (channel {endpoints['channel']}, output starts OFF)")
        print(f"  faults          : {', '.join(sorted(rig.opts.build.faults)) or 'none'}")
    else:
        print(json.dumps({"event": "ready", **endpoints}))
    sys.stdout.flush()

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    if args.watch_stdin:

        def stop_at_end_of_stdin() -> None:
            sys.stdin.read()
            done.set()

        threading.Thread(target=stop_at_end_of_stdin, daemon=True).start()
    try:
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    rig.stop()
    return 0
