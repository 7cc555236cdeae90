"""`Authorization: JWT <token>` (Metrics v0.11 B; an alternative in v1.0): HS256 with the
server's secret, nothing else. pyjwt refuses `alg: none` and any algorithm not listed, checks
exp/nbf/iat when present (with a small leeway for device clocks); every failure is a 403 that
says why without echoing the token."""

from __future__ import annotations

from typing import Any

import jwt

from bench.openpaygo.metrics.errors import MetricsError
from bench.secret import Secret

SCHEME = "JWT"


def check_jwt(header: str | None, secret: Secret, leeway_s: float = 30.0) -> dict[str, Any]:
    """The token's claims, or MetricsError auth_missing / jwt_invalid."""
    if header is None or not header.strip():
        raise MetricsError("auth_missing", "no Authorization header; expected 'JWT <token>'", "Authorization")
    scheme, _, token = header.strip().partition(" ")
    if scheme.upper() != SCHEME or not token.strip():
        raise MetricsError("jwt_invalid", "the Authorization header must be 'JWT <token>'", "Authorization")
    try:
        claims = jwt.decode(token.strip(), secret.reveal(), algorithms=["HS256"], leeway=leeway_s)
    except jwt.ExpiredSignatureError:
        raise MetricsError("jwt_invalid", "the JWT has expired (exp)", "Authorization") from None
    except jwt.ImmatureSignatureError:
        raise MetricsError("jwt_invalid", "the JWT is not valid yet (nbf/iat)", "Authorization") from None
    except jwt.InvalidAlgorithmError:
        raise MetricsError("jwt_invalid", "the JWT is not signed with HS256", "Authorization") from None
    except jwt.InvalidSignatureError:
        raise MetricsError("jwt_invalid", "the JWT signature does not verify", "Authorization") from None
    except jwt.InvalidTokenError as e:
        raise MetricsError("jwt_invalid", f"the JWT is malformed ({type(e).__name__})", "Authorization") from None
    if not isinstance(claims, dict):  # pragma: no cover - pyjwt always returns a dict
        raise MetricsError("jwt_invalid", "the JWT payload is not an object", "Authorization")
    return claims


def make_jwt(secret: Secret, claims: dict[str, Any] | None = None) -> str:
    """An HS256 token for this server (tests, and the lab handing one to a device)."""
    return jwt.encode(claims or {}, secret.reveal(), algorithm="HS256")
