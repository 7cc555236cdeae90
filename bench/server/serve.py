"""Run the Metrics app on a real server, in a background thread, and stop it cleanly.

HTTP runs on waitress: a production WSGI server, pure Python, the same on Linux and Windows.
waitress has no TLS, so HTTPS runs on werkzeug's threaded server with an `ssl.SSLContext` held to
the spec's list (TLS 1.2+, ciphers EECDH+AESGCM, EDH+AESGCM, EECDH+AES256, EDH+AES256; TLS 1.1
is in the spec but refused by current OpenSSL builds). Both are what `paygo-bench serve` and the
`metrics_server` fixture use, so tests run the path a lab runs.

waitress holds a request's body until it has all of it, before the app sees it, so its own limits
are set to the server's: a request whose headers or declared body are over them is refused as
they arrive, unread (waitress's defaults would buffer 1 GB first). Those refusals, and what either
front cannot read as HTTP, are answered in the server's JSON and kept in its refusal audit
(bench/server/front.py; docs/server.md "Status codes")."""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

from bench.openpaygo.metrics.wire import MAX_BODY_BYTES
from bench.server.config import MAX_HEADER_BYTES
from bench.server.front import waitress_channel, werkzeug_handler

SPEC_CIPHERS = "EECDH+AESGCM:EDH+AESGCM:EECDH+AES256:EDH+AES256"
STOP_TIMEOUT_S = 10.0
CONNECTION_LIMIT = 100  # open connections; more wait in the listen backlog
IDLE_TIMEOUT_S = 120  # a connection that sends nothing for this long is closed


def tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(SPEC_CIPHERS)
    ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


def _host_in_url(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: only this machine can connect. A name other than localhost
    counts as reachable (what it resolves to can change)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class RunningServer:
    """A server answering in a background thread. `url` is scheme://host:port, `base_url` adds
    the base path (what a device is configured with)."""

    scheme: str
    host: str
    port: int
    base_path: str
    _stop: Callable[[], None] = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _stopped: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{_host_in_url(self.host)}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + self.base_path.rstrip("/")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop accepting, finish what is running, and return once the thread has ended."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"the server thread did not stop within {timeout} s")

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C in the CLI)."""
        while self._thread.is_alive():
            self._thread.join(0.5)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    base_path: str = "/",
    cert_file: Path | None = None,
    key_file: Path | None = None,
    threads: int = 4,
    max_header_bytes: int = MAX_HEADER_BYTES,
    sock: socket.socket | None = None,
) -> RunningServer:
    """Serve `app` on host:port (0 = an ephemeral port) until `stop()`, in this process. The body
    limit is the app's own (Flask's MAX_CONTENT_LENGTH), so waitress refuses unread what the app
    would refuse. `sock`: a listening socket to serve on instead of binding host:port (a worker
    process's share of `paygo-bench serve --workers N`, bench/server/workers.py, which serves
    several processes: each needs its own app, so that is `workers.start_workers`, not this)."""
    if cert_file is not None and key_file is not None:
        return _start_tls(app, host, port, base_path, tls_context(cert_file, key_file))
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" chatter
    where: dict[str, Any] = {"sockets": [sock]} if sock is not None else {"host": host, "port": port}
    server = create_server(
        app,
        **where,
        threads=threads,
        clear_untrusted_proxy_headers=True,
        ident="paygo-bench",
        asyncore_loop_timeout=1,
        # waitress refuses a size at or above its limit; the server's limits are the largest allowed
        max_request_body_size=body_limit(app) + 1,
        max_request_header_size=max_header_bytes + 1,
        connection_limit=CONNECTION_LIMIT,
        channel_timeout=IDLE_TIMEOUT_S,
    )
    if not hasattr(server, "effective_port"):  # several listening sockets (a name with v4 and v6)
        server.close()
        raise ValueError(f"serve on one address: {host!r} resolves to several; give 127.0.0.1 or ::1")
    server.channel_class = waitress_channel(app)  # refusals in JSON, kept in the audit (front.py)
    bound_port = server.effective_port
    thread = threading.Thread(target=server.run, name=f"metrics-server-{bound_port}", daemon=True)
    thread.start()

    def stop() -> None:
        # close the sockets on the loop's own thread (wasyncore is not thread-safe), then end the workers
        try:
            server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        except OSError:
            # the wake-up pipe was closed under us (someone else closing a recycled descriptor
            # number): close from here; the loop then ends on its next poll
            wasyncore.close_all(server._map, ignore_all=True)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while thread.is_alive() and time.monotonic() < deadline:
            thread.join(0.05)
        server.task_dispatcher.shutdown()

    return RunningServer("http", host, bound_port, base_path, stop, thread)


def body_limit(app: Any) -> int:
    """The largest body `app` takes: its Flask MAX_CONTENT_LENGTH, else the spec's 4096 KB."""
    limit = getattr(app, "config", {}).get("MAX_CONTENT_LENGTH")
    return limit if isinstance(limit, int) and limit > 0 else MAX_BODY_BYTES


def _start_tls(app: Any, host: str, port: int, base_path: str, ctx: ssl.SSLContext) -> RunningServer:
    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=True, ssl_context=ctx, request_handler=werkzeug_handler(app))
    server.daemon_threads = True  # type: ignore[attr-defined]  # threaded=True: a ThreadingMixIn server
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.1},
        name=f"metrics-server-tls-{server.port}",
        daemon=True,
    )
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return RunningServer("https", host, server.port, base_path, stop, thread)
