"""The clients service's internal HTTP API: a client's addresses, and the messages sent
to them (text and files), for the notifier; who wrote from an address, for tickets.

Every endpoint needs a service token (``shared.http.internal``) of the service it names
(the notifier, or tickets for ``/clients/by-email``): another service's is 403
``service_not_allowed``; staff and client tokens are refused. ``/clients/by-email``
takes ``?min_position`` (its answer as of that position of this service's log at
least, 503 until the read models get there): tickets keeps its answers and asks again,
as of the fact, when a fact tells it an address changed. E-mails, phones and names
are sealed on ``clients.events``, so the notifier asks here, when a notice is due, where
to send it.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import func, select

from services.clients.api.deps import ClientsDep
from services.clients.projections import client_messages, clients
from services.clients.projections.companies import company_contacts, company_members
from shared.http import downloads
from shared.http.api import ApiError, CaughtUp
from shared.http.internal import require_service
from shared.http.reads import not_found

router = APIRouter(prefix="/internal", tags=["internal"])

# Who calls which route: the notifier reads cards and messages for its notices;
# tickets' mail gateway looks up who wrote from an address.
Service = Annotated[str, Depends(require_service("notifier"))]
MailGateway = Annotated[str, Depends(require_service("tickets"))]


class ContactOut(BaseModel):
    contact_id: str
    name: str | None
    email: str | None
    email_generated: bool
    phone: str | None
    notifications: bool


class CardOut(BaseModel):
    """Where notices to the client go: its account and its company's contacts."""

    client_id: str
    login: str | None
    language: str
    email: str | None
    phone: str | None
    phone_verified: bool
    contact_person: str | None
    erased: bool
    company_id: str | None
    contacts: list[ContactOut]


@router.get("/clients/{client_id}/card")
async def client_card(client_id: str, request: Request, _: Service) -> CardOut:
    async with request.app.state.runtime.db.reading() as conn:
        row = (await conn.execute(select(clients).where(clients.c.client_id == client_id))).first()
        if row is None:
            raise not_found(f"client {client_id}")
        company_id = (
            await conn.execute(
                select(company_members.c.company_id).where(company_members.c.client_id == client_id)
            )
        ).scalar()
        contacts = []
        if company_id is not None:
            contacts = list(
                await conn.execute(
                    select(company_contacts)
                    .where(company_contacts.c.company_id == company_id)
                    .order_by(company_contacts.c.position)
                )
            )
    return CardOut(
        client_id=client_id,
        login=row.login,
        language=row.language,
        email=row.email,
        phone=row.phone,
        phone_verified=row.phone_verified,
        contact_person=row.contact_person,
        erased=row.erased,
        company_id=company_id,
        contacts=[
            ContactOut(
                contact_id=c.contact_id,
                name=c.name,
                email=c.email,
                email_generated=c.email_generated,
                phone=c.phone,
                notifications=c.notifications,
            )
            for c in contacts
        ],
    )


class MessageFileOut(BaseModel):
    attachment_id: str
    filename: str
    content_type: str
    size: int


class ClientMessageOut(BaseModel):
    """A message to one client (macros filled for them) as the mail to them carries it."""

    client_id: str
    message_id: str
    subject: str | None
    text: str | None
    language: str
    violation: dict[str, Any] | None
    attachments: list[MessageFileOut]


async def _message(request: Request, client_id: str, message_id: str) -> Any:
    async with request.app.state.runtime.db.reading() as conn:
        row = (
            await conn.execute(
                select(client_messages).where(
                    client_messages.c.client_id == client_id,
                    client_messages.c.message_id == message_id,
                )
            )
        ).first()
    if row is None:
        raise not_found(f"message {message_id} to {client_id}")
    return row


@router.get("/clients/{client_id}/messages/{message_id}")
async def client_message(
    client_id: str, message_id: str, request: Request, _: Service, __: CaughtUp
) -> ClientMessageOut:
    row = await _message(request, client_id, message_id)
    return ClientMessageOut(
        client_id=client_id,
        message_id=message_id,
        subject=row.subject,
        text=row.text,
        language=row.language,
        violation=orjson.loads(row.violation) if row.violation else None,
        attachments=[
            MessageFileOut(**{k: a[k] for k in MessageFileOut.model_fields})
            for a in orjson.loads(row.attachments)
        ],
    )


@router.get(
    "/clients/{client_id}/messages/{message_id}/attachments/{attachment_id}",
    response_class=Response,
)
async def client_message_file(
    client_id: str,
    message_id: str,
    attachment_id: str,
    request: Request,
    app: ClientsDep,
    _: Service,
) -> Response:
    row = await _message(request, client_id, message_id)
    if any(a.get("attachment_id") == attachment_id for a in orjson.loads(row.attachments)):
        found = await app.attachments.content(attachment_id)
        if found is not None:
            record, data = found
            return downloads.download(record.filename, record.content_type, data)
    raise not_found(f"attachment {attachment_id}")


class SenderOut(BaseModel):
    """Who wrote from an address: the client with that e-mail, or a company contact's
    client (the company's first member)."""

    client_id: str
    contact_id: str | None = None


@router.get("/clients/by-email")
async def client_by_email(
    request: Request,
    _: MailGateway,
    email: Annotated[str, Query(min_length=3, max_length=320)],
    __: CaughtUp,  # ?min_position: the gateway asks as of the last fact that moved an address
) -> SenderOut:
    address = email.strip().lower()
    async with request.app.state.runtime.db.reading() as conn:
        client_id = (
            await conn.execute(
                select(clients.c.client_id)
                .where(func.lower(clients.c.email) == address, clients.c.erased.is_(False))
                .order_by(clients.c.client_id)
                .limit(1)
            )
        ).scalar()
        if client_id is not None:
            return SenderOut(client_id=client_id)
        contact = (
            await conn.execute(
                select(company_contacts.c.contact_id, company_contacts.c.company_id)
                .where(func.lower(company_contacts.c.email) == address)
                .order_by(company_contacts.c.position)
                .limit(1)
            )
        ).first()
        if contact is not None:
            member = (
                await conn.execute(
                    select(company_members.c.client_id)
                    .where(company_members.c.company_id == contact.company_id)
                    .order_by(company_members.c.position)
                    .limit(1)
                )
            ).scalar()
            if member is not None:
                return SenderOut(client_id=member, contact_id=contact.contact_id)
    raise ApiError(404, "not_found", "no client writes from this address")
