"""Who could see a ticket at a moment T, and why, from the log (``GET /tickets/{id}/viewers``).

Rules it keeps:

* The ticket at T is its own stream up to T (``Tickets.load(until=T)``): the
  department it was in and whom it was assigned to then, not now.
* Each principal's access at T is the last access fact identity published at
  or before T (``copies.access_history``): a member moved out of the
  department after T is listed for T, and not for a moment after the move.
* The reasons are visibility's rules (``app.visibility.staff_reasons``,
  ``client_reasons``), the same that decide what a request may see now; a
  principal disabled at T is never listed.
* On the client side: the ticket's client, and the client manager of the
  company the client belonged to at T.
* Only names, logins and reasons are answered (no contact data or secrets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.tickets.app import visibility
from services.tickets.app.handlers import Tickets
from services.tickets.copies import access_history, support
from shared.readmodel.database import ReadModelDB


@dataclass(frozen=True)
class StaffViewer:
    staff_id: str
    login: str
    name: str
    reasons: list[str]
    # Where the deciding rights came from ("individual", "department:<id>", "full_access").
    sources: dict[str, list[str]]
    access_since: datetime  # the access fact in force at T


@dataclass(frozen=True)
class ClientViewer:
    client_id: str
    reasons: list[str]


@dataclass
class Viewers:
    ticket_id: str
    at: datetime
    existed: bool  # False: the ticket was opened after T
    department_id: str | None = None
    assignee_id: str | None = None
    client_id: str | None = None
    company_id: str | None = None
    staff: list[StaffViewer] = field(default_factory=list)
    clients: list[ClientViewer] = field(default_factory=list)
    history_from: datetime | None = None  # the oldest access fact kept


DECIDING = (visibility.VIEW, visibility.ALL_DEPARTMENTS, visibility.MESSAGES)


async def who_could_see(tickets: Tickets, db: ReadModelDB, ticket_id: str, at: datetime) -> Viewers:
    """Every staff member and client who could see ``ticket_id`` at ``at``, with why."""
    ticket = await tickets.load(ticket_id, until=at)
    async with db.reading() as conn:
        since = await access_history.history_from(conn)
        if not ticket.id:
            return Viewers(ticket_id, at, existed=False, history_from=since)
        answer = Viewers(
            ticket_id,
            at,
            existed=True,
            department_id=ticket.department_id,
            assignee_id=ticket.assignee_id,
            client_id=ticket.client_id,
            history_from=since,
        )
        for access in await access_history.as_of(conn, at, "staff"):
            if access.disabled:
                continue
            reasons = visibility.staff_reasons(
                access.principal_id, access, ticket.department_id, ticket.assignee_id
            )
            if reasons:
                answer.staff.append(
                    StaffViewer(
                        staff_id=access.principal_id,
                        login=access.login,
                        name=await support.staff_name(conn, access.principal_id),
                        reasons=reasons,
                        sources={r: access.sources[r] for r in DECIDING if r in access.sources},
                        access_since=access.since,
                    )
                )
        owner = await access_history.one_as_of(conn, ticket.client_id, at)
        company = owner.company_id if owner is not None else ticket.company_id
        answer.company_id = company
        candidates = [owner] if owner is not None else []
        if company is not None:
            candidates += await access_history.as_of(conn, at, "client", company_id=company)
        seen: set[str] = set()
        for client in candidates:
            if client is None or client.disabled or client.principal_id in seen:
                continue
            seen.add(client.principal_id)
            reasons = visibility.client_reasons(
                client.principal_id,
                client.company_id,
                client.company_manager,
                ticket.client_id,
                company,
            )
            if reasons:
                answer.clients.append(ClientViewer(client.principal_id, reasons))
    return answer
