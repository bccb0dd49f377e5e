"""The caller's own account: who I am, my own password, my second factor (no right needed).

Rules kept here: ``GET /me`` answers from the access copy (a client's login
from the credential table, never from an event); changing one's own password
needs the current one and ends every other session of the caller, this one
goes on; an impersonation never changes the client's password. The second
factor is staff's, set up by the member themselves: ``POST /me/2fa`` answers
the ``otpauth://`` URI once, ``POST /me/2fa/confirm`` turns it on with a right
code and answers the recovery codes once, ``DELETE /me/2fa`` turns it off with
a current code. A session limited to setting it up
(``OTP_REQUIRED_FOR_FULL_ACCESS``) reaches ``GET /me`` and these routes only.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from services.identity.api.deps import ClientPrincipalsDep, IdentityDep, SecondFactorsDep
from shared.access.control import SETUP_SECOND_FACTOR, Principal
from shared.access.delegation import Grantor
from shared.http.api import ApiError, CaughtUp, StrictBody, require

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
    principal: Annotated[Principal, Depends(require(scope=SETUP_SECOND_FACTOR))],
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


SetupPrincipal = Annotated[Principal, Depends(require(scope=SETUP_SECOND_FACTOR))]


def _own_staff_account(principal: Principal) -> None:
    """The second factor is a staff member's own, set in their own session."""
    if principal.kind != "staff" or principal.impersonator_id is not None:
        raise ApiError(403, "staff_only", "the second factor is for staff, in their own session")


class SecondFactorOut(BaseModel):
    # otpauth://totp/...?secret=...&issuer=...: for an authenticator app (a QR code).
    uri: str


@router.post("/me/2fa", tags=["auth"], status_code=201)
async def enroll_second_factor(
    app: IdentityDep, factors: SecondFactorsDep, principal: SetupPrincipal
) -> SecondFactorOut:
    """A new TOTP secret, shown this once; it counts once confirmed with a code.

    409 ``second_factor_on`` while one is on (turn it off first).
    """
    _own_staff_account(principal)
    uri = await factors.enroll(principal.actor, principal.id, principal.access.login)
    return SecondFactorOut(uri=uri)


class CodeIn(StrictBody):
    code: str = Field(min_length=1, max_length=32)


class RecoveryCodesOut(BaseModel):
    # Each works once instead of a TOTP code; shown this once, kept only hashed.
    recovery_codes: list[str]


@router.post("/me/2fa/confirm", tags=["auth"])
async def confirm_second_factor(
    body: CodeIn, factors: SecondFactorsDep, principal: SetupPrincipal
) -> RecoveryCodesOut:
    """Turn the second factor on with a code of the secret: from now on
    ``POST /auth/login`` needs ``otp``. 403 ``otp_invalid`` naming ``code``.
    """
    _own_staff_account(principal)
    codes = await factors.confirm(principal.actor, principal.id, body.code)
    return RecoveryCodesOut(recovery_codes=codes)


@router.delete("/me/2fa", tags=["auth"], status_code=204, response_model=None)
async def disable_second_factor(
    body: CodeIn, factors: SecondFactorsDep, principal: SetupPrincipal
) -> Response:
    """Turn it off with a current code or a recovery code (403 ``otp_invalid``)."""
    _own_staff_account(principal)
    await factors.disable(principal.actor, principal.id, body.code)
    return Response(status_code=204)
