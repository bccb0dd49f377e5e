"""Service tokens: they name the calling service, and never pass for a principal's (or back)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from pydantic import SecretStr
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
from shared.http.api import ApiError
from shared.http.internal import issue_service_token, require_service, verify_service_token

SECRET = "s" * 48


def staff_token(kind: str = "staff") -> str:
    return issue_token(
        SECRET,
        principal_id="clients",
        kind=kind,  # type: ignore[arg-type]
        session_id="sess-1",
        lifetime=timedelta(minutes=5),
    )


def request_with(authorization: str | None) -> Request:
    runtime = SimpleNamespace(settings=SimpleNamespace(jwt_secret=SecretStr(SECRET)))
    app = SimpleNamespace(state=SimpleNamespace(runtime=runtime))
    headers = [(b"authorization", authorization.encode())] if authorization else []
    return Request({"type": "http", "headers": headers, "app": app})


async def called_by(authorization: str | None) -> str:
    return await require_service()(request_with(authorization))


def test_a_service_token_names_its_service() -> None:
    token = issue_service_token(SECRET, "clients")
    assert verify_service_token(SECRET, token) == "clients"


@pytest.mark.parametrize(
    "token",
    [
        issue_service_token("another-secret-" * 4, "clients"),
        issue_service_token(SECRET, "clients", now=datetime.now(UTC) - timedelta(hours=1)),
        staff_token("staff"),
        staff_token("client"),
        "not-a-jwt",
    ],
    ids=["forged", "expired", "staff", "client", "garbage"],
)
def test_anything_else_is_not_a_service_token(token: str) -> None:
    with pytest.raises(TokenError):
        verify_service_token(SECRET, token)


def test_a_service_token_is_not_a_principal_token() -> None:
    token = issue_service_token(SECRET, "clients")
    with pytest.raises(TokenError):
        verify_token(SECRET, token)
    # Not even when a staff member happens to have the service's name as id.
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
    with pytest.raises(Denied) as refused:
        Authorizer(SECRET, copy).authorize(token, None, None)
    assert (refused.value.status, refused.value.code) == (401, "invalid_token")


async def test_require_service_lets_services_in_and_nobody_else() -> None:
    assert await called_by(f"Bearer {issue_service_token(SECRET, 'clients')}") == "clients"
    for authorization in (None, "Bearer ", f"Bearer {staff_token()}", "Basic abc"):
        with pytest.raises(ApiError) as refused:
            await called_by(authorization)
        assert refused.value.status_code == 401
        assert isinstance(refused.value.detail, dict)
        assert refused.value.detail["code"] == "invalid_service_token"
