"""Client groups: create, list, rename, delete (``clients.groups``; reading ``clients.view``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from services.clients.api.deps import ClientsDep
from services.clients.projections import client_groups
from shared.access.control import Principal
from shared.application.commands import CommandAnswer
from shared.http.api import CaughtUp, ReadDB, StrictBody, require

router = APIRouter(tags=["groups"])


class NameIn(StrictBody):
    name: str = Field(min_length=1, max_length=100)


class GroupOut(BaseModel):
    id: str
    name: str
    version: int


@router.post("/client-groups", status_code=201)
async def create_group(
    body: NameIn,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.groups"))],
) -> CommandAnswer:
    return await app.create_group(principal.actor, body.name)


@router.get("/client-groups")
async def list_groups(
    db: ReadDB,
    _: CaughtUp,
    __: Annotated[Principal, Depends(require("clients.view"))],
) -> list[GroupOut]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(client_groups)
            .where(client_groups.c.deleted.is_(False))
            .order_by(func.lower(client_groups.c.name), client_groups.c.group_id)
        )
        return [GroupOut(id=r.group_id, name=r.name, version=r.version) for r in rows]


@router.patch("/client-groups/{group_id}")
async def rename_group(
    group_id: str,
    body: NameIn,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.groups"))],
) -> CommandAnswer:
    return await app.rename_group(principal.actor, group_id, body.name)


@router.delete("/client-groups/{group_id}")
async def delete_group(
    group_id: str,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.groups"))],
) -> CommandAnswer:
    return await app.delete_group(principal.actor, group_id)
