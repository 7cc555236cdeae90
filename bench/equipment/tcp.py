"""The TCP side of the bench's equipment: ending a connection the way a fault needs (a reset or a
clean close), writing all of a message, and whether a socket has something to read."""

from __future__ import annotations

import select
import socket
import struct


def reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER on, 0 s)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def close(sock: socket.socket) -> None:
    """Close with a FIN, the data already written going out first."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    sock.close()


def send_all(sock: socket.socket, data: bytes) -> tuple[int, bool]:
    """Write data; (bytes written, all of them)."""
    view = memoryview(data)
    sent = 0
    try:
        while sent < len(data):
            n = sock.send(view[sent:])
            if n <= 0:
                break
            sent += n
    except OSError:
        return sent, False
    return sent, sent == len(data)


def readable(sock: socket.socket) -> bool:
    """Something to read now (or the socket is closed or broken): never blocks."""
    try:
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


def host_in_url(host: str) -> str:
    """A host as a URL writes it (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host
