"""Login and logout (the ``auth`` rows of API.md's identity table).

Rules kept here: a refused login answers the status and code the application
decided (401 wrong credentials or disabled, 403 policy, 429 locked with
``Retry-After``) and nothing about whether the login exists; logging out of an
impersonation answers 200 naming the staff member, whose own session goes on.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.identity.api.deps import IdentityDep
from services.identity.app.handlers import LoginRefused
from shared.access.control import Principal
from shared.http.api import ApiError, StrictBody, client_address, require

router = APIRouter()


class LoginIn(StrictBody):
    login: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    # Replaces a password that must be changed (the generated first admin password).
    new_password: str | None = Field(default=None, min_length=8, max_length=256)


class PrincipalOut(BaseModel):
    id: str
    kind: Literal["staff", "client"]


class LoginOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    principal: PrincipalOut


@router.post("/auth/login", tags=["auth"])
async def login(body: LoginIn, request: Request, app: IdentityDep) -> LoginOut:
    try:
        result = await app.login(
            body.login, body.password, client_address(request), body.new_password
        )
    except LoginRefused as refused:
        headers = {"Retry-After": str(refused.retry_after)} if refused.retry_after else None
        raise ApiError(refused.status, refused.code, refused.message, headers=headers) from None
    return LoginOut(
        access_token=result.token,
        principal=PrincipalOut(id=result.principal_id, kind=result.kind),
    )


class ReturnedTo(BaseModel):
    id: str
    kind: Literal["staff"] = "staff"


class ImpersonationEnded(BaseModel):
    returned_to: ReturnedTo


@router.post(
    "/auth/logout",
    tags=["auth"],
    status_code=204,
    response_model=None,
    responses={200: {"model": ImpersonationEnded, "description": "an impersonation ended"}},
)
async def logout(app: IdentityDep, principal: Annotated[Principal, Depends(require())]) -> Response:
    """End this session: 204; for an impersonation token, 200 naming the staff member.

    Ending an impersonation leaves the staff member's own session as it was.
    """
    await app.logout(principal.actor, principal.session_id)
    if principal.impersonator_id is not None:
        ended = ImpersonationEnded(returned_to=ReturnedTo(id=principal.impersonator_id))
        return JSONResponse(ended.model_dump(mode="json"), status_code=200)
    return Response(status_code=204)
