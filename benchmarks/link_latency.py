"""Round-trip times on the virtual rig's links, as a printed table.

Why it exists: the bench polls the PSU while a rail falls and the DUT around RTC edges, so the
round trip of one request bounds how finely it can time either. This measures the UART request
over a pty and over socket://, and one SCPI query through pyvisa-py with Nagle's algorithm left on
(pyvisa-py's default) and switched off (what bench.power.driver does), with ratios against the
pty round trip measured in the same run.

    python benchmarks/link_latency.py [--n 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

import pyvisa

from bench.dut.link import SerialLink
from bench.power.driver import Psu
from bench.station.virtual_rig import start_virtual_rig


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def uart_rtts(link_kind: str, n: int) -> list[float]:
    rig = start_virtual_rig({"link": link_kind})
    try:
        link = SerialLink(rig.port).open()
        psu = Psu.open(rig.visa, "keysight-e36", rig.channel)
        psu.set_voltage(12)
        psu.output(True)
        deadline = time.monotonic() + 5
        while True:  # wait until the device has booted and answers
            try:
                link.request("PING", 0.5)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
        return timed(lambda: link.request("PING", 2.0), n)
    finally:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    rows = [
        ("UART PING, pty", uart_rtts("pty", args.n)),
        ("UART PING, socket://", uart_rtts("socket", args.n)),
        ("SCPI select+MEAS:VOLT?, Nagle off (driver)", scpi_rtts(True, args.n)),
        ("SCPI select+MEAS:VOLT?, Nagle on (pyvisa-py default)", scpi_rtts(False, max(20, args.n // 10))),
    ]
    ref = statistics.median(rows[0][1])
    print(f"{'link':52} {'n':>5} {'median ms':>10} {'p95 ms':>8} {'x pty':>7}")
    for name, samples in rows:
        med = statistics.median(samples)
        p95 = sorted(samples)[int(0.95 * (len(samples) - 1))]
        print(f"{name:52} {len(samples):5d} {med * 1e3:10.3f} {p95 * 1e3:8.3f} {med / ref:7.1f}")


if __name__ == "__main__":
    main()
