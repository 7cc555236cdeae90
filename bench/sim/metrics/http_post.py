"""The device's modem in direct mode: one HTTP(S) POST of a request to <base URL>/dd, and what
came back or what went wrong, as one word (the events' failure reasons)."""

from __future__ import annotations

import http.client
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

MAX_REPLY_BYTES = 65536
HTTP_OK = (200, 201)
USER_AGENT = "PAYGO-SIM-metrics/1"


@dataclass(frozen=True)
class HttpResult:
    seq: int
    status: int | None = None
    content_type: str | None = None
    body: bytes = b""
    error: str | None = None  # refused | timeout | dropped | tls | network


def post(
    url: str,
    body: bytes,
    content_type: str,
    timeout_s: float,
    *,
    tls: ssl.SSLContext | None = None,
    headers: Mapping[str, str] | None = None,
) -> HttpResult:
    """POST body to <url>/dd; the answer, or what went wrong as one word. HTTPS verifies the
    server with `tls` (default: the system's CAs); `headers` adds e.g. Authorization."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/") + "/dd"
    host = parts.hostname or ""  # a URL without a host fails to connect, as a device's would
    try:
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, parts.port, timeout=timeout_s, context=tls or ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(host, parts.port, timeout=timeout_s)
        try:
            conn.request(
                "POST",
                path,
                body=body,
                headers={
                    **(headers or {}),
                    "Content-Type": content_type,
                    "Connection": "close",
                    "User-Agent": USER_AGENT,
                },
            )
            resp = conn.getresponse()
            data = resp.read(MAX_REPLY_BYTES)
            return HttpResult(0, resp.status, resp.getheader("Content-Type"), data)
        finally:
            conn.close()
    except ConnectionRefusedError:
        return HttpResult(0, error="refused")
    except TimeoutError:  # socket.timeout is TimeoutError
        return HttpResult(0, error="timeout")
    except (
        http.client.RemoteDisconnected,
        http.client.IncompleteRead,
        http.client.BadStatusLine,
        ConnectionResetError,
        ConnectionAbortedError,
        BrokenPipeError,
    ):
        return HttpResult(0, error="dropped")
    except ssl.SSLError:
        return HttpResult(0, error="tls")
    except (OSError, http.client.HTTPException, ValueError):
        return HttpResult(0, error="network")
