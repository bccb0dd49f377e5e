"""The caller's own account: who I am, my own password (no right needed).

Rules kept here: ``GET /me`` answers from the access copy (a client's login
from the credential table, never from an event); changing one's own password
needs the current one and ends every other session of the caller, this one
goes on; an impersonation never changes the client's password.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from services.identity.api.deps import ClientPrincipalsDep, IdentityDep
from shared.access.control import Principal
from shared.access.delegation import Grantor
from shared.http.api import CaughtUp, StrictBody, require

router = APIRouter()


class MeOut(BaseModel):
    id: str
    kind: Literal["staff"]
    login: str
    full_access: bool
    departments: list[str]
    permissions: list[str]
    impersonator_id: None = None


class ClientMeOut(BaseModel):
    """A client has no staff rights; it acts on its own data (its company's, as manager)."""

    id: str
    kind: Literal["client"]
    login: str
    full_access: Literal[False] = False
    departments: list[str] = []
    permissions: list[str] = []
    # The staff member behind an impersonation token, else null.
    impersonator_id: str | None
    company_id: str | None
    company_manager: bool


@router.get("/me", tags=["auth"])
async def me(
    request: Request,
    _: CaughtUp,
    app: IdentityDep,
    principal: Annotated[Principal, Depends(require())],
) -> MeOut | ClientMeOut:
    """Who I am and what I may do.

    Answered from the access copy, the in-memory read model of effective rights
    that identity updates the moment it publishes a change (the table behind
    ``GET /staff/{id}/rights`` follows a moment later). A client's login is
    read from the credential table: it is not in any event.
    """
    access = principal.access
    if principal.kind == "client":
        return ClientMeOut(
            id=principal.id,
            kind="client",
            login=await app.credentials.login_of(principal.id) or "",
            impersonator_id=principal.impersonator_id,
            company_id=access.company_id,
            company_manager=access.company_manager,
        )
    return MeOut(
        id=principal.id,
        kind="staff",
        login=access.login,
        full_access=access.full_access,
        departments=list(access.departments),
        permissions=sorted(access.rights),
    )


class OwnPasswordIn(StrictBody):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=8, max_length=256)


@router.post("/me/password", tags=["auth"], status_code=204, response_model=None)
async def change_own_password(
    body: OwnPasswordIn,
    app: IdentityDep,
    principals: ClientPrincipalsDep,
    principal: Annotated[Principal, Depends(require())],
) -> Response:
    """Staff and clients change their own password (no right needed): the current
    one first (403 ``invalid_credentials`` naming ``current_password``); every
    other session of theirs ends, this one goes on."""
    await app.check_current_password(principal.actor, body.current_password)
    if principal.kind == "client":
        await principals.change_password(
            principal.actor, principal.id, body.new_password, keep_session=principal.session_id
        )
    else:
        await app.set_staff_password(
            principal.actor,
            principal.id,
            body.new_password,
            Grantor(id=principal.id),
            keep_session=principal.session_id,
        )
    return Response(status_code=204)
