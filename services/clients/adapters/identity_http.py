"""``IdentityPort`` over identity's internal HTTP API, with a service token.

Each call carries a fresh short-lived service token (``shared.http.internal``) and
uses its own connection: these calls are rare (registration, erasure,
impersonation), and nothing has to be closed when the service stops.
Identity's answers become the kernel's typed errors, so the clients API
answers 409 / 422 / 404 as if it had decided itself; anything else becomes
``IdentityUnavailable``. Passwords travel only in request bodies: no message,
exception or log line here contains one.
"""

from __future__ import annotations

from typing import Any

import httpx
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.clients.app.ports import (
    UNCHANGED,
    IdentityUnavailable,
    Impersonation,
    Unchanged,
)
from shared.domain.aggregate import Conflict, DomainError, NotFound
from shared.http.internal import issue_service_token
from shared.observability import causation

log = structlog.get_logger(__name__)

SERVICE = "clients"
TIMEOUT = httpx.Timeout(5.0)


class IdentityHttp:
    def __init__(
        self, base_url: str, key: Ed25519PrivateKey, *, timeout: httpx.Timeout = TIMEOUT
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = key  # the clients service's own: its tokens name it
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"IdentityHttp({self.base_url!r})"

    async def register(self, client_id: str, login: str, password: str) -> None:
        body = {"client_id": client_id, "login": login, "password": password}
        await self._call("POST", "/internal/client-principals", body, client_id)

    async def update(
        self,
        client_id: str,
        *,
        disabled: bool | None = None,
        company_id: str | Unchanged | None = UNCHANGED,
        company_manager: bool | None = None,
    ) -> None:
        body: dict[str, Any] = {}
        if disabled is not None:
            body["disabled"] = disabled
        if not isinstance(company_id, Unchanged):
            body["company_id"] = company_id
        if company_manager is not None:
            body["company_manager"] = company_manager
        if body:
            await self._call("PATCH", f"/internal/client-principals/{client_id}", body, client_id)

    async def change_password(self, client_id: str, password: str) -> None:
        path = f"/internal/client-principals/{client_id}/password"
        await self._call("PUT", path, {"password": password}, client_id)

    async def remove(self, client_id: str) -> None:
        await self._call("DELETE", f"/internal/client-principals/{client_id}", None, client_id)

    async def impersonate(
        self, client_id: str, staff_id: str, staff_session_id: str
    ) -> Impersonation:
        answer = await self._call(
            "POST",
            f"/internal/client-principals/{client_id}/impersonations",
            {"staff_id": staff_id, "staff_session_id": staff_session_id},
            client_id,
        )
        try:
            return Impersonation(
                access_token=str(answer["access_token"]),
                session_id=str(answer["session_id"]),
                client_id=str(answer["principal"]["id"]),
                impersonator_id=str(answer["impersonator_id"]),
            )
        except (KeyError, TypeError):
            raise IdentityUnavailable(
                "identity answered an impersonation without a token"
            ) from None

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None, client_id: str
    ) -> dict[str, Any]:
        token = issue_service_token(self._key, SERVICE)
        try:
            async with httpx.AsyncClient(
                base_url=self.base_url, timeout=self.timeout, event_hooks=causation.HTTPX_HOOKS
            ) as http:
                response = await http.request(
                    method, path, json=body, headers={"Authorization": f"Bearer {token}"}
                )
        except httpx.HTTPError as exc:
            # Only the error's type: its text could in principle quote the request.
            log.warning("identity.unreachable", method=method, path=path, error=type(exc).__name__)
            raise IdentityUnavailable(f"identity unreachable ({type(exc).__name__})") from None
        if response.is_success:
            answer = _json(response)
            return answer if isinstance(answer, dict) else {}
        raise _error(response, client_id)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error(response: httpx.Response, client_id: str) -> Exception:
    """Identity's error answer as the kernel's typed error."""
    raw = _json(response)
    error: dict[str, Any] = raw.get("error", {}) if isinstance(raw, dict) else {}
    code = str(error.get("code") or "error")
    message = str(error.get("message") or response.reason_phrase)
    status = response.status_code
    if status == 409:
        return Conflict(code, message)
    if status == 404:
        return NotFound(f"client principal {client_id}")
    if status == 422:
        field, detail = _invalid_field(error)
        return DomainError(field, detail or message)
    log.warning("identity.failed", status=status, code=code)
    return IdentityUnavailable(f"identity answered {status} {code}")


def _invalid_field(error: dict[str, Any]) -> tuple[str, str]:
    """The field a 422 names: ``field`` for a broken rule, else the first schema error.

    Schema errors name the location (``body.password``); the prefix goes, so
    the field is the one the caller knows.
    """
    fields = [f for f in error.get("fields") or [] if isinstance(f, dict)]
    first = fields[0] if fields else {}
    name = str(error.get("field") or first.get("field") or "input")
    detail = str(first.get("message") or "")
    return name.removeprefix("body."), detail
