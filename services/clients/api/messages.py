"""Messages to clients (one, a list, or everyone a filter matches), their attachments,
and abuse notices (a violation with its deadline, action and penalty points).

Sending needs ``clients.message`` (penalty points also ``clients.penalty``); a
client reads their own messages and downloads their attachments, staff need
``clients.view``; anyone else gets 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Depends, File, Response, UploadFile
from pydantic import BaseModel, Field
from sqlalchemy import select

from services.clients.api.deps import ClientsDep, may_read_client
from services.clients.app.handlers import MessageDraft
from services.clients.domain.events import Attachment, Violation
from services.clients.projections import client_messages
from services.clients.projections.queries import ClientFilter
from shared.access.control import Principal
from shared.http import downloads
from shared.http.api import ApiError, CaughtUp, ReadDB, StrictBody, require
from shared.http.reads import Limit, Offset, not_found, page

router = APIRouter(tags=["messages"])


class ViolationIn(StrictBody):
    deadline: datetime
    on_no_reaction: Literal["move_to_active", "suspend_services"]
    penalty_points: int = Field(default=0, ge=0, le=1000)
    comment: str = Field(default="", max_length=2000)


class MessageIn(StrictBody):
    client_ids: list[str] | None = Field(default=None, max_length=100_000)
    filter: ClientFilter | None = None
    category_id: str | None = Field(default=None, max_length=64)
    subject: str | dict[str, str]
    text: str | dict[str, str]
    forbid_replies: bool = False
    assign_replies_to_me: bool = False
    strict_language: bool = False
    attachments: list[str] = Field(default=[], max_length=20)
    violation: ViolationIn | None = None


class MessageOut(BaseModel):
    id: str
    version: int
    position: int
    recipients: int
    skipped_for_language: int


@router.post("/clients/messages", status_code=201)
async def send_message(
    body: MessageIn,
    app: ClientsDep,
    _: CaughtUp,
    principal: Annotated[Principal, Depends(require("clients.message"))],
) -> MessageOut:
    """Message one client, a list, or everyone matching a filter (one event per client).

    Recipients are read from the client list; ``?min_position=`` first waits
    for clients just registered.
    """
    violation = None
    if body.violation is not None:
        if body.violation.penalty_points and not principal.access.has("clients.penalty"):
            raise ApiError(403, "forbidden", "the right 'clients.penalty' is required")
        violation = Violation(**body.violation.model_dump())
    report = await app.send_message(
        principal.actor,
        MessageDraft(
            client_ids=body.client_ids,
            filter=body.filter,
            subject=body.subject,
            text=body.text,
            category_id=body.category_id,
            forbid_replies=body.forbid_replies,
            assign_replies_to_me=body.assign_replies_to_me,
            strict_language=body.strict_language,
            attachment_ids=body.attachments,
            violation=violation,
        ),
    )
    return MessageOut(
        id=report.message_id,
        version=1,
        position=report.position,
        recipients=report.recipients,
        skipped_for_language=report.skipped_for_language,
    )


@router.post("/clients/attachments", status_code=201)
async def upload_attachment(
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.message"))],
    file: Annotated[UploadFile, File(description="up to 10 MB")],
) -> Attachment:
    data = await file.read()
    return await app.attachments.put(data, file.filename, file.content_type, principal.id)


class ClientMessageOut(BaseModel):
    message_id: str
    client_id: str
    category_id: str | None
    subject: str | None
    text: str | None
    language: str
    forbid_replies: bool
    assign_replies_to: str | None
    attachments: list[Attachment]
    violation: Violation | None
    notice_state: str | None
    action_taken: str | None
    sent_at: datetime
    sent_by: str | None
    impersonator_id: str | None


@router.get("/clients/{client_id}/messages")
async def client_messages_list(
    client_id: str,
    db: ReadDB,
    response: Response,
    _: CaughtUp,
    principal: Annotated[Principal, Depends(require())],
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[ClientMessageOut]:
    """Messages to one client, newest first (a client sees only their own)."""
    may_read_client(principal, client_id)
    query = select(client_messages).where(client_messages.c.client_id == client_id)
    async with db.engine.connect() as conn:
        order = (client_messages.c.sent_at.desc(), client_messages.c.message_id)
        rows = await page(conn, query, response, order_by=order, limit=limit, offset=offset)
        found = [
            ClientMessageOut(
                **{
                    **row._mapping,
                    "attachments": orjson.loads(row.attachments),
                    "violation": orjson.loads(row.violation) if row.violation else None,
                }
            )
            for row in rows
        ]
    return found


@router.get(
    "/clients/{client_id}/messages/{message_id}/attachments/{attachment_id}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def client_message_attachment(
    client_id: str,
    message_id: str,
    attachment_id: str,
    db: ReadDB,
    app: ClientsDep,
    _: CaughtUp,
    principal: Annotated[Principal, Depends(require())],
) -> Response:
    """A file sent with a message, for its recipient (or staff with ``clients.view``), as a
    download (``Content-Disposition: attachment``, ``nosniff``); 404 for anyone else."""
    may_read_client(principal, client_id)
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(
                select(client_messages.c.attachments).where(
                    client_messages.c.client_id == client_id,
                    client_messages.c.message_id == message_id,
                )
            )
        ).first()
    sent = orjson.loads(row.attachments) if row is not None else []
    if not any(a.get("attachment_id") == attachment_id for a in sent):
        raise not_found(f"attachment {attachment_id}")
    found = await app.attachments.content(attachment_id)
    if found is None:
        raise not_found(f"attachment {attachment_id}")
    record, data = found
    return downloads.download(record.filename, record.content_type, data)
