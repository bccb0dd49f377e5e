"""Service tokens: signed with the caller's own key, naming it; accepted only from the callers
a route lists; never passing for a principal's (or back)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.requests import Request

from shared.access.control import (
    AccessCopy,
    Authorizer,
    Denied,
    IpPolicy,
    StaffAccessChanged,
    TokenError,
    issue_token,
    verify_token,
)
from shared.access.keys import ServiceKeys
from shared.http.api import ApiError
from shared.http.internal import issue_service_token, require_service, verify_service_token

IDENTITY = Ed25519PrivateKey.generate()  # identity's key: user tokens
CLIENTS = Ed25519PrivateKey.generate()
NOTIFIER = Ed25519PrivateKey.generate()
CALLERS = ServiceKeys({"clients": CLIENTS.public_key(), "notifier": NOTIFIER.public_key()})


def staff_token(kind: str = "staff") -> str:
    return issue_token(
        IDENTITY,
        principal_id="clients",
        kind=kind,  # type: ignore[arg-type]
        session_id="sess-1",
        lifetime=timedelta(minutes=5),
    )


def request_with(authorization: str | None) -> Request:
    runtime = SimpleNamespace(callers=CALLERS)
    app = SimpleNamespace(state=SimpleNamespace(runtime=runtime))
    headers = [(b"authorization", authorization.encode())] if authorization else []
    return Request({"type": "http", "headers": headers, "app": app})


async def called_by(authorization: str | None, *accepted: str) -> str:
    return await require_service(*(accepted or ("clients",)))(request_with(authorization))


def test_a_service_token_names_its_service() -> None:
    token = issue_service_token(CLIENTS, "clients")
    assert verify_service_token(CALLERS, token) == "clients"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["iss"], claims["sub"], claims["aud"]) == ("clients", "clients", "internal")


@pytest.mark.parametrize(
    "token",
    [
        issue_service_token(Ed25519PrivateKey.generate(), "clients"),
        issue_service_token(NOTIFIER, "clients"),  # one service speaking for another
        issue_service_token(IDENTITY, "identity"),  # a service nobody listed
        issue_service_token(CLIENTS, "clients", now=datetime.now(UTC) - timedelta(hours=1)),
        jwt.encode(
            {"iss": "clients", "sub": "clients", "knd": "service", "aud": "internal", "exp": 2**40},
            "the-old-jwt-secret-" * 3,
            "HS256",
        ),
        staff_token("staff"),
        staff_token("client"),
        "not-a-jwt",
    ],
    ids=["forged", "impostor", "unknown", "expired", "hs256", "staff", "client", "garbage"],
)
def test_anything_else_is_not_a_service_token(token: str) -> None:
    with pytest.raises(TokenError):
        verify_service_token(CALLERS, token)


def test_a_service_token_is_not_a_principal_token() -> None:
    token = issue_service_token(CLIENTS, "clients")
    with pytest.raises(TokenError):
        verify_token(IDENTITY.public_key(), token)
    # Not even one signed with identity's key, for a staff member named like the service.
    from_identity = issue_service_token(IDENTITY, "clients")
    copy = AccessCopy()
    copy.apply_all(
        [
            StaffAccessChanged(
                staff_id="clients",
                login="clients",
                disabled=False,
                full_access=True,
                rights=[],
                departments=[],
                ip_policy=IpPolicy(),
                bind_session_to_ip=False,
            )
        ]
    )
    for presented in (token, from_identity):
        with pytest.raises(Denied) as refused:
            Authorizer(IDENTITY.public_key(), copy).authorize(presented, None, None)
        assert (refused.value.status, refused.value.code) == (401, "invalid_token")


async def test_require_service_lets_the_listed_services_in_and_nobody_else() -> None:
    assert await called_by(f"Bearer {issue_service_token(CLIENTS, 'clients')}") == "clients"
    for authorization in (None, "Bearer ", f"Bearer {staff_token()}", "Basic abc"):
        with pytest.raises(ApiError) as refused:
            await called_by(authorization)
        assert refused.value.status_code == 401
        assert isinstance(refused.value.detail, dict)
        assert refused.value.detail["code"] == "invalid_service_token"
    # A valid token of a service the route does not list: 403, naming why.
    with pytest.raises(ApiError) as refused:
        await called_by(f"Bearer {issue_service_token(NOTIFIER, 'notifier')}", "clients")
    assert refused.value.status_code == 403
    assert isinstance(refused.value.detail, dict)
    assert refused.value.detail["code"] == "service_not_allowed"
    both = ("clients", "notifier")
    assert await called_by(f"Bearer {issue_service_token(NOTIFIER, 'notifier')}", *both)


def test_a_route_names_its_callers() -> None:
    with pytest.raises(ValueError):
        require_service()
