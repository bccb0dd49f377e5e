"""HTTP adapter of identity: login, sessions, staff, rights (the identity table of API.md)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from sqlalchemy import func, select

from services.identity.api.deps import ClientPrincipalsDep, IdentityDep
from services.identity.app.handlers import LoginRefused
from services.identity.domain.events import LocalizedName
from services.identity.projections import staff_rights, staff_rows
from shared.access.control import IpPolicy, Principal
from shared.access.delegation import Grantor
from shared.application.commands import CommandAnswer
from shared.domain import rights as catalogue
from shared.http.api import ApiError, CaughtUp, client_address, require
from shared.http.openapi import error_responses
from shared.http.reads import not_found

router = APIRouter()


def grantor(principal: Principal) -> Grantor:
    """Who hands rights on in a staff command, with what they hold now (``delegation``)."""
    return Grantor.of(principal.access, principal.id)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- auth


class LoginIn(Strict):
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


@router.post("/auth/login", tags=["auth"], responses=error_responses(401, 403, 429))
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


class OwnPasswordIn(Strict):
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


# ---------------------------------------------------------------- staff


class StaffIn(Strict):
    login: str = Field(min_length=2, max_length=64)
    password: str = Field(min_length=8, max_length=256)
    full_name: LocalizedName
    email: EmailStr | None = None
    phone: str | None = Field(default=None, max_length=32)
    departments: list[str] = []
    full_access: bool = False
    ip_policy: IpPolicy = IpPolicy()
    bind_session_to_ip: bool = False
    chat_enabled: bool = False
    group: Literal["staff", "admin"] = "staff"


class StaffPatch(Strict):
    full_name: LocalizedName | None = None
    email: EmailStr | None = None
    phone: str | None = Field(default=None, max_length=32)
    departments: list[str] | None = None
    full_access: bool | None = None
    ip_policy: IpPolicy | None = None
    bind_session_to_ip: bool | None = None
    chat_enabled: bool | None = None
    group: Literal["staff", "admin"] | None = None
    password: str | None = Field(default=None, min_length=8, max_length=256)


@router.post("/staff", tags=["staff"], status_code=201)
async def add_staff(
    body: StaffIn,
    app: IdentityDep,
    principal: Annotated[Principal, Depends(require("staff.create"))],
) -> CommandAnswer:
    fields = body.model_dump(exclude={"password"})
    fields["full_name"] = body.full_name
    fields["ip_policy"] = body.ip_policy
    return await app.add_staff(principal.actor, body.password, grantor(principal), **fields)


@router.patch("/staff/{staff_id}", tags=["staff"])
async def change_staff(
    staff_id: str,
    body: StaffPatch,
    app: IdentityDep,
    principal: Annotated[Principal, Depends(require("staff.edit"))],
) -> CommandAnswer:
    changes: dict[str, Any] = {
        name: getattr(body, name) for name in body.model_fields_set if name != "password"
    }
    answer = await app.change_staff(principal.actor, staff_id, grantor(principal), **changes)
    if body.password is not None:
        await app.set_staff_password(principal.actor, staff_id, body.password, grantor(principal))
    return answer


@router.delete("/staff/{staff_id}", tags=["staff"])
async def disable_staff(
    staff_id: str,
    app: IdentityDep,
    principal: Annotated[Principal, Depends(require("staff.delete"))],
) -> CommandAnswer:
    """Disable the account (its history stays); its sessions end."""
    return await app.disable_staff(principal.actor, staff_id, grantor(principal))


class StaffPage(BaseModel):
    items: list[dict[str, Any]]
    total: int
    limit: int
    offset: int


@router.get("/staff", tags=["staff"])
async def list_staff(
    request: Request,
    _: CaughtUp,
    __: Annotated[Principal, Depends(require("staff.view"))],
    department_id: str | None = None,
    disabled: bool | None = None,
    login: Annotated[str | None, Query(max_length=64, description="part of the login")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> StaffPage:
    query = select(staff_rows.c.staff_id, staff_rows.c.card, staff_rows.c.departments)
    if disabled is not None:
        query = query.where(staff_rows.c.disabled == disabled)
    if login:
        query = query.where(staff_rows.c.login.contains(login, autoescape=True))
    if department_id:
        # Departments are a JSON list; membership is matched on the quoted id.
        query = query.where(
            staff_rows.c.departments.contains(f'"{department_id}"', autoescape=True)
        )
    db = request.app.state.runtime.db
    async with db.engine.connect() as conn:
        total = (await conn.execute(select(func.count()).select_from(query.subquery()))).scalar()
        rows = await conn.execute(query.order_by(staff_rows.c.login).limit(limit).offset(offset))
        items = [_card(r.staff_id, r.card) for r in rows]
    return StaffPage(items=items, total=int(total or 0), limit=limit, offset=offset)


@router.get("/staff/{staff_id}", tags=["staff"])
async def get_staff(
    staff_id: str,
    request: Request,
    _: CaughtUp,
    __: Annotated[Principal, Depends(require("staff.view"))],
) -> dict[str, Any]:
    return await get_staff_card(request, staff_id)


async def get_staff_card(request: Request, staff_id: str) -> dict[str, Any]:
    db = request.app.state.runtime.db
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(select(staff_rows.c.card).where(staff_rows.c.staff_id == staff_id))
        ).first()
    if row is None:
        raise not_found(f"staff member {staff_id}")
    return _card(staff_id, row.card)


def _card(staff_id: str, card: str) -> dict[str, Any]:
    return {"id": staff_id, **orjson.loads(card)}


@router.put("/staff/{staff_id}/avatar", tags=["staff"])
async def set_avatar(
    staff_id: str,
    app: IdentityDep,
    principal: Annotated[Principal, Depends(require())],
    avatar: Annotated[UploadFile, File(description="png, jpg, jpeg or gif; at most 64 KB; 80x80")],
) -> CommandAnswer:
    """Anyone may set their own avatar; setting another's needs ``staff.edit``."""
    if staff_id != principal.id and not principal.access.has("staff.edit"):
        raise ApiError(403, "forbidden", "the right 'staff.edit' is required")
    # Read one byte more than allowed: enough to tell "too big" without reading a huge upload.
    data = await avatar.read(64 * 1024 + 1)
    return await app.set_avatar(
        principal.actor, staff_id, data, avatar.filename, grantor(principal)
    )


@router.get("/staff/{staff_id}/avatar", tags=["staff"])
async def get_avatar(
    staff_id: str,
    request: Request,
    _: CaughtUp,
    app: IdentityDep,
    principal: Annotated[Principal, Depends(require())],
) -> Response:
    if staff_id != principal.id and not principal.access.has("staff.view"):
        raise ApiError(403, "forbidden", "the right 'staff.view' is required")
    card = await get_staff_card(request, staff_id)
    sha = (card.get("avatar") or {}).get("sha256")
    image = await app.avatars.get(sha) if sha else None
    if image is None:
        raise ApiError(404, "not_found", f"staff member {staff_id} has no avatar")
    return Response(image.data, media_type=image.content_type)


# ---------------------------------------------------------------- rights


class RightIn(Strict):
    right: str = Field(min_length=1, max_length=100)


class RightOut(BaseModel):
    right: str
    sources: list[str]


async def _rights(request: Request, staff_id: str) -> dict[str, list[str]] | None:
    db = request.app.state.runtime.db
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(
                select(staff_rights.c.sources).where(staff_rights.c.staff_id == staff_id)
            )
        ).first()
    return None if row is None else dict(orjson.loads(row.sources))


@router.get("/staff/{staff_id}/rights", tags=["rights"])
async def staff_rights_of(
    staff_id: str,
    request: Request,
    _: CaughtUp,
    __: Annotated[Principal, Depends(require("staff.view"))],
) -> list[RightOut]:
    found = await _rights(request, staff_id)
    if found is None:
        raise not_found(f"staff member {staff_id}")
    return [RightOut(right=r, sources=s) for r, s in sorted(found.items())]


@router.post("/staff/{staff_id}/rights", tags=["rights"], status_code=201)
async def grant_right(
    staff_id: str,
    body: RightIn,
    app: IdentityDep,
    principal: Annotated[Principal, Depends(require("staff.rights"))],
) -> CommandAnswer:
    return await app.grant(principal.actor, staff_id, body.right, grantor(principal))


@router.delete("/staff/{staff_id}/rights/{right}", tags=["rights"])
async def revoke_right(
    staff_id: str,
    right: str,
    app: IdentityDep,
    principal: Annotated[Principal, Depends(require("staff.rights"))],
) -> CommandAnswer:
    return await app.revoke(principal.actor, staff_id, right, grantor(principal))


@router.get("/rights/catalogue", tags=["rights"])
async def rights_catalogue(
    _: Annotated[Principal, Depends(require())],
) -> list[dict[str, Any]]:
    """Every section and its functions, with localized titles."""
    sections: list[dict[str, Any]] = catalogue.catalogue_as_json()
    return sections
