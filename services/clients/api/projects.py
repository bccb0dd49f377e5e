"""Projects a client belongs to: create, list, change, delete (``clients.projects``;
reading ``clients.view``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from services.clients.api.deps import ClientsDep
from services.clients.projections import projects
from shared.access.control import Principal
from shared.application.commands import CommandAnswer
from shared.http.api import CaughtUp, ReadDB, StrictBody, require

router = APIRouter(tags=["projects"])


class ProjectIn(StrictBody):
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=2000)


class ProjectPatchIn(StrictBody):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=2000)


class ProjectOut(BaseModel):
    id: str
    name: str
    description: str
    version: int


@router.post("/projects", status_code=201)
async def create_project(
    body: ProjectIn,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.projects"))],
) -> CommandAnswer:
    return await app.create_project(principal.actor, body.name, body.description)


@router.get("/projects")
async def list_projects(
    db: ReadDB,
    _: CaughtUp,
    __: Annotated[Principal, Depends(require("clients.view"))],
) -> list[ProjectOut]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(projects)
            .where(projects.c.deleted.is_(False))
            .order_by(func.lower(projects.c.name), projects.c.project_id)
        )
        return [
            ProjectOut(id=r.project_id, name=r.name, description=r.description, version=r.version)
            for r in rows
        ]


@router.patch("/projects/{project_id}")
async def change_project(
    project_id: str,
    body: ProjectPatchIn,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.projects"))],
) -> CommandAnswer:
    return await app.change_project(principal.actor, project_id, body.name, body.description)


@router.delete("/projects/{project_id}")
async def delete_project(
    project_id: str,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.projects"))],
) -> CommandAnswer:
    return await app.delete_project(principal.actor, project_id)
