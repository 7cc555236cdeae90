"""The simulated PSU on the network: SCPI over raw TCP (what a LAN PSU offers on port 5025),
one LF-terminated line in, one reply line out for lines with queries, every connection closed
when the server is."""

from __future__ import annotations

import logging
import socket
import socketserver
import threading

from bench.sim.psu.instrument import Instrument
from bench.sim.psu.scpi import ScpiError
from bench.sim.psu.supply import SimulatedSupply

log = logging.getLogger("bench.sim.psu")

MAX_LINE = 4096


class _Handler(socketserver.StreamRequestHandler):
    """One client connection: LF-terminated lines in, one reply line per line with queries."""

    server: _TcpServer

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.request, True)

    def finish(self) -> None:
        self.server.track(self.request, False)
        try:
            super().finish()
        except OSError:
            pass

    def handle(self) -> None:
        inst = self.server.instrument
        while True:
            try:
                raw = self.rfile.readline(MAX_LINE + 1)
            except OSError:
                return  # client vanished or server closing
            if not raw:
                return
            if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                inst.push_error(ScpiError(-223, "Too much data"))
                self._discard_rest_of_line()
                continue
            line = raw.decode("ascii", errors="replace").strip("\r\n\x00 ")
            reply = inst.execute_line(line)
            if reply is None:
                continue
            try:
                self.wfile.write(reply.encode("ascii", errors="replace") + b"\n")
                self.wfile.flush()
            except OSError:
                return

    def _discard_rest_of_line(self) -> None:
        while True:
            try:
                chunk = self.rfile.readline(MAX_LINE)
            except OSError:
                return
            if not chunk or chunk.endswith(b"\n"):
                return


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], instrument: Instrument):
        self.instrument = instrument
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, sock: socket.socket, alive: bool) -> None:
        with self._clients_lock:
            (self._clients.add if alive else self._clients.discard)(sock)

    def drop_clients(self) -> None:
        with self._clients_lock:
            clients, self._clients = list(self._clients), set()
        for sock in clients:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        log.exception("simulated PSU: error serving %s", client_address)


class ScpiServer:
    """Keysight-style SCPI over raw TCP for a SimulatedSupply (what a LAN PSU offers on 5025)."""

    def __init__(
        self,
        supply: SimulatedSupply,
        host: str = "127.0.0.1",
        port: int = 0,
        idn: str = "PAYGO-BENCH,SIM-PSU3,0001,1.0",
    ) -> None:
        self.supply = supply
        self.instrument = Instrument(supply, idn)
        self._server = _TcpServer((host, port), self.instrument)
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def visa_resource(self) -> str:
        return f"TCPIP0::{self.host}::{self.port}::SOCKET"

    def start(self) -> ScpiServer:
        """Serve in a background daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"sim-psu:{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop accepting, drop every open connection (clients see the link go), free the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=2.0)
            self._thread = None
        self._server.drop_clients()
        self._server.server_close()

    def __enter__(self) -> ScpiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
