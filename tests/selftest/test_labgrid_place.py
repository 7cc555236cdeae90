"""A station that is a labgrid place (bench/station/labgrid_place.py), against a real labgrid:
`labgrid-coordinator` and `labgrid-exporter` on loopback, the exporter serving the simulated
DUT's UART through ser2net (RFC 2217), the PSU's VISA resource a tag of the place. A run acquires
the place, passes through it and releases it; a second run while it is held is refused, naming
the holder. Skipped, saying why, where labgrid or ser2net is not installed (.ci/run installs
both: the `test` extra and Debian's ser2net)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.rig import RigError, load_rig
from bench.rig.model import VIRTUAL_DUT_KEY
from bench.station.labgrid_place import _network_serial_port, _tags
from tests.selftest import background
from tests.selftest.test_cli_run import simulator
from tests.selftest.waiting import free_port, listening, wait_until

ROOT = Path(__file__).resolve().parents[2]
# labgrid lives in an environment of its own (docs/rig.md "[labgrid]"): .ci/run makes one and
# names its bin folder in PAYGO_LABGRID_BIN
BIN = Path(os.environ.get("PAYGO_LABGRID_BIN") or Path(sys.executable).parent)
PLACE = "bench-station-1"
SHOW = """Place 'bench-station-1':
  tags: owner=qa, psu_visa=TCPIP0::127.0.0.1::5025::SOCKET
  matches:
    exp/station-1/*
  acquired: host/anna
  acquired resources:
    exp/station-1/NetworkSerialPort/RawSerialPort
  created: 2026-12-07 13:02:38.647713
Acquired resource 'RawSerialPort' (exp/station-1/NetworkSerialPort/RawSerialPort):
  {'acquired': 'bench-station-1',
   'avail': True,
   'cls': 'NetworkSerialPort',
   'params': {'extra': {'path': '/dev/pts/3'},
              'host': '10.0.0.7',
              'port': 52421,
              'speed': 115200}}
"""


def tool(name: str) -> str | None:
    beside = BIN / name
    return str(beside) if beside.exists() else shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin")


def why_no_labgrid() -> str | None:
    missing = [n for n in ("labgrid-coordinator", "labgrid-exporter", "labgrid-client", "ser2net") if tool(n) is None]
    if missing:
        return (
            f"{', '.join(missing)} not found (labgrid in its own environment, its bin folder in "
            "PAYGO_LABGRID_BIN; Debian: apt-get install ser2net; .ci/run does both): the labgrid place checks did not run"
        )
    return None


# -- the pieces, no labgrid needed ----------------------------------------------------------------


def test_the_places_serial_port_and_psu_tag_are_read_from_show():
    assert _network_serial_port(SHOW) == ("10.0.0.7", 52421, "rfc2217", 115200)
    assert _tags(SHOW) == {"owner": "qa", "psu_visa": "TCPIP0::127.0.0.1::5025::SOCKET"}
    assert _network_serial_port(SHOW.replace("NetworkSerialPort'", "USBSerialPort'")) is None
    assert _network_serial_port("Place 'x':\n  acquired: None\n") is None


def test_a_rig_naming_a_place_takes_its_port_and_psu_from_it(tmp_path):
    rig_file = tmp_path / "rig.toml"
    rig_file.write_text(rig_text("127.0.0.1:20408"))
    rig = load_rig(rig_file)
    assert (rig.link.port, rig.psu.resource, rig.virtual, rig.labgrid.place) == ("labgrid", "labgrid", False, PLACE)
    rig_file.write_text(rig_text("127.0.0.1:20408").replace("[link]\n", '[link]\nport = "/dev/ttyUSB0"\n'))
    with pytest.raises(RigError, match='link.port: got .* with labgrid.place; expected "labgrid"'):
        load_rig(rig_file)
    rig_file.write_text('[station]\nid = "x"\n[link]\nport = "labgrid"\n[psu]\nresource = "labgrid"\n')
    with pytest.raises(RigError, match='"labgrid" without labgrid.place'):
        load_rig(rig_file)


def rig_text(coordinator: str, client: str = "") -> str:
    return (
        f'[station]\nid = "lab-lg"\n[labgrid]\ncoordinator = "{coordinator}"\nplace = "{PLACE}"\nclient = "{client}"\n'
        '[link]\nboot_timeout_s = 2.0\n[psu]\nprofile = "paygo-sim"\ntimeout_s = 1.0\nmin_off_s = 0.15\n'
        f'[dut]\nserial_number = "SIM000001"\nstarting_code = 123456789\nsecret_key = "{VIRTUAL_DUT_KEY}"\n'
        # the simulated device's timings (the virtual rig's defaults), not a real rig's minutes
        "rtc_drift_observe_s = 6.0\nrtc_drift_max_observe_s = 45.0\nrtc_off_test_s = 1.5\n"
        "unpowered_long_s = 3600.0\nlockout_wait_budget_s = 60.0\n"
    )


# -- against a real coordinator and exporter -------------------------------------------------------


class Lab:
    """A coordinator and an exporter on loopback, and the place of the simulated station."""

    def __init__(self, tmp: Path, sim) -> None:
        self.tmp, self.sim = tmp, sim
        self.address = f"127.0.0.1:{free_port()}"
        self.env = {
            **os.environ,
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}:/usr/sbin",
            "LG_COORDINATOR": self.address,
        }
        self.procs: list[subprocess.Popen] = []

    def spawn(self, *cmd: str, log: str) -> None:
        out = (self.tmp / log).open("w")
        # the coordinator keeps its places in files of its working folder: the test's own
        self.procs.append(subprocess.Popen(list(cmd), cwd=self.tmp, env=self.env, stdout=out, stderr=subprocess.STDOUT))

    def client(self, *args: str, user: str | None = None) -> subprocess.CompletedProcess:
        env = {**self.env, **({"LG_USERNAME": user} if user else {})}
        return subprocess.run(
            [tool("labgrid-client"), "-p", PLACE, *args], env=env, capture_output=True, text=True, timeout=30
        )

    def start(self) -> None:
        self.spawn(tool("labgrid-coordinator"), "-l", self.address, log="coordinator.log")
        host, port = self.address.split(":")
        wait_until(lambda: listening(host, int(port)), 30, "the coordinator listening")
        exporter = self.tmp / "exporter.yaml"
        exporter.write_text(f"station-1:\n  RawSerialPort:\n    port: {self.sim.port}\n    speed: 115200\n")
        self.spawn(
            tool("labgrid-exporter"),
            "-c",
            self.address,
            "-n",
            "bench-exp",
            "--hostname",
            "127.0.0.1",
            str(exporter),
            log="exporter.log",
        )
        for args in (("create",), ("add-match", "bench-exp/station-1/*"), ("set-tags", f"psu_visa={self.sim.visa}")):
            done = self.client(*args)
            assert done.returncode == 0, done.stderr
        wait_until(
            lambda: (
                "NetworkSerialPort"
                in subprocess.run(
                    [tool("labgrid-client"), "resources"], env=self.env, capture_output=True, text=True, timeout=30
                ).stdout
            ),
            30,
            "the exporter's serial port at the coordinator",
        )

    def holder(self) -> str:
        for line in self.client("show").stdout.splitlines():
            if line.strip().startswith("acquired:"):
                return line.split(":", 1)[1].strip()
        return "?"

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def bench_run(lab: Lab, rig: Path, out: Path, user: str | None = None, suite: str = "quick") -> subprocess.Popen:
    env = {**lab.env, **({"LG_USERNAME": user} if user else {}), "PAYGO_BENCH_LOCKS": str(lab.tmp / "locks")}
    return subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "run", "--rig", str(rig), "--suite", suite, "--report-dir", str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@background.scenario
def runs_through_a_place(tmp: Path) -> dict:
    why = why_no_labgrid()
    if why is not None:
        return {"skip": why}
    (tmp / "locks").mkdir()
    seen: dict = {}
    with simulator() as sim:
        lab = Lab(tmp, sim)
        try:
            lab.start()
            rig = tmp / "rig.toml"
            rig.write_text(rig_text(lab.address, tool("labgrid-client") or ""))
            # the certification suite (every device test runs) through the place: it holds the
            # place far longer than the refused runs below take
            first = bench_run(lab, rig, tmp / "run1", suite="token")
            seen["holder_during"] = wait_until(
                lambda: (h := lab.holder()) not in ("None", "?") and h, 60, "the first run holding the place"
            )
            t0 = time.monotonic()
            others = {
                name: bench_run(lab, rig, tmp / f"run-{name}", user=user)
                for name, user in (("other_user", "someone-else"), ("same_user", None))
            }
            for name, proc in others.items():
                out, _ = proc.communicate(timeout=120)
                seen[name] = {"code": proc.returncode, "output": out, "took_s": time.monotonic() - t0}
            seen["first_still_running"] = first.poll() is None
            out, _ = first.communicate(timeout=300)
            seen["first"] = {"code": first.returncode, "output": out}
            seen["record"] = json.loads((tmp / "run1" / "record.json").read_text())
            seen["traffic"] = "".join(p.read_text() for p in sorted((tmp / "run1" / "logs").glob("*.log")))
            seen["psu_tag"] = sim.visa
            seen["holder_after"] = lab.holder()
        finally:
            lab.stop()
    return seen


@pytest.fixture
def place_runs(request) -> dict:
    seen = background.result(request, runs_through_a_place)
    if "skip" in seen:
        pytest.skip(seen["skip"])
    return seen


def test_a_run_through_a_place_passes_and_lets_it_go(place_runs):
    first = place_runs["first"]
    # the certification suite (every device test run), through labgrid's RFC 2217 export of the UART
    assert first["code"] == 0 and "paygo-bench: PASSED" in first["output"], first["output"][-3000:]
    assert place_runs["holder_during"].endswith("/" + (os.environ.get("LG_USERNAME") or _user()))
    assert place_runs["holder_after"] == "None", "the run released the place"
    # the PSU is the place's tag, the DUT's UART the exporter's port, through RFC 2217
    assert place_runs["record"]["instruments"][0]["resource"] == place_runs["psu_tag"]
    assert "DUT link rfc2217://127.0.0.1:" in place_runs["traffic"], place_runs["traffic"][:500]


def test_a_second_run_is_refused_while_the_place_is_held(place_runs):
    assert place_runs["first_still_running"], "the refusals were made while the first run held the place"
    other = place_runs["other_user"]
    assert other["code"] == 3, other["output"][-3000:]
    assert f"Place {PLACE} is already acquired by {place_runs['holder_during']}" in other["output"]
    same = place_runs["same_user"]  # labgrid lets its holder in again: the station lock does not
    assert same["code"] == 3 and "is in use by pid" in same["output"], same["output"][-3000:]
    for refused in (other, same):
        assert "Traceback" not in refused["output"]
        assert "supply not switched by this run" in refused["output"] or refused["took_s"] < 60


def _user() -> str:
    import getpass

    return getpass.getuser()
