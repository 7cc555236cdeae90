"""Round-trip times on the virtual rig's links, as a printed table.

Why it exists: the bench polls the PSU while a rail falls and the DUT around RTC edges, so the
round trip of one request bounds how finely it can time either. This measures a STATUS request
of a provisioned device over the simulator's pty, over socket://, and over the pty through the
bench's RFC 2217 server (rfc2217://, the hop a rig with its UART on a ser2net host adds), and
one SCPI query through pyvisa-py with Nagle's algorithm left on (pyvisa-py's default) and
switched off (what bench.power.driver does), with ratios against the pty round trip measured in
the same run.

    python benchmarks/link_latency.py [--n 1000]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pyvisa

from bench.dut.link import SerialLink
from bench.dut.reference import ReferenceAdapter
from bench.equipment.rfc2217_server import Rfc2217Server
from bench.power.driver import Psu
from bench.rig import virtual_rig
from bench.station.profile import provisioning_for
from bench.station.virtual_rig import start_virtual_rig


def timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def status_rtts(link_kind: str, n: int, rfc2217: bool = False) -> list[float]:
    """STATUS round trips of a provisioned simulated device (a reply of every field, as a test reads it)."""
    rig = start_virtual_rig({"link": link_kind})
    server = Rfc2217Server(rig.port).start() if rfc2217 else None
    try:
        link = SerialLink(server.url if server else rig.port).open()
        psu = Psu.open(rig.visa, "keysight-e36", rig.channel)
        psu.set_voltage(12)
        psu.output(True)
        link.wait_event("! BOOT", 5)
        adapter = ReferenceAdapter(link)
        adapter.provision(provisioning_for(virtual_rig().dut))
        adapter.status()  # answers with every field: provisioned
        samples = timed(adapter.status, n)
        link.close()
        psu.output(False)
        psu.close()
        if server is not None and server.errors:
            raise RuntimeError(server.tally())
        return samples
    finally:
        if server is not None:
            server.stop()
        rig.stop()


def scpi_rtts(nodelay: bool, n: int) -> list[float]:
    rig = start_virtual_rig({})
    try:
        if nodelay:
            psu = Psu.open(rig.visa, "keysight-e36", rig.channel)
            return timed(psu.measure_voltage, n)  # select + query, as the driver does it
        inst = pyvisa.ResourceManager("@py").open_resource(rig.visa, read_termination="\n", write_termination="\n")

        def select_and_query() -> None:
            inst.write("INST:NSEL 1")
            inst.query("MEAS:VOLT?")

        return timed(select_and_query, n)
    finally:
        rig.stop()


def quantile(xs: list[float], q: float) -> float:
    return sorted(xs)[round(q * (len(xs) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    rows = [
        ("UART STATUS, pty", status_rtts("pty", args.n)),
        ("UART STATUS, socket://", status_rtts("socket", args.n)),
        ("UART STATUS, pty via RFC 2217 server", status_rtts("pty", args.n, rfc2217=True)),
        ("SCPI select+MEAS:VOLT?, Nagle off (driver)", scpi_rtts(True, args.n)),
        ("SCPI select+MEAS:VOLT?, Nagle on (pyvisa-py default)", scpi_rtts(False, max(20, args.n // 50))),
    ]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{now}, CPython {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores")
    ref = statistics.median(rows[0][1])
    print(f"{'link':52} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'x pty':>7}")
    for name, samples in rows:
        med = statistics.median(samples)
        print(f"{name:52} {len(samples):5d} {med * 1e3:8.3f} {quantile(samples, 0.99) * 1e3:8.3f} {med / ref:7.1f}")


if __name__ == "__main__":
    main()
