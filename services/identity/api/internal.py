"""Identity's internal HTTP API: client principals (for the clients service) and
password-reset links (for the notifier).

Every endpoint needs a service token (``shared.http.internal``) of a caller it
names: client principals take the clients service's, a reset link the
notifier's (another service's is 403 ``service_not_allowed``); staff and client
tokens are refused. The clients service checks the staff member's rights before
it calls; identity keeps credentials, sessions and tokens. A reset link is
handed to the notifier when it sends the mail: it is kept nowhere else.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from services.identity.api.deps import ClientPrincipalsDep, PasswordResetsDep
from services.identity.domain.client_principal import UNCHANGED
from shared.application.commands import CommandAnswer
from shared.domain.events import Actor
from shared.http.api import ApiError, StrictBody
from shared.http.internal import require_service

router = APIRouter(prefix="/internal", tags=["internal"])


# Only the clients service manages client principals (the callers this router accepts).
Service = Annotated[str, Depends(require_service("clients"))]


def service_actor(service: str) -> Actor:
    """Events caused by another service name it (as a system actor)."""
    return Actor(id=service, kind="system")


class RegisterIn(StrictBody):
    client_id: str = Field(min_length=1, max_length=64)
    login: str = Field(min_length=1, max_length=64)
    # Length rules are identity's (422 naming "password"), not the schema's.
    password: str = Field(max_length=1024)


class ChangeIn(StrictBody):
    disabled: bool | None = None
    company_id: str | None = Field(default=None, max_length=64)
    company_manager: bool | None = None


class PasswordIn(StrictBody):
    password: str = Field(max_length=1024)


class ImpersonateIn(StrictBody):
    staff_id: str = Field(min_length=1, max_length=64)
    staff_session_id: str = Field(min_length=1, max_length=64)


class ClientPrincipalOut(BaseModel):
    id: str
    kind: Literal["client"] = "client"


class ImpersonationOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    session_id: str
    principal: ClientPrincipalOut
    impersonator_id: str


@router.post("/client-principals", status_code=201)
async def register(body: RegisterIn, app: ClientPrincipalsDep, service: Service) -> CommandAnswer:
    """Credential handover: the client can log in at ``/auth/login`` from now on.

    409 ``duplicate_login`` when a staff member or another client has the
    login, ``duplicate_principal`` when the client id is registered already.
    """
    return await app.register(service_actor(service), body.client_id, body.login, body.password)


@router.patch("/client-principals/{client_id}")
async def change(
    client_id: str, body: ChangeIn, app: ClientPrincipalsDep, service: Service
) -> CommandAnswer:
    """Disable or enable the client, or change its company; disabling ends its sessions."""
    given = body.model_fields_set
    return await app.change(
        service_actor(service),
        client_id,
        disabled=body.disabled,
        company_id=body.company_id if "company_id" in given else UNCHANGED,
        company_manager=body.company_manager,
    )


@router.put("/client-principals/{client_id}/password")
async def change_password(
    client_id: str, body: PasswordIn, app: ClientPrincipalsDep, service: Service
) -> CommandAnswer:
    return await app.change_password(service_actor(service), client_id, body.password)


@router.delete("/client-principals/{client_id}")
async def remove(client_id: str, app: ClientPrincipalsDep, service: Service) -> CommandAnswer:
    """Erasure: the credential goes (the login is free again), every session ends."""
    return await app.remove(service_actor(service), client_id)


@router.post("/client-principals/{client_id}/impersonations", status_code=201)
async def impersonate(
    client_id: str, body: ImpersonateIn, app: ClientPrincipalsDep, _: Service
) -> ImpersonationOut:
    """A client token for a staff member; whatever it causes names both.

    409 ``principal_disabled`` for a disabled client; ``impersonator_not_allowed``
    or ``impersonator_session_ended`` when the staff member may not act now.
    """
    found = await app.impersonate(client_id, body.staff_id, body.staff_session_id)
    return ImpersonationOut(
        access_token=found.token,
        session_id=found.session_id,
        principal=ClientPrincipalOut(id=found.client_id),
        impersonator_id=found.impersonator_id,
    )


class ResetLinkOut(BaseModel):
    link: str
    expires_at: datetime


@router.get("/password-resets/{reset_id}/link")
async def reset_link(
    reset_id: str,
    resets: PasswordResetsDep,
    _: Annotated[str, Depends(require_service("notifier"))],
) -> ResetLinkOut:
    """The link of a password reset for the notifier's mail; 404 once it is used or expired."""
    found = await resets.link(reset_id)
    if found is None:
        raise ApiError(404, "not_found", f"password reset {reset_id} not found, used or expired")
    link, expires_at = found
    return ResetLinkOut(link=link, expires_at=expires_at)
