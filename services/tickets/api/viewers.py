"""``GET /tickets/{ticket_id}/viewers?at=``: who could see a ticket at a moment, and why.

Rules it keeps:

* Staff only, and only on a ticket they may see now (``tickets.view`` and
  visibility): any other ticket answers 404 as if it did not exist; a client
  is refused (403), since the answer names staff.
* ``at`` is an ISO 8601 moment (one without a zone is UTC); none means now.
  A moment that is not one is a 422 naming ``at``.
* The answer comes from the log (``app.viewers``): the ticket's own stream up
  to ``at`` and identity's access facts as they stood then, so a past moment
  is answered as it was, not as it is now. ``history_from`` says since when
  access facts are kept; before it the staff list may be short.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from services.tickets.api.deps import TicketsDep
from services.tickets.api.tickets import Caller, visible_row
from services.tickets.app.viewers import who_could_see
from shared.http.api import ApiError, CaughtUp, ReadDB

router = APIRouter()


class StaffViewerOut(BaseModel):
    id: str
    login: str
    name: str
    reasons: list[str]
    sources: dict[str, list[str]]
    access_since: datetime


class ClientViewerOut(BaseModel):
    id: str
    reasons: list[str]


class ViewersOut(BaseModel):
    ticket_id: str
    at: datetime
    existed: bool
    department_id: str | None
    assignee_id: str | None
    client_id: str | None
    company_id: str | None
    staff: list[StaffViewerOut]
    clients: list[ClientViewerOut]
    history_from: datetime | None


@router.get("/tickets/{ticket_id}/viewers", tags=["tickets"])
async def ticket_viewers(
    ticket_id: str,
    app: TicketsDep,
    db: ReadDB,
    _: CaughtUp,
    principal: Caller,
    at: Annotated[
        datetime | None,
        Query(description="the moment asked about, ISO 8601 (no zone: UTC); default now"),
    ] = None,
) -> ViewersOut:
    """Each staff member and client who could see the ticket at ``at``, with the reasons:
    ``full_access``, ``all_departments``, ``department`` (a member of its department
    then), ``assignee``, ``messages``; clients ``client`` and ``company_manager``."""
    if principal.kind != "staff":
        raise ApiError(403, "forbidden", "only staff may ask who could see a ticket")
    await visible_row(db, principal, ticket_id)
    moment = datetime.now(UTC) if at is None else at
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    found = await who_could_see(app, db, ticket_id, moment)
    return ViewersOut(
        ticket_id=found.ticket_id,
        at=found.at,
        existed=found.existed,
        department_id=found.department_id,
        assignee_id=found.assignee_id,
        client_id=found.client_id,
        company_id=found.company_id,
        staff=[
            StaffViewerOut(
                id=s.staff_id,
                login=s.login,
                name=s.name,
                reasons=s.reasons,
                sources=s.sources,
                access_since=s.access_since,
            )
            for s in found.staff
        ],
        clients=[ClientViewerOut(id=c.client_id, reasons=c.reasons) for c in found.clients],
        history_from=found.history_from,
    )
