"""How fast the Metrics server ingests the spec's hourly session, as a printed table.

Why it exists: a bench server must never be the bottleneck of a test, and it commits every
request durably (SQLite WAL, synchronous=FULL) before answering. This posts signed (ra) condensed
sessions to the real server on loopback (waitress, keep-alive connections), one client and four
in parallel, and sets beside it, in the same run on the same request bodies, the in-process cost
of parsing and verifying them: with the bench's codec, and with openpaygo's MetricsResponseHandler
(parse + is_auth_valid + get_simple_metrics), the reference a server would otherwise use.

    python benchmarks/metrics_ingest.py [--n 400]
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from metrics_session import FORMAT_JSON, KEY, STARTING_CODE, session_format, session_request  # noqa: E402
from openpaygo import MetricsResponseHandler  # noqa: E402

from bench.openpaygo.metrics.auth import verify_request  # noqa: E402
from bench.openpaygo.metrics.codec import parse_body  # noqa: E402
from bench.openpaygo.metrics.condense import BuiltRequest, build_request  # noqa: E402
from bench.server.app import create_app  # noqa: E402
from bench.server.config import MetricsServerConfig  # noqa: E402
from bench.server.devices import Device, DeviceRegistry  # noqa: E402
from bench.server.serve import start  # noqa: E402
from bench.server.store import Store  # noqa: E402

CLIENTS = 4


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


def row(name: str, lat: list[float], wall: float, ref: float | None) -> str:
    q = statistics.quantiles(lat, n=100)
    rate = len(lat) / wall
    ratio = f"{rate / ref:8.2f}" if ref else f"{'1.00':>8}"
    return f"{name:58} {len(lat):5d} {rate:9.0f} {statistics.median(lat) * 1e3:8.2f} {q[98] * 1e3:8.2f} {ratio}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400, help="requests per measurement")
    n = ap.parse_args().n
    t0 = int(time.time())
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "ingest.db")
        fid = store.add_data_format(session_format())
        serials = [f"BENCH{i}" for i in range(CLIENTS + 1)]
        registry = DeviceRegistry([Device(s, KEY, STARTING_CODE) for s in serials], store)
        reqs = {s: bodies(s, n, fid, t0) for s in serials}
        lib_fmt = {**FORMAT_JSON, "id": fid}

        # in process: openpaygo (the reference) and the bench's codec, same bodies
        lat = []
        start_t = time.perf_counter()
        for r in reqs[serials[0]]:
            t = time.perf_counter()
            h = MetricsResponseHandler(r.body.decode(), data_format=lib_fmt, secret_key=KEY.reveal())
            assert h.is_auth_valid()
            h.get_simple_metrics()
            lat.append(time.perf_counter() - t)
        ref = n / (time.perf_counter() - start_t)
        lines.append(row("openpaygo MetricsResponseHandler parse+verify+expand", lat, n / ref, None))
        lat = []
        start_t = time.perf_counter()
        for r in reqs[serials[0]]:
            t = time.perf_counter()
            req = parse_body(r.body, r.content_type, formats=store.data_format, received_at=time.time())
            verify_request(req.signed, req.auth, KEY)
            req.to_simple()
            lat.append(time.perf_counter() - t)
        lines.append(row("bench codec parse+verify+expand", lat, time.perf_counter() - start_t, ref))

        server = start(create_app(MetricsServerConfig(), store, registry), threads=CLIENTS)
        try:
            lat = []
            start_t = time.perf_counter()
            post_all(server.port, reqs[serials[0]], lat)
            lines.append(row("HTTP loopback, stored durably, 1 client", lat, time.perf_counter() - start_t, ref))
            lats: list[list[float]] = [[] for _ in range(CLIENTS)]
            threads = [
                threading.Thread(target=post_all, args=(server.port, reqs[s], lats[i]))
                for i, s in enumerate(serials[1:])
            ]
            start_t = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            lines.append(
                row(
                    f"HTTP loopback, stored durably, {CLIENTS} clients",
                    sum(lats, []),
                    time.perf_counter() - start_t,
                    ref,
                )
            )
        finally:
            server.stop()
            stored = len(store.requests())
            store.close()
    print(f"{'path':58} {'n':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'x ref':>8}")
    print("\n".join(lines))
    print(
        f"\nrequest: the spec's hourly session, condensed JSON, ra-signed ({len(reqs[serials[0]][0].body)} bytes); "
        f"{stored} rows stored"
    )


if __name__ == "__main__":
    main()
