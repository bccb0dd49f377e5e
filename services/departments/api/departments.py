"""``/departments``: the departments of API.md, their rights and expected response time.

Commands go through ``Departments`` and answer ``{"id", "version", "position"}``;
reads come from the ``department_directory`` read model and accept ``?min_position=``;
commands on one department accept ``?expected_version=`` (409 ``version_conflict``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.engine import Row

from services.departments.api.deps import DepartmentsDep
from services.departments.api.schedules import schedule_out, schedule_row
from services.departments.domain.department import DepartmentPatch
from services.departments.domain.events import LocalizedText, Support
from services.departments.domain.schedule import (
    MAX_RESPONSE_HOURS,
    expected_response_at,
)
from services.departments.projections import departments
from shared.access.control import Principal
from shared.access.delegation import Grantor
from shared.application.commands import CommandAnswer
from shared.http.api import CaughtUp, ExpectedVersion, ReadDB, StrictBody, invalid, require
from shared.http.reads import Limit, Offset, one_or_404, page
from shared.readmodel.database import ReadModelDB

router = APIRouter()


class DepartmentIn(StrictBody):
    name: LocalizedText
    schedule_id: str | None = Field(default=None, max_length=64)
    task_language: str = Field(default="en", max_length=8)
    support: Support = Support()


class RightSwitch(StrictBody):
    right: str = Field(min_length=1, max_length=100)
    enabled: bool


class DepartmentOut(BaseModel):
    id: str
    name: LocalizedText
    schedule_id: str | None
    task_language: str
    support: Support
    rights: list[str]  # effective: what every member inherits
    enabled: list[str]  # sections and functions turned on
    disabled: list[str]  # functions turned off inside an enabled section
    deleted: bool
    version: int


def _department(row: Row[Any]) -> DepartmentOut:
    return DepartmentOut(
        id=row.department_id,
        name=LocalizedText(en=row.name_en, ru=row.name_ru),
        schedule_id=row.schedule_id,
        task_language=row.task_language,
        support=Support.model_validate(orjson.loads(row.support)),
        rights=orjson.loads(row.rights),
        enabled=orjson.loads(row.enabled),
        disabled=orjson.loads(row.disabled),
        deleted=row.deleted,
        version=row.version,
    )


@router.get("/departments", tags=["departments"])
async def list_departments(
    response: Response,
    db: ReadDB,
    _: CaughtUp,
    __: Annotated[Principal, Depends(require("departments.view"))],
    support_enabled: Annotated[
        bool | None, Query(description="only those open (or closed) in the support center")
    ] = None,
    include_deleted: bool = False,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[DepartmentOut]:
    """Departments by ``support.sort``, then name; the total is in ``X-Total-Count``."""
    query = select(departments)
    if not include_deleted:
        query = query.where(departments.c.deleted.is_(False))
    if support_enabled is not None:
        query = query.where(departments.c.support_enabled.is_(support_enabled))
    order = (
        departments.c.sort,
        func.lower(departments.c.name_en),
        departments.c.department_id,  # a stable order for pages
    )
    async with db.engine.connect() as conn:
        rows = await page(conn, query, response, order_by=order, limit=limit, offset=offset)
    return [_department(row) for row in rows]


async def _one_department(db: ReadModelDB, department_id: str, include_deleted: bool) -> Row[Any]:
    query = select(departments).where(departments.c.department_id == department_id)
    if not include_deleted:
        query = query.where(departments.c.deleted.is_(False))
    async with db.engine.connect() as conn:
        return await one_or_404(conn, query, f"department {department_id}")


@router.get("/departments/{department_id}", tags=["departments"])
async def get_department(
    department_id: str,
    db: ReadDB,
    _: CaughtUp,
    __: Annotated[Principal, Depends(require("departments.view"))],
    include_deleted: bool = False,
) -> DepartmentOut:
    return _department(await _one_department(db, department_id, include_deleted))


@router.post("/departments", tags=["departments"], status_code=201)
async def create_department(
    body: DepartmentIn,
    app: DepartmentsDep,
    principal: Annotated[Principal, Depends(require("departments.create"))],
) -> CommandAnswer:
    """A new department, with no rights (DESIGN §1)."""
    return await app.create_department(
        principal.actor,
        body.name,
        schedule_id=body.schedule_id,
        task_language=body.task_language,
        support=body.support,
    )


@router.patch("/departments/{department_id}", tags=["departments"])
async def change_department(
    department_id: str,
    body: DepartmentPatch,
    app: DepartmentsDep,
    principal: Annotated[Principal, Depends(require("departments.edit"))],
    expected_version: ExpectedVersion = None,
) -> CommandAnswer:
    """Change the fields given; ``support`` may be partial; ``schedule_id: null`` detaches."""
    return await app.change_department(principal.actor, department_id, body, expected_version)


@router.delete("/departments/{department_id}", tags=["departments"])
async def delete_department(
    department_id: str,
    app: DepartmentsDep,
    principal: Annotated[Principal, Depends(require("departments.delete"))],
    expected_version: ExpectedVersion = None,
) -> CommandAnswer:
    """Delete it; its members lose the rights it gave them."""
    return await app.delete_department(principal.actor, department_id, expected_version)


@router.post("/departments/{department_id}/rights", tags=["departments"])
async def switch_right(
    department_id: str,
    body: RightSwitch,
    app: DepartmentsDep,
    principal: Annotated[Principal, Depends(require("departments.rights"))],
    expected_version: ExpectedVersion = None,
) -> CommandAnswer:
    """Turn a section or a function (``GET /rights/catalogue`` at identity) on or off."""
    return await app.set_right(
        principal.actor,
        department_id,
        body.right,
        body.enabled,
        expected_version,
        by=Grantor.of(principal.access, principal.id),
    )


class ExpectedResponseOut(BaseModel):
    department_id: str
    schedule_id: str
    timezone: str
    hours: float
    requested_at: datetime
    expected_at: datetime


@router.get("/departments/{department_id}/expected-response", tags=["departments"])
async def expected_response(
    department_id: str,
    db: ReadDB,
    _: CaughtUp,
    __: Annotated[Principal, Depends(require("departments.view"))],
    hours: Annotated[
        float, Query(ge=0, le=MAX_RESPONSE_HOURS, description="business hours to respond in")
    ],
    requested_at: Annotated[
        datetime | None,
        Query(description="when the request is made, with a time zone (default: now)"),
    ] = None,
) -> ExpectedResponseOut:
    """When a request made now (or at ``requested_at``) is due, by the department's schedule."""
    department = await _one_department(db, department_id, include_deleted=False)
    if department.schedule_id is None:
        raise invalid("schedule_id", "the department has no work schedule")
    row = await schedule_row(db, department.schedule_id, status=422)
    at = requested_at or datetime.now(UTC)
    schedule = schedule_out(row)
    # A naive ``requested_at`` is a DomainError naming it (422), as is a bad ``hours``.
    due = expected_response_at(schedule, at, hours)
    return ExpectedResponseOut(
        department_id=department_id,
        schedule_id=schedule.id,
        timezone=schedule.timezone,
        hours=hours,
        requested_at=at.astimezone(UTC),
        expected_at=due,
    )
