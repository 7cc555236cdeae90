"""How one Metrics server runs: base path, authentication policy, JWT secret, TLS files.

The policy says which authentication a device-data POST must carry:
- "payload": a valid `a` signature from a device in the registry (the spec's default);
- "jwt": a valid `Authorization: JWT <token>` (the v0.11 way; manual tests);
- "either": one of the two;
- "none": nothing (capturing a device that cannot sign yet).
Whatever the policy, a credential that IS present must be valid. With a JWT secret set, the
admin routes (POST /data_format, GET /device_data) need a JWT too."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bench.openpaygo.metrics.wire import MAX_BODY_BYTES
from bench.secret import Secret
from bench.server.store import DEFAULT_REFUSAL_QUOTA, RefusalQuota

AUTH_POLICIES = ("payload", "jwt", "either", "none")
MIN_JWT_SECRET_BYTES = 32  # HS256 needs a 256-bit secret (RFC 7518, section 3.2)
# The request line and headers together: a Metrics request needs well under 2 KB (Host,
# Content-Type, Content-Length, a JWT); 16 KB leaves room for a proxy's additions.
MAX_HEADER_BYTES = 16 * 1024
_BASE_PATH = re.compile(r"/([A-Za-z0-9._~-]+/?)*")


@dataclass(frozen=True)
class MetricsServerConfig:
    base_path: str = "/"
    auth: str = "payload"
    jwt_secret: Secret | None = None
    jwt_leeway_s: float = 30.0  # clock skew allowed on exp/nbf/iat
    announce_base_url: str | None = None  # sent as settings.base_url in every reply (server migration)
    tokens_as_strings: bool = False  # tkl items as "048662027" instead of 48662027
    max_body_bytes: int = MAX_BODY_BYTES
    cert_file: Path | None = None
    key_file: Path | None = None
    refusal_quota: RefusalQuota = DEFAULT_REFUSAL_QUOTA  # what is kept of refused requests (store.py)

    def __post_init__(self) -> None:
        if not _BASE_PATH.fullmatch(self.base_path):
            raise ValueError(
                f"base_path {self.base_path!r} must be a URL path starting with / (letters, digits, . _ ~ -)"
            )
        if self.auth not in AUTH_POLICIES:
            raise ValueError(f"auth policy {self.auth!r} is not one of {', '.join(AUTH_POLICIES)}")
        if self.auth in ("jwt", "either") and self.jwt_secret is None:
            raise ValueError(f"auth policy {self.auth!r} needs a JWT secret")
        if self.jwt_secret is not None and len(self.jwt_secret.reveal().encode()) < MIN_JWT_SECRET_BYTES:
            raise ValueError(f"the JWT secret must be at least {MIN_JWT_SECRET_BYTES} bytes (HS256)")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("HTTPS needs both a certificate and a key file")
        if not 1 <= self.max_body_bytes <= MAX_BODY_BYTES:
            raise ValueError(f"max_body_bytes must be 1..{MAX_BODY_BYTES}")

    @property
    def prefix(self) -> str:
        """The base path as a route prefix: "" for "/", "/metrics" for "/metrics/"."""
        return self.base_path.rstrip("/")

    @property
    def tls(self) -> bool:
        return self.cert_file is not None

    def secrets(self) -> tuple[Secret, ...]:
        return (self.jwt_secret,) if self.jwt_secret is not None else ()
