"""Service-to-service calls: short-lived tokens that name the calling service.

Rules it keeps:

* A service token is an EdDSA JWT signed with the calling service's own key
  (``SERVICE_SIGNING_KEY``); ``iss`` and ``sub`` name the caller, ``knd`` is
  ``"service"``, ``aud`` is ``"internal"``, and it has no session. The receiver
  verifies it with that caller's public key (``SERVICE_PUBLIC_KEYS``): no service
  can speak for another, and none can mint a user token (identity's key signs those).
* The two kinds never pass for each other: ``shared.access.control.verify_token``
  accepts only staff and client tokens (and no audience), ``require_service``
  only service tokens for the internal audience.
* Each internal route names the callers it accepts (``require_service("notifier")``):
  no valid service token is 401 ``invalid_service_token``; a valid one from
  another service is 403 ``service_not_allowed``. Internal endpoints are for
  other services of the back office, never for people.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import jwt
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Request

from shared.access.control import ALGORITHM, TokenError
from shared.access.keys import ServiceKeys
from shared.http.api import ApiError, bearer_token

AUDIENCE = "internal"
SERVICE_KIND = "service"


def issue_service_token(
    key: Ed25519PrivateKey,
    service: str,
    lifetime: timedelta = timedelta(minutes=5),
    *,
    now: datetime | None = None,
) -> str:
    """A token with which ``service`` (whose own key ``key`` is) calls another's internal API."""
    issued = now or datetime.now(UTC)
    claims = {
        "iss": service,
        "sub": service,
        "knd": SERVICE_KIND,
        "aud": AUDIENCE,
        "iat": int(issued.timestamp()),
        "exp": int((issued + lifetime).timestamp()),
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify_service_token(callers: ServiceKeys, token: str) -> str:
    """The calling service's name, verified with its own public key; ``TokenError`` otherwise."""
    try:
        # Unverified only to learn whose key to verify with; nothing else is believed yet.
        claimed = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError as exc:
        raise TokenError(type(exc).__name__) from None
    if not isinstance(claimed, str) or not claimed:
        raise TokenError("no calling service")
    key = callers.key_of(claimed)
    if key is None:
        raise TokenError("unknown calling service")
    try:
        raw = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=claimed,
            options={"require": ["iss", "sub", "exp", "aud"]},
        )
    except jwt.PyJWTError as exc:
        raise TokenError(type(exc).__name__) from None
    if raw.get("knd") != SERVICE_KIND or raw.get("sub") != claimed:
        raise TokenError("not a service token")
    return claimed


def require_service(*callers: str) -> Callable[[Request], Awaitable[str]]:
    """Dependency of internal endpoints: the calling service's name, if one of ``callers``.

    401 without a valid service token, 403 ``service_not_allowed`` for a service
    the route does not list.
    """
    if not callers:
        raise ValueError("an internal route names the services it accepts")
    accepted = frozenset(callers)

    async def calling_service(request: Request) -> str:
        token = bearer_token(request)
        keys: ServiceKeys = request.app.state.runtime.callers
        try:
            if token is None:
                raise TokenError("no token")
            service = verify_service_token(keys, token)
        except TokenError:
            raise ApiError(
                401,
                "invalid_service_token",
                "a valid service token is required",
                headers={"WWW-Authenticate": "Bearer"},
            ) from None
        structlog.contextvars.bind_contextvars(calling_service=service)
        if service not in accepted:
            raise ApiError(
                403,
                "service_not_allowed",
                f"this internal route does not accept calls from {service!r}",
            )
        return service

    return calling_service
