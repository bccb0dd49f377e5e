"""``GET /deliveries`` (right ``notifier.deliveries``): the delivery log, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import select

from services.notifier.domain.events import Channel
from services.notifier.projections import deliveries
from shared.access.control import Principal
from shared.http.api import CaughtUp, require
from shared.http.reads import Limit, Offset, page

router = APIRouter(tags=["notifier"])

Status = Literal["queued", "retrying", "sent", "failed"]


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
