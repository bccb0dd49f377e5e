"""HTTP adapter of the notifier context (paths of API.md).

* ``GET /deliveries`` (right ``notifier.deliveries``): the delivery log, newest first;
* ``GET /subscriptions/{staff_id}``, ``PUT /subscriptions/{staff_id}``: one's own
  without a right, anyone's with ``notifier.subscriptions``;
* ``GET /timers`` (right ``notifier.timers``): pending deadlines by default.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from services.notifier.api.deps import NotifierDep
from services.notifier.domain.events import Channel, Language, StaffNotice, TimerKind
from services.notifier.projections import deliveries, subscriptions, timers
from shared.access.control import Principal
from shared.application.commands import CommandAnswer
from shared.http.api import ApiError, CaughtUp, require
from shared.http.reads import Limit, Offset, page

router = APIRouter(tags=["notifier"])

Status = Literal["queued", "retrying", "sent", "failed"]
TimerStatus = Literal["scheduled", "fired", "cancelled"]


# ---------------------------------------------------------------- deliveries


class DeliveryOut(BaseModel):
    id: str
    kind: str
    channel: Channel
    to: str | None
    subject: str | None
    status: Status
    attempts: int
    error: str | None
    event_id: str
    event_type: str
    queued_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None


@router.get("/deliveries")
async def list_deliveries(
    request: Request,
    response: Response,
    _: CaughtUp,
    __: Annotated[Principal, Depends(require("notifier.deliveries"))],
    to: Annotated[str | None, Query(max_length=320)] = None,
    channel: Channel | None = None,
    event_id: Annotated[str | None, Query(max_length=36)] = None,
    status: Status | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[DeliveryOut]:
    """Every notice and its delivery status, newest first (``X-Total-Count``: all that match)."""
    query = select(deliveries)
    if to is not None:
        query = query.where(deliveries.c.to == to)
    if channel is not None:
        query = query.where(deliveries.c.channel == channel)
    if event_id is not None:
        query = query.where(deliveries.c.event_id == event_id)
    if status is not None:
        query = query.where(deliveries.c.status == status)
    async with request.app.state.runtime.db.reading() as conn:
        order = (deliveries.c.position.desc(),)
        rows = await page(conn, query, response, order_by=order, limit=limit, offset=offset)
        found = [
            DeliveryOut(
                id=r.notice_id,
                kind=r.kind,
                channel=r.channel,
                to=r.to,
                subject=r.subject,
                status=r.status,
                attempts=r.attempts,
                error=r.last_error,
                event_id=r.event_id,
                event_type=r.event_type,
                queued_at=r.queued_at,
                sent_at=r.sent_at,
                next_attempt_at=r.next_attempt_at if r.status in ("queued", "retrying") else None,
            )
            for r in rows
        ]
    return found


# ---------------------------------------------------------------- subscriptions


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    language: Language = "en"
    notices: dict[StaffNotice, Annotated[list[Channel], Field(max_length=2)]] = {}


class SubscriptionOut(BaseModel):
    staff_id: str
    language: Language
    notices: dict[StaffNotice, list[Channel]]
    version: int


def _may_manage(principal: Principal, staff_id: str) -> None:
    """One's own subscription needs no right; someone else's needs ``notifier.subscriptions``."""
    if principal.kind != "staff":
        raise ApiError(403, "forbidden", "subscriptions are for staff")
    if principal.id != staff_id and not principal.access.has("notifier.subscriptions"):
        raise ApiError(403, "forbidden", "the right notifier.subscriptions is required")


@router.get("/subscriptions/{staff_id}")
async def get_subscription(
    staff_id: Annotated[str, Field(max_length=64)],
    request: Request,
    _: CaughtUp,
    principal: Annotated[Principal, Depends(require())],
) -> SubscriptionOut:
    """Which notices the staff member gets, by channel (nothing until they subscribe)."""
    _may_manage(principal, staff_id)
    async with request.app.state.runtime.db.reading() as conn:
        row = (
            await conn.execute(select(subscriptions).where(subscriptions.c.staff_id == staff_id))
        ).first()
    if row is None:
        return SubscriptionOut(staff_id=staff_id, language="en", notices={}, version=0)
    return SubscriptionOut(
        staff_id=staff_id,
        language=row.language,
        notices=orjson.loads(row.notices),
        version=row.version,
    )


@router.put("/subscriptions/{staff_id}")
async def put_subscription(
    staff_id: Annotated[str, Field(max_length=64)],
    body: SubscriptionIn,
    app: NotifierDep,
    principal: Annotated[Principal, Depends(require())],
) -> CommandAnswer:
    """Replace the subscription: ``{"language", "notices": {notice: ["email", "sms"]}}``."""
    _may_manage(principal, staff_id)
    if len(staff_id) > 64:
        raise ApiError(422, "invalid_input", "staff_id: at most 64 characters", field="staff_id")
    return await app.change_subscription(
        staff_id, body.language, {k: list(v) for k, v in body.notices.items()}, principal.actor
    )


# ---------------------------------------------------------------- timers


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
