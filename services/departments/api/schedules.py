"""``/schedules``: work schedules (business hours, time zone, holidays).

A department names one; its expected response time is counted by it.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.engine import Row

from services.departments.api.deps import DepartmentsDep
from services.departments.domain.events import WeeklyHours
from services.departments.domain.schedule import (
    SchedulePatch,
)
from services.departments.projections import schedules
from shared.access.control import Principal
from shared.application.commands import CommandAnswer
from shared.http.api import CaughtUp, ExpectedVersion, ReadDB, StrictBody, invalid, require
from shared.http.reads import Limit, Offset, not_found, page
from shared.readmodel.database import ReadModelDB

router = APIRouter()


class ScheduleIn(StrictBody):
    name: str = Field(min_length=1, max_length=100)
    timezone: str = Field(min_length=1, max_length=64)
    weekly: dict[str, list[list[str]]] = Field(
        description='{"mon": [["09:00", "18:00"]], ...}; "24:00" may end a range'
    )
    holidays: list[str] = Field(default=[], description='ISO dates, like "2026-12-31"')


class ScheduleOut(BaseModel):
    id: str
    name: str
    timezone: str
    weekly: WeeklyHours
    holidays: list[date]
    version: int


def schedule_out(row: Row[Any]) -> ScheduleOut:
    return ScheduleOut(
        id=row.schedule_id,
        name=row.name,
        timezone=row.timezone,
        weekly=WeeklyHours.model_validate(orjson.loads(row.weekly)),
        holidays=[date.fromisoformat(d) for d in orjson.loads(row.holidays)],
        version=row.version,
    )


async def schedule_row(db: ReadModelDB, schedule_id: str, status: int = 404) -> Row[Any]:
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(select(schedules).where(schedules.c.schedule_id == schedule_id))
        ).first()
    if row is None:
        if status == 422:  # a department names it, but this read model does not know it yet
            raise invalid("schedule_id", f"schedule {schedule_id} is not known (yet)")
        raise not_found(f"schedule {schedule_id}")
    return row


@router.post("/schedules", tags=["schedules"], status_code=201)
async def create_schedule(
    body: ScheduleIn,
    app: DepartmentsDep,
    principal: Annotated[Principal, Depends(require("departments.schedules"))],
) -> CommandAnswer:
    return await app.create_schedule(
        principal.actor, body.name, body.timezone, body.weekly, body.holidays
    )


@router.get("/schedules", tags=["schedules"])
async def list_schedules(
    response: Response,
    db: ReadDB,
    _: CaughtUp,
    __: Annotated[Principal, Depends(require("departments.view"))],
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[ScheduleOut]:
    """Schedules by name; the total is in ``X-Total-Count``."""
    order = (func.lower(schedules.c.name), schedules.c.schedule_id)
    async with db.engine.connect() as conn:
        rows = await page(
            conn, select(schedules), response, order_by=order, limit=limit, offset=offset
        )
    return [schedule_out(row) for row in rows]


@router.get("/schedules/{schedule_id}", tags=["schedules"])
async def get_schedule(
    schedule_id: str,
    db: ReadDB,
    _: CaughtUp,
    __: Annotated[Principal, Depends(require("departments.view"))],
) -> ScheduleOut:
    return schedule_out(await schedule_row(db, schedule_id))


@router.patch("/schedules/{schedule_id}", tags=["schedules"])
async def change_schedule(
    schedule_id: str,
    body: SchedulePatch,
    app: DepartmentsDep,
    principal: Annotated[Principal, Depends(require("departments.schedules"))],
    expected_version: ExpectedVersion = None,
) -> CommandAnswer:
    """Change the fields given (name, timezone, weekly, holidays)."""
    return await app.change_schedule(principal.actor, schedule_id, body, expected_version)
