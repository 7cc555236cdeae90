"""A station that is a labgrid place: acquired for the run, its DUT's serial port and PSU found
through the coordinator, released at the end.

Labs that already run a labgrid coordinator describe their stations as places; acquiring one is
labgrid's lock, seen by every user of the coordinator (https://labgrid.readthedocs.io, "Remote
Access"). The bench goes through `labgrid-client`, labgrid's documented command line, not its
Python internals: `acquire` (refused while another user or host holds the place, the holder
named), `show` (the place's tags, one of which names the PSU's VISA resource, and its acquired
resources, each printed as a Python literal: the exported serial port is a NetworkSerialPort,
reached over RFC 2217 or raw TCP), `release`.

A place this same user already holds on this host (acquired by hand before the run) is used and
left acquired; two runs on one host are kept apart by the station lock on the resolved port and
PSU (bench/station/station_lock.py)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.rig.model import LABGRID, Rig

CLIENT_TIMEOUT_S = 30.0


class PlaceError(Exception):
    """The place cannot be used: busy (the holder named), unknown, or its resources incomplete."""


@dataclass(frozen=True)
class PlaceResources:
    serial_url: str  # rfc2217://host:port or socket://host:port
    speed: int | None
    psu_resource: str | None  # from the place's tag, None if it has none


@dataclass
class LabgridPlace:
    coordinator: str  # host:port
    place: str
    psu_tag: str = "psu_visa"
    client: str | None = None  # labgrid-client; found beside this Python or on PATH if None
    _acquired_here: bool = False

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        client = os.path.expanduser(self.client) if self.client else _find_client()
        try:
            return subprocess.run(
                [client, "-x", self.coordinator, "-p", self.place, *args],
                capture_output=True,
                text=True,
                timeout=CLIENT_TIMEOUT_S,
            )
        except FileNotFoundError:
            raise PlaceError(f"{client} not found: install labgrid (pip install labgrid) to use [labgrid]") from None
        except subprocess.TimeoutExpired:
            raise PlaceError(
                f"labgrid coordinator {self.coordinator} did not answer within {CLIENT_TIMEOUT_S:.0f} s"
            ) from None

    def acquire(self) -> None:
        """Take the place for this run. PlaceError naming the holder if someone else has it."""
        done = self._run("acquire")
        if done.returncode == 0:
            self._acquired_here = True
            return
        said = _said(done)
        if "You have already acquired place" in said and " on " not in said:
            return  # this user holds it on this host already: used, and left to them
        raise PlaceError(f"labgrid place {self.place} at {self.coordinator}: {said}")

    def resources(self) -> PlaceResources:
        show = self._run("show")
        if show.returncode != 0:
            raise PlaceError(f"labgrid place {self.place}: cannot read its resources: {_said(show)}")
        port = _network_serial_port(show.stdout)
        if port is None:
            raise PlaceError(
                f"labgrid place {self.place} has no NetworkSerialPort among its acquired resources: "
                "export the DUT's UART (RawSerialPort or USBSerialPort) and add it to the place's matches"
            )
        host, number, protocol, speed = port
        # labgrid's exporter serves the port with ser2net, which does not answer pyserial's RFC 2217
        # client's SET_CONTROL the way it waits for ("timeout while waiting for option 'control'"):
        # pyserial's URL option ign_set_control stops it waiting (pyserial docs, "URL Handlers")
        url = f"socket://{host}:{number}" if protocol == "raw" else f"rfc2217://{host}:{number}?ign_set_control"
        return PlaceResources(url, speed, _tags(show.stdout).get(self.psu_tag))

    def release(self) -> None:
        """Let the place go, if this run took it; never raises (the run's end must not fail here)."""
        if not self._acquired_here:
            return
        try:
            done = self._run("release")
        except PlaceError as e:
            print(f"paygo-bench: labgrid place {self.place} not released: {e}", file=sys.stderr)
            return
        if done.returncode != 0:
            print(f"paygo-bench: labgrid place {self.place} not released: {_said(done)}", file=sys.stderr)
        self._acquired_here = False


def _find_client() -> str:
    beside = Path(sys.executable).with_name("labgrid-client")
    if beside.exists() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("labgrid-client") or "labgrid-client"


def _said(done: subprocess.CompletedProcess) -> str:
    text = (done.stderr or done.stdout or "").strip().splitlines()
    lines = [line.removeprefix("labgrid-client: ").removeprefix("Error: ") for line in text if line.strip()]
    return lines[-1] if lines else f"labgrid-client exited with {done.returncode}"


def _network_serial_port(show: str) -> tuple[str, int, str, int | None] | None:
    """(host, port, protocol, speed) of the first acquired NetworkSerialPort in `labgrid-client
    show`: each acquired resource follows an "Acquired resource" line as an indented literal."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in show.splitlines():
        if line.startswith("Acquired resource"):
            current = []
            blocks.append(current)
        elif current is not None and line.startswith(" "):
            current.append(line)
        else:
            current = None
    for block in blocks:
        try:
            resource = ast.literal_eval("\n".join(block).strip())
        except (ValueError, SyntaxError):
            continue
        params = resource.get("params") if isinstance(resource, dict) else None
        if resource.get("cls") != "NetworkSerialPort" or not isinstance(params, dict):
            continue
        if params.get("host") and params.get("port"):
            speed = params.get("speed")
            return (
                str(params["host"]),
                int(params["port"]),
                str(params.get("protocol", "rfc2217")),
                int(speed) if speed else None,
            )
    return None


def _tags(show: str) -> dict[str, str]:
    for line in show.splitlines():
        line = line.strip()
        if line.startswith("tags:"):
            pairs = (item.partition("=") for item in line.removeprefix("tags:").split(","))
            return {k.strip(): v.strip() for k, _, v in pairs if k.strip()}
    return {}


@contextmanager
def held_place(rig: Rig) -> Iterator[tuple[str, str]]:
    """(serial port URL, PSU VISA resource) of the rig's place, held for the block: acquired
    first, released at the end whatever happens (Ctrl-C included). PlaceError if it cannot be."""
    cfg = rig.labgrid
    place = LabgridPlace(cfg.coordinator, cfg.place, cfg.psu_tag, cfg.client or None)
    place.acquire()
    try:
        found = place.resources()
        psu = rig.psu.resource if rig.psu.resource != LABGRID else found.psu_resource
        if not psu:
            raise PlaceError(
                f"labgrid place {cfg.place} has no tag {cfg.psu_tag}=<VISA resource> for the PSU "
                f"(labgrid-client -p {cfg.place} set-tags {cfg.psu_tag}=TCPIP0::...::SOCKET), and psu.resource "
                'is "labgrid"'
            )
        yield found.serial_url, psu
    finally:
        place.release()
