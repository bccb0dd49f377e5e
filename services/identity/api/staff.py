"""Staff members: add, change, disable, list, cards, avatars (API.md's staff rows).

Rules kept here: every command names its grantor (``deps.grantor``), so the
domain's delegation rules see what the caller holds now; a password set in
``PATCH /staff/{id}`` goes through the same handler as every password (it ends
the member's sessions); anyone may set and see their own avatar, another's
needs ``staff.edit`` / ``staff.view``; reads come from the staff read model.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile
from pydantic import BaseModel, EmailStr, Field
from sqlalchemy import select

from services.identity.api.deps import IdentityDep, card, get_staff_card, grantor
from services.identity.domain.events import LocalizedName
from services.identity.projections import staff_rows
from shared.access.control import IpPolicy, Principal
from shared.application.commands import CommandAnswer
from shared.http.api import ApiError, CaughtUp, StrictBody, require
from shared.http.reads import counted

router = APIRouter()


class StaffIn(StrictBody):
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


class StaffPatch(StrictBody):
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
        order = (staff_rows.c.login, staff_rows.c.staff_id)  # ends unique (shared.http.reads)
        rows, total = await counted(conn, query, order_by=order, limit=limit, offset=offset)
    items = [card(r.staff_id, r.card) for r in rows]
    return StaffPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/staff/{staff_id}", tags=["staff"])
async def get_staff(
    staff_id: str,
    request: Request,
    _: CaughtUp,
    __: Annotated[Principal, Depends(require("staff.view"))],
) -> dict[str, Any]:
    return await get_staff_card(request, staff_id)


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
    found = await get_staff_card(request, staff_id)
    sha = (found.get("avatar") or {}).get("sha256")
    image = await app.avatars.get(sha) if sha else None
    if image is None:
        raise ApiError(404, "not_found", f"staff member {staff_id} has no avatar")
    return Response(image.data, media_type=image.content_type)
