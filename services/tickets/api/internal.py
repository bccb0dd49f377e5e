"""The tickets service's internal HTTP API: a ticket's messages and files, for the notifier.

Every endpoint needs the notifier's service token (``shared.http.internal``): another
service's is 403 ``service_not_allowed``; staff and client tokens are refused. Ticket
texts are sealed on ``tickets.events`` with keys of this service, so the notifier asks
here, when a reply is to be mailed, for the reply's text, the ticket's number and
subject, and the files to attach; ``?min_position=`` (the position of the event the
notice is for) waits for the read model to have it. Internal notes are never handed out.
A ticket that still belongs to a contact (an unknown sender's mail, not yet linked to
a client) names the contact's address and name in ``contact``: the reply goes to them
by mail.
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel
from sqlalchemy import select

from services.tickets.api.deps import TicketsDep
from services.tickets.copies import support
from services.tickets.domain.ticket import is_contact
from services.tickets.projections.queue import ticket_contacts, ticket_entries, tickets
from shared.http.api import CaughtUp
from shared.http.downloads import download
from shared.http.internal import require_service
from shared.http.reads import not_found

router = APIRouter(prefix="/internal", tags=["internal"])

# The notifier reads tickets to write its notices; no other service calls these.
Service = Annotated[str, Depends(require_service("notifier"))]


class FileOut(BaseModel):
    attachment_id: str
    filename: str | None
    content_type: str
    size: int


class ContactOut(BaseModel):
    contact_id: str
    email: str | None  # None once erased
    name: str | None


class TicketMessageOut(BaseModel):
    """A message of a ticket as a mail to the client carries it."""

    ticket_id: str
    number: int | None
    subject: str | None
    department_id: str | None
    client_id: str
    message_id: str
    body: str | None
    attachments: list[FileOut]
    reply_to: str | None  # the department's inbound address
    contact: ContactOut | None = None  # the ticket is still a contact's: mail them


@router.get("/tickets/{ticket_id}/messages/{message_id}")
async def ticket_message(
    ticket_id: str, message_id: str, request: Request, _: Service, __: CaughtUp
) -> TicketMessageOut:
    async with request.app.state.runtime.db.reading() as conn:
        ticket = (
            await conn.execute(select(tickets).where(tickets.c.ticket_id == ticket_id))
        ).first()
        entry = (
            await conn.execute(
                select(ticket_entries).where(
                    ticket_entries.c.ticket_id == ticket_id,
                    ticket_entries.c.message_id == message_id,
                    ticket_entries.c.visible_to_client.is_(True),
                    ticket_entries.c.type.in_(("opened", "message")),
                )
            )
        ).first()
        reply_to = await support.inbound_address(conn, ticket.department_id if ticket else None)
        contact = None
        if ticket is not None and is_contact(ticket.client_id):
            contact = (
                await conn.execute(
                    select(ticket_contacts).where(ticket_contacts.c.ticket_id == ticket_id)
                )
            ).first()
    if ticket is None or entry is None:
        raise not_found(f"message {message_id} of ticket {ticket_id}")
    files = orjson.loads(entry.attachments) if entry.attachments else []
    return TicketMessageOut(
        ticket_id=ticket_id,
        number=ticket.number,
        subject=ticket.subject,
        department_id=ticket.department_id,
        client_id=ticket.client_id,
        message_id=message_id,
        body=entry.body,
        attachments=[FileOut(**{k: f[k] for k in FileOut.model_fields}) for f in files],
        reply_to=reply_to,
        contact=ContactOut(contact_id=contact.contact_id, email=contact.email, name=contact.name)
        if contact is not None
        else None,
    )


class TicketOut(BaseModel):
    ticket_id: str
    number: int | None
    subject: str | None
    department_id: str | None
    client_id: str
    reply_to: str | None  # the department's inbound address


@router.get("/tickets/{ticket_id}")
async def ticket_summary(ticket_id: str, request: Request, _: Service, __: CaughtUp) -> TicketOut:
    async with request.app.state.runtime.db.reading() as conn:
        ticket = (
            await conn.execute(select(tickets).where(tickets.c.ticket_id == ticket_id))
        ).first()
        reply_to = await support.inbound_address(conn, ticket.department_id if ticket else None)
    if ticket is None:
        raise not_found(f"ticket {ticket_id}")
    return TicketOut(
        ticket_id=ticket_id,
        number=ticket.number,
        subject=ticket.subject,
        department_id=ticket.department_id,
        client_id=ticket.client_id,
        reply_to=reply_to,
    )


@router.get("/tickets/{ticket_id}/attachments/{attachment_id}", response_class=Response)
async def ticket_file(
    ticket_id: str, attachment_id: str, request: Request, app: TicketsDep, _: Service
) -> Response:
    """A file of a message the client sees (never an internal note's)."""
    async with request.app.state.runtime.db.reading() as conn:
        rows = await conn.execute(
            select(ticket_entries.c.attachments).where(
                ticket_entries.c.ticket_id == ticket_id,
                ticket_entries.c.visible_to_client.is_(True),
                ticket_entries.c.attachments.is_not(None),
            )
        )
        named = [f for (text,) in rows for f in orjson.loads(text)]
    if app.files is not None and any(f["attachment_id"] == attachment_id for f in named):
        found = await app.files.content(attachment_id)
        if found is not None:
            record, filename, data = found
            return download(filename, record.content_type, data)
    raise not_found(f"attachment {attachment_id}")
