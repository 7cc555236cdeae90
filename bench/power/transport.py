"""The VISA session's transport, below the driver: Nagle off on raw sockets, whether the PSU closed
the connection, and reading off a reply nobody is waiting for any more.

A LAN PSU drops its socket when it reboots, when a switch port flaps or when a second client takes
its only connection. pyvisa-py then answers the next query with a timeout (its read loop sees
"readable" with no bytes until the deadline) and the next write or two with an OS error, so the
driver asks the socket itself what happened before it reconnects.
"""

from __future__ import annotations

import logging
import select
import socket
import time

import pyvisa.errors
from pyvisa import constants
from pyvisa.constants import ResourceAttribute

log = logging.getLogger("bench.power")

DRAIN_WAIT_S = 0.05  # a reply still on its way after an interrupted query arrives within this
DRAIN_MAX_S = 0.5


def socket_of(inst: object) -> socket.socket | None:
    """The raw socket under a pyvisa-py SOCKET session, or None (another backend, a replay)."""
    try:
        session = inst.visalib.sessions[inst.session]  # type: ignore[attr-defined]
        sock = session.interface
    except Exception:  # noqa: BLE001 - not a pyvisa-py socket session: nothing to look at
        return None
    return sock if isinstance(sock, socket.socket) else None


def disable_nagle(inst: object, resource: str) -> None:
    """Set TCP_NODELAY on a raw-socket session, as NI-VISA does by default.

    With Nagle on, a channel-select write followed by a query waits for the instrument's delayed
    ACK (~40 ms on Linux), which skews off-voltage polling; some LAN firmwares also choke on the
    coalesced segments. pyvisa-py 0.8 leaves Nagle on and its VI_ATTR_TCPIP_NODELAY setter raises
    UnknownAttribute, so fall back to the session's socket (pyvisa-py internals, guarded).
    """
    try:
        inst.set_visa_attribute(  # type: ignore[attr-defined]
            ResourceAttribute.tcpip_nodelay, constants.VI_TRUE
        )
        return
    except Exception:  # noqa: BLE001 - backend-specific: UnknownAttribute, VisaIOError, ...
        pass
    sock = socket_of(inst)
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return
        except OSError:
            pass
    log.debug("PSU %s: could not disable Nagle; commands may be delayed", resource)


def peer_closed(inst: object) -> str | None:
    """Why the connection is gone if the PSU closed or reset it (never blocks); None while it
    looks alive, or when there is no socket to ask."""
    sock = socket_of(inst)
    if sock is None:
        return None
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return None
        if sock.recv(1, socket.MSG_PEEK) == b"":
            return "the PSU closed the connection"
    except (OSError, ValueError) as exc:  # reset, refused, or the socket already closed here
        return f"the connection failed: {exc}"
    return None  # bytes waiting: a reply nobody read, not a closed connection


def connection_lost(inst: object, exc: BaseException) -> str | None:
    """Why `exc` means the connection is gone (so a reconnect may help), or None for a failure on
    a live connection (a timeout, a refused command: reconnecting would hide it)."""
    if isinstance(exc, (ConnectionError, EOFError)):
        return f"the connection failed: {exc}"
    if isinstance(exc, pyvisa.errors.VisaIOError) and exc.error_code == constants.StatusCode.error_connection_lost:
        return f"the connection was lost: {exc}"
    return peer_closed(inst)


def drain(inst: object) -> None:
    """Read off what a query cut short left behind (its reply, still coming), so the next query
    reads its own reply, not the previous one's."""
    sock = socket_of(inst)
    if sock is None:
        clear = getattr(inst, "clear", None)  # VISA device clear, where the backend has one
        if callable(clear):
            try:
                clear()
            except Exception as exc:  # noqa: BLE001 - best effort: the next reply is still parsed
                log.debug("device clear failed: %s", exc)
        return
    try:
        inst.visalib.sessions[inst.session]._pending_buffer.clear()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - pyvisa-py internals moved: the socket is drained below anyway
        pass
    deadline = time.monotonic() + DRAIN_MAX_S
    while time.monotonic() < deadline:
        try:
            readable, _, _ = select.select([sock], [], [], DRAIN_WAIT_S)
            if not readable or not sock.recv(4096):
                return
        except (OSError, ValueError):
            return
