"""JWT access tokens: issued by accounts, verified by the gateway and the services.

HS256 with a shared secret (``REDLINE_JWT_SECRET``). Verification pins the
algorithm (so ``alg: none`` and algorithm-confusion tokens fail), and requires
``exp``, ``iat``, ``sub``, ``iss`` and ``aud``. Every failure is the same 401
to the client; the reason goes to the log only.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from litestar.connection import ASGIConnection

from services.chassis.errors import ProblemError
from telemetry import get_logger

ALGORITHM = "HS256"
ISSUER = "redline-accounts"
AUDIENCE = "redline"
# A development default so the platform starts with no configuration. Outside
# development (REDLINE_ENVIRONMENT) a service that signs or verifies tokens
# refuses to start without a secret of its own (services/chassis/config.py).
DEV_SECRET = "redline-dev-secret-change-me-0123456789abcdef"  # noqa: S105

_log = get_logger("auth")


def jwt_secret() -> str:
    return os.environ.get("REDLINE_JWT_SECRET") or DEV_SECRET


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    email: str


class Unauthorized(ProblemError):
    status = 401
    type_slug = "unauthorized"

    def __init__(self, detail: str = "A valid bearer token is required.") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="redline"'})


def issue_token(user_id: uuid.UUID, email: str, *, ttl_seconds: int, secret: str) -> str:
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "email": email,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


# Tokens verified already, by their exact text and the secret: the gateway and
# orders both verify the same token for every order, and PyJWT's decode
# (base64, JSON, the claim checks) costs tens of µs where a lookup costs one.
# A hit skips only the signature (the same bytes passed it); the times are
# checked again at every use, as PyJWT checks them. Bounded by starting over.
_VERIFIED: dict[tuple[str, str], tuple[Principal, float, float]] = {}
_VERIFIED_MAX = 10_000


def verify_token(token: str, *, secret: str, leeway_seconds: int = 5) -> Principal:
    known = _VERIFIED.get((token, secret))
    if known is not None:
        principal, valid_from, expires = known
        now = time.time()
        if valid_from <= now + leeway_seconds and now < expires + leeway_seconds:
            return principal
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=leeway_seconds,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
        principal = Principal(user_id=uuid.UUID(claims["sub"]), email=str(claims.get("email", "")))
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()
        # Valid from its nbf or iat (whichever is later) until exp, as PyJWT judges them.
        valid_from = max(float(claims["iat"]), float(claims.get("nbf", claims["iat"])))
        _VERIFIED[(token, secret)] = (principal, valid_from, float(claims["exp"]))
        return principal
    except (jwt.PyJWTError, ValueError, KeyError) as exc:
        _log.info("token rejected", reason=type(exc).__name__)
        raise Unauthorized() from None


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized()
    return token.strip()


def current_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """Litestar dependency: the caller, from the forwarded bearer token."""
    return verify_token(bearer_token(connection), secret=jwt_secret())
