"""Several server processes on one listening socket: `paygo-bench serve --workers N`.

Why: one interpreter runs one thread of Python at a time, and a stored device-data POST is
CPU-bound (parse, verify, plan, encode, SQLite), so one server process tops out at one core.
Each worker is a process of its own: its own waitress, app and Store connection on the same
SQLite file, and each keeps the device state it last committed (the store's compare-and-set
makes a plan made on a stale one plan again: bench/server/app.py). SQLite serialises their
writes on the file's lock (busy timeout, then 503 storage_unavailable: store.BUSY_TIMEOUT_S).

The listening socket is bound once, before forking, and inherited: the kernel gives each new
connection to whichever worker accepts it first, so an idle worker takes the next device (with
SO_REUSEPORT the kernel would hash connections to workers whatever their load, and a dying
worker would take the connections queued on its own socket with it). Forking needs a parent
with no threads and no open SQLite connection (SQLite's rule: a connection never crosses a
fork), so the caller closes its store first. Linux only: Windows has no fork (and waitress no
shared socket there), so elsewhere the server runs as one process (`resolve`).

A worker that ends on its own (killed, out of memory; the app itself answers every input) stops
the server with one line naming it: restarting it would hide a bench fault from the lab, and a
device whose request went unanswered sends it again (docs/server.md "Workers")."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.server.serve import STOP_TIMEOUT_S, _host_in_url, start

MAX_DEFAULT_WORKERS = 8  # beyond a few writers, processes only queue on SQLite's one write lock
BACKLOG = 1024  # connections the kernel queues for the workers to accept

# What a worker builds in its own process: the WSGI app, and what closes its store.
AppFactory = Callable[[], tuple[Any, Callable[[], None]]]


def available() -> bool:
    """Whether several worker processes can share a socket here (fork: Linux)."""
    return sys.platform.startswith("linux")


def default_workers() -> int:
    """The CPUs this process may run on, at most MAX_DEFAULT_WORKERS (what the benchmark tries)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_DEFAULT_WORKERS))


def resolve(requested: int | None, *, tls: bool) -> tuple[int, str | None]:
    """How many processes serve, and why not the number asked (None: as asked). Not asked: one
    (workers help many devices reporting at once, not one: docs/server.md "Workers"). HTTPS runs on
    werkzeug in one process; a system without fork runs one process."""
    n = 1 if requested is None else requested
    if n < 1:
        raise ValueError("--workers must be at least 1")
    if n > 1 and tls:
        return 1, "HTTPS (werkzeug) is served by one process"
    if n > 1 and not available():
        return 1, f"several worker processes need fork (Linux); {sys.platform} runs one"
    return n, None


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port and listening, for the workers to inherit."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(addr)
    sock.listen(BACKLOG)
    return sock


@dataclass
class WorkerPool:
    """Worker processes answering on one socket. `wait()` returns when one ends on its own."""

    host: str
    port: int
    base_path: str
    processes: list[Any]
    _sock: socket.socket = field(repr=False)
    _stopping: bool = False

    @property
    def url(self) -> str:
        return f"http://{_host_in_url(self.host)}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + self.base_path.rstrip("/")

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def wait(self, timeout: float | None = None) -> str | None:
        """Block until a worker ends (its one-line account) or `timeout` passes (None). Wakes
        every half second, so the caller's signal handlers run."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while deadline is None or time.monotonic() < deadline:
            left = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            multiprocessing.connection.wait([p.sentinel for p in self.processes], left)
            for i, p in enumerate(self.processes, 1):
                if p.exitcode is not None:
                    how = f"signal {-p.exitcode}" if p.exitcode < 0 else f"exit status {p.exitcode}"
                    return f"worker {i} of {len(self.processes)} (pid {p.pid}) ended ({how})"
        return None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM every worker (each finishes what it is answering, closes its store, exits),
        then wait; one still running at the deadline is killed."""
        self._stopping = True
        for p in self.processes:
            if p.exitcode is None:
                os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.processes:
            p.join(max(0.0, deadline - time.monotonic()))
        stuck = [p for p in self.processes if p.exitcode is None]
        for p in stuck:
            p.kill()
            p.join(1)
        self._sock.close()
        if stuck:
            raise RuntimeError(f"{len(stuck)} worker(s) did not stop within {timeout} s and were killed")


def start_workers(
    make_app: AppFactory,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    workers: int,
    base_path: str = "/",
    threads: int = 4,
) -> WorkerPool:
    """Bind host:port, then fork `workers` processes, each running `make_app()` on waitress with
    `threads` threads on the shared socket. Call it from a process with no other thread and no
    open SQLite connection (they would be copied into every worker half-held)."""
    if not available():
        raise RuntimeError("worker processes need fork (Linux); serve in one process with serve.start")
    sock = listening_socket(host, port)
    ctx = multiprocessing.get_context("fork")
    parent = os.getpid()
    procs = []
    try:
        for i in range(workers):
            p = ctx.Process(target=_worker, args=(make_app, sock, threads, parent), name=f"metrics-worker-{i + 1}")
            p.start()
            procs.append(p)
    except BaseException:
        WorkerPool(host, 0, base_path, procs, sock).stop()
        raise
    return WorkerPool(host, sock.getsockname()[1], base_path, procs, sock)


def _worker(make_app: AppFactory, sock: socket.socket, threads: int, parent: int) -> None:
    """One worker process: serve until SIGTERM or SIGINT (Ctrl-C reaches the whole process
    group) or the parent is gone, then stop cleanly: every request in hand answered and
    committed, the store closed."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    app, close = make_app()
    server = start(app, threads=threads, sock=sock)
    try:
        while not stop.wait(0.5):
            if os.getppid() != parent:  # the parent was killed: no one would ever stop this worker
                break
    finally:
        server.stop()
        close()
