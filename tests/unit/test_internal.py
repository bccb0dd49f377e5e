"""Service tokens: signed with the caller's own key, naming it; accepted only from the callers
a route lists; never passing for a principal's (or back). Every internal route of every
service lists its callers, and the table of who calls what is held here."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.requests import Request

from shared import catalogue
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
from shared.runtime.service import ServiceSpec, create_app

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


# Who may call each internal route of each service (docs/security.md, "Service tokens").
INTERNAL_CALLERS = {
    "identity": {
        "DELETE /internal/client-principals/{client_id}": {"clients"},
        "PATCH /internal/client-principals/{client_id}": {"clients"},
        "POST /internal/client-principals": {"clients"},
        "POST /internal/client-principals/{client_id}/impersonations": {"clients"},
        "PUT /internal/client-principals/{client_id}/password": {"clients"},
        "GET /internal/password-resets/{reset_id}/link": {"notifier"},
    },
    "clients": {
        "GET /internal/clients/by-email": {"tickets"},
        "GET /internal/clients/{client_id}/card": {"notifier"},
        "GET /internal/clients/{client_id}/messages/{message_id}": {"notifier"},
        "GET /internal/clients/{client_id}/messages/{message_id}/attachments/{attachment_id}": {
            "notifier"
        },
    },
    "tickets": {
        "GET /internal/tickets/{ticket_id}": {"notifier"},
        "GET /internal/tickets/{ticket_id}/attachments/{attachment_id}": {"notifier"},
        "GET /internal/tickets/{ticket_id}/messages/{message_id}": {"notifier"},
    },
}


def _callers_of(call: object) -> set[str] | None:
    """The services a ``require_service(...)`` dependency accepts (None: not one)."""
    if getattr(call, "__qualname__", "") != "require_service.<locals>.calling_service":
        return None
    return set(inspect.getclosurevars(call).nonlocals["accepted"])  # type: ignore[arg-type]


def _internal_routes(routes: Any, prefix: str = "") -> dict[str, set[str] | None]:
    """``METHOD /internal/...`` → the callers its dependencies accept, through included routers."""
    found: dict[str, set[str] | None] = {}
    for route in routes:
        included = getattr(route, "include_context", None)
        if included is not None:
            found |= _internal_routes(included.included_router.routes, prefix + included.prefix)
            continue
        path = prefix + getattr(route, "path", "")
        dependant = getattr(route, "dependant", None)
        if not path.startswith("/internal") or dependant is None:
            continue
        pending, callers = [dependant], None
        while pending:
            node = pending.pop()
            callers = callers or _callers_of(node.call)
            pending += node.dependencies
        for method in route.methods:
            found[f"{method} {path}"] = callers
    return found


@pytest.mark.parametrize("service", catalogue.names())
def test_every_internal_route_names_the_callers_it_accepts(
    service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAR_DIR", str(tmp_path))  # the app writes a development secret there
    spec = catalogue.spec(service)
    assert isinstance(spec, ServiceSpec)
    # Every internal route carries require_service naming its callers (None: it
    # does not, and any caller, or none, would get in), and only those listed.
    assert _internal_routes(create_app(spec).routes) == INTERNAL_CALLERS.get(service, {})
