"""Login, logout and forgotten passwords (the ``auth`` rows of API.md's identity table).

Rules kept here: a refused login answers the status and code the application
decided (401 wrong credentials, disabled, ``otp_required`` or ``otp_invalid``;
403 policy; 429 locked with ``Retry-After``) and nothing about whether the
login exists; logging out of an impersonation answers 200 naming the staff
member, whose own session goes on. ``POST /auth/forgot`` answers 202 before
it looks the login up (the work runs after the answer), so neither the answer
nor its timing tells whether the login exists; ``POST /auth/reset`` spends a
link once (400 ``reset_token_invalid``, 410 ``reset_token_used`` /
``reset_token_expired``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, BackgroundTasks, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.identity.api.deps import IdentityDep, PasswordResetsDep
from services.identity.app.handlers import LoginRefused
from services.identity.app.self_service import ResetRefused
from shared.access.control import SETUP_SECOND_FACTOR, Principal
from shared.http.api import ApiError, StrictBody, client_address, require
from shared.http.openapi import error_responses

log = structlog.get_logger(__name__)

router = APIRouter()


class LoginIn(StrictBody):
    login: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    # Replaces a password that must be changed (the generated first admin password).
    new_password: str | None = Field(default=None, min_length=8, max_length=256)
    # A TOTP code or a recovery code, for staff with the second factor on.
    otp: str | None = Field(default=None, min_length=1, max_length=32)


class PrincipalOut(BaseModel):
    id: str
    kind: Literal["staff", "client"]


class LoginOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    principal: PrincipalOut
    # "second_factor_setup": a session that may only set up the second factor
    # (OTP_REQUIRED_FOR_FULL_ACCESS); absent for a full session.
    scope: str | None = None


@router.post("/auth/login", tags=["auth"], responses=error_responses(401, 403, 429))
async def login(body: LoginIn, request: Request, app: IdentityDep) -> LoginOut:
    try:
        result = await app.login(
            body.login, body.password, client_address(request), body.new_password, body.otp
        )
    except LoginRefused as refused:
        headers = {"Retry-After": str(refused.retry_after)} if refused.retry_after else None
        raise ApiError(refused.status, refused.code, refused.message, headers=headers) from None
    return LoginOut(
        access_token=result.token,
        principal=PrincipalOut(id=result.principal_id, kind=result.kind),
        scope=result.scope,
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
async def logout(
    app: IdentityDep,
    principal: Annotated[Principal, Depends(require(scope=SETUP_SECOND_FACTOR))],
) -> Response:
    """End this session: 204; for an impersonation token, 200 naming the staff member.

    Ending an impersonation leaves the staff member's own session as it was.
    """
    await app.logout(principal.actor, principal.session_id)
    if principal.impersonator_id is not None:
        ended = ImpersonationEnded(returned_to=ReturnedTo(id=principal.impersonator_id))
        return JSONResponse(ended.model_dump(mode="json"), status_code=200)
    return Response(status_code=204)


class ForgotIn(StrictBody):
    login: str = Field(min_length=1, max_length=64)


@router.post(
    "/auth/forgot",
    tags=["auth"],
    status_code=202,
    response_model=None,
    # An empty answer: documented without a body, as it is sent.
    response_class=Response,
    responses={202: {"description": "accepted; a link is mailed if the login exists"}},
)
async def forgot(body: ForgotIn, resets: PasswordResetsDep, tasks: BackgroundTasks) -> Response:
    """Mail a single-use link to set a new password, through the notifier, to the
    principal's address (staff: the card's e-mail; clients: the account's).

    202 whether or not the login exists: the lookup runs after the answer.
    """

    async def request_reset() -> None:
        try:
            await resets.request(body.login)
        except Exception:  # after the answer: nobody to tell but the log
            log.exception("security.password_reset_failed")

    tasks.add_task(request_reset)
    return Response(status_code=202)


class ResetIn(StrictBody):
    token: str = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=8, max_length=256)


@router.post(
    "/auth/reset",
    tags=["auth"],
    status_code=204,
    response_model=None,
    responses=error_responses(400, 410),
)
async def reset(body: ResetIn, resets: PasswordResetsDep) -> Response:
    """Set a new password with the link's token: once, before it expires; every
    session of the principal ends (they log in with the new password)."""
    try:
        await resets.complete(body.token, body.new_password)
    except ResetRefused as refused:
        raise ApiError(refused.status, refused.code, refused.message, field="token") from None
    return Response(status_code=204)
