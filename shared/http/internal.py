"""Service-to-service calls: short-lived tokens that name the calling service.

A service token is an HS256 JWT signed with the shared ``JWT_SECRET`` like a
principal's, but it says ``knd: "service"`` and ``aud: "internal"`` and has no
session. The two kinds never pass for each other: ``shared.access.control.verify_token``
accepts only staff and client tokens (and no audience), ``require_service``
only service tokens for the internal audience. Internal endpoints are for other
services of the back office, never for people.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import jwt
import structlog
from fastapi import Request

from shared.access.control import ALGORITHM, TokenError
from shared.http.api import ApiError, bearer_token

AUDIENCE = "internal"
SERVICE_KIND = "service"


def issue_service_token(
    secret: str,
    service: str,
    lifetime: timedelta = timedelta(minutes=5),
    *,
    now: datetime | None = None,
) -> str:
    """A token with which ``service`` calls another service's internal API."""
    issued = now or datetime.now(UTC)
    claims = {
        "sub": service,
        "knd": SERVICE_KIND,
        "aud": AUDIENCE,
        "iat": int(issued.timestamp()),
        "exp": int((issued + lifetime).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_service_token(secret: str, token: str) -> str:
    """The calling service's name, or ``TokenError``."""
    try:
        raw = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["sub", "exp", "aud"]},
        )
    except jwt.PyJWTError as exc:
        raise TokenError(type(exc).__name__) from None
    if raw.get("knd") != SERVICE_KIND or not raw.get("sub"):
        raise TokenError("not a service token")
    return str(raw["sub"])


def require_service() -> Callable[[Request], Awaitable[str]]:
    """Dependency of internal endpoints: the calling service's name, or 401."""

    async def calling_service(request: Request) -> str:
        token = bearer_token(request)
        secret = request.app.state.runtime.settings.jwt_secret.get_secret_value()
        try:
            if token is None:
                raise TokenError("no token")
            service = verify_service_token(secret, token)
        except TokenError:
            raise ApiError(
                401,
                "invalid_service_token",
                "a valid service token is required",
                headers={"WWW-Authenticate": "Bearer"},
            ) from None
        structlog.contextvars.bind_contextvars(calling_service=service)
        return service

    return calling_service
