"""How fast the Metrics server ingests the spec's hourly session, as a printed table.

Why it exists: a bench server must never be the bottleneck of a test, and it commits every
request durably (SQLite WAL, the log flushed to the disk: bench/server/store.py WalSync) before answering. This posts signed (ra) condensed
sessions to the real server on loopback (waitress, keep-alive connections) from 1, 4 and 16
clients, and sets beside it, in the same run on the same request bodies, the in-process cost
of parsing and verifying them: with the bench's codec, and with openpaygo's MetricsResponseHandler
(parse + is_auth_valid + get_simple_metrics), the reference a server would otherwise use.

Each client is its own process (a device is its own machine): the load generator's Python does
not share the server's interpreter lock, so the rate is the server's. "cpu ms" is the CPU time
(user + system, all threads) the server spent per request: this process's in the one-process
rows, its worker processes' (/proc) in the "N workers" rows (`paygo-bench serve --workers N`:
forked processes on one listening socket and one SQLite file, bench/server/workers.py), whatever
else the machine runs. The SipHash in use (C or pure Python,
bench.openpaygo.metrics.auth.SIPHASH_IMPL) is printed.

    python benchmarks/metrics_ingest.py [--n 400] [--workers 2 4]
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from metrics_session import FORMAT_JSON, KEY, STARTING_CODE, session_format, session_request  # noqa: E402
from openpaygo import MetricsResponseHandler  # noqa: E402

from bench.openpaygo.metrics.auth import SIPHASH_IMPL, verify_request  # noqa: E402
from bench.openpaygo.metrics.codec import parse_body  # noqa: E402
from bench.openpaygo.metrics.condense import BuiltRequest, build_request  # noqa: E402
from bench.server.app import create_app  # noqa: E402
from bench.server.config import MetricsServerConfig  # noqa: E402
from bench.server.devices import Device, DeviceRegistry  # noqa: E402
from bench.server.serve import start  # noqa: E402
from bench.server.store import Store  # noqa: E402
from bench.server.workers import available, default_workers, start_workers  # noqa: E402

CLIENTS = (1, 4, 16)


def bodies(serial: str, n: int, fid: int, t0: int) -> list[BuiltRequest]:
    fmt = session_format(fid)
    out = []
    for i in range(n):
        base = session_request("json-condensed", timestamp=t0 + i, request_count=i + 1, fmt=fmt, seed=i)
        # same content, this client's serial (each client is one device: its rc goes up in order)
        p = base.payload
        rows = [dict(zip(fmt.historical_data_order, r)) for r in p["hd"]]
        data = dict(zip(fmt.data_order, p["d"]))
        out.append(
            build_request(
                serial,
                data=data,
                historical_data=rows,
                timestamp=p["ts"],
                request_count=p["rc"],
                data_format=fmt,
                auth_method="ra",
                key=KEY,
            )
        )
    return out


def post_all(port: int, reqs: list[BuiltRequest], lat: list[float]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for r in reqs:
        t = time.perf_counter()
        conn.request("POST", "/dd", r.body, {"Content-Type": r.content_type})
        resp = conn.getresponse()
        resp.read()
        lat.append(time.perf_counter() - t)
        if resp.status != 201:
            raise RuntimeError(f"HTTP {resp.status}")
    conn.close()


def client(port: int, reqs: list[BuiltRequest], go: Any, out: Any) -> None:
    """One device in its own process: wait for the start, post every body, report
    (start, end, latencies) on perf_counter, a clock all processes of this machine share."""
    lat: list[float] = []
    go.wait()
    t = time.perf_counter()
    post_all(port, reqs, lat)
    out.put((t, time.perf_counter(), lat))


def run_clients(port: int, per_client: list[list[BuiltRequest]]) -> tuple[list[float], float]:
    """All latencies and the wall time from the first client's start to the last one's end."""
    ctx = multiprocessing.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=client, args=(port, reqs, go, out)) for reqs in per_client]
    for p in procs:
        p.start()
    go.set()
    got = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        raise RuntimeError("a client failed")
    return [x for _, _, lat in got for x in lat], max(e for _, e, _ in got) - min(s for s, _, _ in got)


def row(name: str, lat: list[float], wall: float, ref: float | None, cpu: float) -> str:
    q = statistics.quantiles(lat, n=100)
    rate = len(lat) / wall
    ratio = f"{rate / ref:8.2f}" if ref else f"{'1.00':>8}"
    return (
        f"{name:58} {len(lat):5d} {rate:9.0f} {statistics.median(lat) * 1e3:8.2f} {q[98] * 1e3:8.2f}"
        f" {cpu / len(lat) * 1e3:8.3f} {ratio}"
    )


def _clients(k: int) -> str:
    return f"{k} client{'s' if k > 1 else ''}"


def _worker_app(path: Path, serials: list[str]) -> Any:
    """What each worker process builds: its own store connection, registry and app."""

    def make() -> tuple[Any, Any]:
        own = Store(path)
        return create_app(
            MetricsServerConfig(), own, DeviceRegistry([Device(s, KEY, STARTING_CODE) for s in serials], own)
        ), own.close

    return make


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds these processes have spent (Linux /proc)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of proc(5))
    return total / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400, help="requests per measurement")
    ap.add_argument(
        "--workers",
        type=int,
        nargs="*",
        default=[default_workers()] if available() else [],
        help="worker-process counts to measure (paygo-bench serve --workers; default the CPUs here; Linux)",
    )
    opts = ap.parse_args()
    n, workers = opts.n, [w for w in opts.workers if w > 1]
    t0 = int(time.time())
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "ingest.db")
        fid = store.add_data_format(session_format())
        serials = [f"BENCH{i}" for i in range(sum(CLIENTS) * (1 + len(workers)) + 1)]
        registry = DeviceRegistry([Device(s, KEY, STARTING_CODE) for s in serials], store)
        reqs = {s: bodies(s, n, fid, t0) for s in serials}
        lib_fmt = {**FORMAT_JSON, "id": fid}

        # in process: openpaygo (the reference) and the bench's codec, same bodies
        lat = []
        cpu = time.process_time()
        start_t = time.perf_counter()
        for r in reqs[serials[0]]:
            t = time.perf_counter()
            h = MetricsResponseHandler(r.body.decode(), data_format=lib_fmt, secret_key=KEY.reveal())
            assert h.is_auth_valid()
            h.get_simple_metrics()
            lat.append(time.perf_counter() - t)
        ref = n / (time.perf_counter() - start_t)
        cpu = time.process_time() - cpu
        lines.append(row("openpaygo MetricsResponseHandler parse+verify+expand", lat, n / ref, None, cpu))
        lat = []
        cpu = time.process_time()
        start_t = time.perf_counter()
        for r in reqs[serials[0]]:
            t = time.perf_counter()
            req = parse_body(r.body, r.content_type, formats=store.data_format, received_at=time.time())
            verify_request(req.signed, req.auth, KEY)
            req.to_simple()
            lat.append(time.perf_counter() - t)
        wall = time.perf_counter() - start_t
        lines.append(row("bench codec parse+verify+expand", lat, wall, ref, time.process_time() - cpu))

        server = start(create_app(MetricsServerConfig(), store, registry), threads=max(CLIENTS))
        first = 1
        try:
            for clients in CLIENTS:
                group = serials[first : first + clients]
                first += clients
                cpu = time.process_time()  # the server's threads (the clients are other processes)
                lat, wall = run_clients(server.port, [reqs[s] for s in group])
                cpu = time.process_time() - cpu
                lines.append(row(f"HTTP loopback, stored durably, {_clients(clients)}", lat, wall, ref, cpu))
        finally:
            server.stop()
            store.close()  # the workers are forked next: no SQLite connection may cross a fork
        for n_workers in workers:
            pool = start_workers(_worker_app(store.path, serials), workers=n_workers, threads=max(CLIENTS))
            try:
                for clients in CLIENTS:
                    group = serials[first : first + clients]
                    first += clients
                    cpu = _cpu_s(pool.pids)  # the workers' own (the clients are other processes)
                    lat, wall = run_clients(pool.port, [reqs[s] for s in group])
                    cpu = _cpu_s(pool.pids) - cpu
                    what = f"{n_workers} workers, {_clients(clients)}"
                    lines.append(row(f"HTTP loopback, stored durably, {what}", lat, wall, ref, cpu))
            finally:
                pool.stop()
        with Store(store.path) as again:
            stored = len(again.requests())
    print(f"{'path':58} {'n':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms':>8} {'x ref':>8}")
    print("\n".join(lines))
    print(
        f"\nrequest: the spec's hourly session, condensed JSON, ra-signed ({len(reqs[serials[0]][0].body)} bytes); "
        f"{stored} rows stored; SipHash: {SIPHASH_IMPL}; each client its own process"
    )


if __name__ == "__main__":
    main()
