"""What the simulated build's modem was provisioned with for direct mode, besides the base URL:
the CA its HTTPS client trusts and the secret it signs an `Authorization: JWT` header with.

A real device's firmware has both compiled in or written at the factory, never sent over its
UART; the virtual rig's build takes them from the rig's [sim] section (docs/rig.md). HTTPS is
always verified: with no CA of its own the build trusts the system's store, as a modem trusts its
bundled roots; nothing turns verification off."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from bench.secret import Secret

AUTH_SCHEME = "JWT"  # the header the bench's server checks (bench/server/jwt_auth.py)


@dataclass(frozen=True)
class Uplink:
    ca_file: str = ""  # PEM: the CA (or the pinned server certificate) the build trusts; "": the system's
    jwt_secret: Secret | None = None  # HS256 secret; None: no Authorization header

    def __post_init__(self) -> None:
        if self.ca_file and not Path(self.ca_file).is_file():
            raise ValueError(f"metrics_ca_file: {self.ca_file} is not a file")
        if self.ca_file:
            self.tls_context  # noqa: B018 - a CA file that does not load fails at build time

    @cached_property
    def tls_context(self) -> ssl.SSLContext:
        """Verifies the server's certificate chain and host name; a leaf given as the CA is pinned."""
        ctx = ssl.create_default_context(cafile=self.ca_file or None)
        if self.ca_file:
            ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        return ctx

    def headers(self, serial: str) -> dict[str, str]:
        """The Authorization header for one request (none without a secret): an HS256 token naming
        the device. No time claims: the device's RTC is the one under test and may be set anywhere."""
        if self.jwt_secret is None:
            return {}
        import jwt  # here: a build without a JWT secret (most) starts without loading it, 0.1 s

        token = jwt.encode({"sub": serial}, self.jwt_secret.reveal(), algorithm="HS256")
        return {"Authorization": f"{AUTH_SCHEME} {token}"}


def read_jwt_secret(file: str = "", env_value: str | None = None) -> Secret | None:
    """The build's JWT secret from a file (its first line) or an environment value; None if neither."""
    if file:
        text = Path(file).read_text(encoding="utf-8").strip()
    elif env_value is not None:
        text = env_value.strip()
    else:
        return None
    if not text:
        raise ValueError("the Metrics JWT secret is empty")
    return Secret(text, "sim.metrics_jwt_secret")
