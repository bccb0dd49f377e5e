"""Individual rights of staff members and the rights catalogue (API.md's rights rows).

Rules kept here: granting and revoking need ``staff.rights`` and go through the
domain's delegation rules with the caller as grantor (nobody grants what they
do not hold; a right a department gives is revoked there, 409
``inherited_right``); each effective right is listed with its sources.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from services.identity.api.deps import IdentityDep, grantor
from services.identity.projections import staff_rights
from shared.access.control import Principal
from shared.application.commands import CommandAnswer
from shared.domain import rights as catalogue
from shared.http.api import CaughtUp, StrictBody, require
from shared.http.reads import not_found

router = APIRouter()


class RightIn(StrictBody):
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
