"""``GET /timers`` (right ``notifier.timers``): pending deadlines by default."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import select

from services.notifier.domain.events import TimerKind
from services.notifier.projections import timers
from shared.access.control import Principal
from shared.http.api import CaughtUp, require
from shared.http.reads import Limit, Offset, page

router = APIRouter(tags=["notifier"])

TimerStatus = Literal["scheduled", "fired", "cancelled"]


class TimerOut(BaseModel):
    id: str
    kind: TimerKind
    due_at: datetime
    status: TimerStatus
    ticket_id: str | None
    client_id: str | None
    message_id: str | None
    department_id: str | None
    source_event_id: str
    fired_at: datetime | None
    fired_event_id: str | None
    cancel_reason: str | None


@router.get("/timers")
async def list_timers(
    request: Request,
    response: Response,
    _: CaughtUp,
    __: Annotated[Principal, Depends(require("notifier.timers"))],
    status: TimerStatus | None = "scheduled",
    kind: TimerKind | None = None,
    ticket_id: Annotated[str | None, Query(max_length=64)] = None,
    client_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[TimerOut]:
    """Deadlines, soonest first: pending ones unless ``status`` says otherwise."""
    query = select(timers)
    if status is not None:
        query = query.where(timers.c.status == status)
    if kind is not None:
        query = query.where(timers.c.kind == kind)
    if ticket_id is not None:
        query = query.where(timers.c.ticket_id == ticket_id)
    if client_id is not None:
        query = query.where(timers.c.client_id == client_id)
    async with request.app.state.runtime.db.reading() as conn:
        order = (timers.c.due_at, timers.c.timer_id)
        rows = await page(conn, query, response, order_by=order, limit=limit, offset=offset)
        found = [
            TimerOut(
                id=r.timer_id,
                kind=r.kind,
                due_at=r.due_at,
                status=r.status,
                ticket_id=r.ticket_id,
                client_id=r.client_id,
                message_id=r.message_id,
                department_id=r.department_id,
                source_event_id=r.source_event_id,
                fired_at=r.fired_at,
                fired_event_id=r.fired_event_id,
                cancel_reason=r.cancel_reason,
            )
            for r in rows
        ]
    return found
