"""HTTP adapter of the ticket core: ``/support/departments`` and ``/tickets`` (API.md, tickets).

Commands go through ``Tickets`` and answer ``{"id", "version", "position"}``
(plus ``message_id`` for what writes a message). Reads come from the
``ticket_queue`` read model and accept ``?min_position=``. A queue page is one
call: ``GET /tickets?counts=true`` answers, besides the page and its total, each
status's total under the other filters (``X-Status-Counts``, what
``GET /tickets/counts`` answers), from the one count statement the total needs.

Collision safety: ``expected_version`` (in the body or the query) on replies,
notes, assignments, transfers, closing and reopening is the ticket version
the caller saw; if the ticket changed since, the answer is 409
``ticket_changed`` with ``changes`` (what happened after that version, as
far as the caller may see it) and nothing is written.

Threads opened by a message to a client carry no text here (it is sealed
personal data of the clients context): ``subject`` and the first entry's
``body`` are null and ``message_ref`` names the message; read it with
``GET /clients/{client_id}/messages`` at the clients service.

Tickets from contacts (an unknown sender's mail, ``origin`` ``contact``): their
``client_id`` is the contact's id (``contact-…``) until staff link them to a
client (``POST /tickets/{id}/client``); staff see who wrote in ``contact``.

Files: ``POST /tickets/attachments`` (multipart ``file``) keeps one and
answers its ``attachment_id``; ``attachments: [ids]`` on an opening or a
message sends them with it. ``GET /tickets/{id}/attachments/{attachment_id}``
downloads one for whoever sees the ticket and the message it came with.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import orjson
from fastapi import APIRouter, Body, Depends, File, Query, Request, Response, UploadFile
from pydantic import BaseModel, Field
from sqlalchemy import select

from services.tickets.api.deps import TicketsDep
from services.tickets.app import visibility
from services.tickets.app.handlers import MessageAnswer, NotAllowed, OpenDraft
from services.tickets.copies import support
from services.tickets.domain.ticket import (
    MAX_ATTACHMENTS,
    MAX_BODY,
    MAX_COMMENT,
    MAX_SUBJECT,
    TicketChanged,
)
from services.tickets.projections.queries import (
    STATUSES,
    QueueFilter,
    Scope,
    Sort,
    Status,
    page_query,
    total,
    totals_by_status,
)
from services.tickets.projections.queue import ticket_contacts, ticket_entries, tickets
from shared.access.control import Principal
from shared.application.commands import CommandAnswer
from shared.domain.business_hours import expected_response_at
from shared.http.api import ApiError, CaughtUp, ReadDB, StrictBody, invalid, require
from shared.http.downloads import download
from shared.http.reads import not_found
from shared.readmodel.database import ReadModelDB

router = APIRouter()

T = TypeVar("T")
MAX_ID = 64
STATUS_COUNTS = "X-Status-Counts"


Caller = Annotated[Principal, Depends(require())]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=100_000)]
SeenQuery = Annotated[
    int | None,
    Query(ge=1, description="the ticket version the caller saw (409 ticket_changed otherwise)"),
]


async def _run(command: Awaitable[T]) -> T:
    """Run a command, turning the ticket core's own refusals into API errors."""
    try:
        return await command
    except NotAllowed as refused:
        raise ApiError(403, "forbidden", refused.message, field=refused.field) from None
    except TicketChanged as changed:
        raise ApiError(
            409,
            changed.code,
            changed.message,
            current_version=changed.current,
            changes=[c.to_dict() for c in changed.changes],
        ) from None


def _seen(in_body: int | None, in_query: int | None) -> int | None:
    if in_body is not None and in_query is not None and in_body != in_query:
        raise invalid("expected_version", "given twice with different values")
    return in_body if in_body is not None else in_query


# ---------------------------------------------------------------- support departments


class SupportDepartmentOut(BaseModel):
    id: str
    name: dict[str, str]
    description: str | None  # only when more than one department is offered
    sort: int
    charge_requests: bool
    expected_response: datetime  # when a request made now is due, by the department's hours


@router.get("/support/departments", tags=["support"])
async def support_departments(
    app: TicketsDep,
    db: ReadDB,
    _: CaughtUp,
    principal: Caller,
    client_id: Annotated[
        str | None, Query(max_length=MAX_ID, description="staff: as this client sees them")
    ] = None,
) -> list[SupportDepartmentOut]:
    """The departments open to the client, by their sort value.

    Available in the support center, shown for the client's project; those
    that charge for requests only while the client has paid requests left.
    Staff (``tickets.view``) see every support department, or with
    ``client_id`` what that client is offered.
    """
    if principal.kind == "client":
        if client_id not in (None, principal.id):
            raise not_found(f"client {client_id}")
        client_id = principal.id
    elif not principal.access.has(visibility.VIEW):
        raise ApiError(403, "forbidden", f"the right {visibility.VIEW!r} is required")
    async with db.engine.connect() as conn:
        offered = await support.support_departments(conn)
        if client_id is not None:
            client = await support.client(conn, client_id)
            if principal.kind == "staff" and client is None:
                raise invalid("client_id", f"no client {client_id}")
            project_id = client.project_id if client else None
            offered = [d for d in offered if d.serves(project_id)]
            charging = any(d.charge_requests for d in offered)
            if charging and await app.catalog.paid_balance(client_id) <= 0:
                offered = [d for d in offered if not d.charge_requests]
        hours = await support.hours_of_each(conn, [d.department_id for d in offered])
    now = datetime.now(UTC)
    several = len(offered) > 1
    # Departments on the same hours (all those without a schedule) are due at the same
    # moment: computed once per schedule (the copy hands out one object per schedule).
    due: dict[int, datetime] = {}

    def expected(department_id: str) -> datetime:
        schedule = hours[department_id]
        if id(schedule) not in due:
            due[id(schedule)] = expected_response_at(schedule, now, app.response_hours)
        return due[id(schedule)]

    return [
        SupportDepartmentOut(
            id=d.department_id,
            name={"en": d.name_en, "ru": d.name_ru},
            description=d.description if several else None,
            sort=d.sort,
            charge_requests=d.charge_requests,
            expected_response=expected(d.department_id),
        )
        for d in offered
    ]


# ---------------------------------------------------------------- opening


class OpenIn(StrictBody):
    department_id: str = Field(min_length=1, max_length=MAX_ID)
    category_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    subject: str = Field(min_length=1, max_length=MAX_SUBJECT)
    body: str = Field(min_length=1, max_length=MAX_BODY)
    client_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    attachments: list[Annotated[str, Field(min_length=1, max_length=MAX_ID)]] = Field(
        default=[], max_length=MAX_ATTACHMENTS, description="ids from POST /tickets/attachments"
    )


class OpenedOut(BaseModel):
    id: str
    version: int
    position: int
    message_id: str
    number: int | None = None  # the ticket's short number (#1042)


def _message_answer(answer: MessageAnswer) -> OpenedOut:
    return OpenedOut(
        id=answer.id,
        version=answer.version,
        position=answer.position,
        message_id=answer.message_id,
        number=answer.number,
    )


@router.post("/tickets", status_code=201, tags=["tickets"])
async def open_ticket(body: OpenIn, app: TicketsDep, _: CaughtUp, principal: Caller) -> OpenedOut:
    """A client opens a ticket (staff: on behalf of ``client_id``, with ``tickets.reply``).

    409 ``blocked_by_announcement`` while a blocking announcement is active;
    402 ``no_paid_requests`` when the department charges (or the category is
    paid) and the client has no paid requests left.
    """
    draft = OpenDraft(
        department_id=body.department_id,
        subject=body.subject,
        body=body.body,
        category_id=body.category_id,
        client_id=body.client_id,
        attachment_ids=tuple(body.attachments),
    )
    return _message_answer(await _run(app.open_ticket(principal, draft)))


# ---------------------------------------------------------------- reads


class TicketOut(BaseModel):
    id: str
    number: int | None  # the short number (#1042); null for tickets opened before numbers
    client_id: str
    company_id: str | None
    project_id: str | None
    department_id: str | None
    category_id: str | None
    subject: str | None
    status: Status
    origin: str
    message_ref: str | None
    replies_forbidden: bool
    paid: bool
    assignee_id: str | None
    opened_at: datetime
    updated_at: datetime
    waiting_since: datetime | None
    due_at: datetime | None
    closed_at: datetime | None
    close_reason: str | None
    messages: int
    last_message_at: datetime | None
    rating: int | None
    version: int


class AttachmentOut(BaseModel):
    attachment_id: str
    filename: str | None  # null once the client was erased
    content_type: str
    size: int
    sha256: str


class EntryOut(BaseModel):
    """One step of a ticket's timeline (the ticket version it made)."""

    version: int
    type: Literal[
        "opened", "message", "internal_note", "assigned", "transfer", "closed", "reopened",
        "rated", "rating_requested", "linked_to_client",
    ]  # fmt: skip
    at: datetime
    message_id: str | None
    author_kind: str | None
    author_id: str | None
    impersonator_id: str | None = None
    body: str | None
    internal: bool
    details: dict[str, Any]
    attachments: list[AttachmentOut] = []


class ContactOut(BaseModel):
    """Who wrote a ticket from a contact (null once erased)."""

    contact_id: str
    email: str | None
    name: str | None


class TicketDetailOut(TicketOut):
    entries: list[EntryOut]
    contact: ContactOut | None = None  # staff only: the unknown sender who opened it


_TICKET_COLUMNS = tuple(name for name in TicketOut.model_fields if name != "id")


def _ticket(row: Any) -> TicketOut:
    m = row._mapping
    return TicketOut(id=m["ticket_id"], **{k: m[k] for k in _TICKET_COLUMNS})


def _ticket_page(rows: list[Any], total: int, counts: dict[Status, int] | None = None) -> Response:
    """A queue page as ``list[TicketOut]`` would serialise it, without building the models.

    The rows are the read model's own (typed, UTC-aware times), so they need no
    validation; a page is read far more often than anything else.
    """
    mappings = [row._mapping for row in rows]  # a new view at every access: once per row
    page = [{"id": m["ticket_id"], **{k: m[k] for k in _TICKET_COLUMNS}} for m in mappings]
    headers = {"X-Total-Count": str(total)}
    if counts is not None:
        headers[STATUS_COUNTS] = ", ".join(f"{s}={n}" for s, n in counts.items())
    return Response(
        orjson.dumps(page, option=orjson.OPT_UTC_Z), media_type="application/json", headers=headers
    )


async def _scope(db: ReadModelDB, principal: Principal) -> Scope:
    if principal.kind == "client":
        access = principal.access
        if access.company_manager and access.company_id:
            async with db.engine.connect() as conn:
                members = await support.company_members(conn, access.company_id)
            return Scope(clients=tuple(sorted({principal.id, *members})))
        return Scope(clients=(principal.id,))
    if not principal.access.has(visibility.VIEW):
        raise ApiError(403, "forbidden", f"the right {visibility.VIEW!r} is required")
    return Scope(
        everything=visibility.sees_all(principal),
        departments=tuple(principal.access.departments),
        assignee_id=principal.id,
        messages=visibility.sees_messages(principal),
    )


@router.get("/tickets", tags=["tickets"], response_model=list[TicketOut])
async def list_tickets(
    db: ReadDB,
    _: CaughtUp,
    principal: Caller,
    status: Annotated[list[Status] | None, Query(max_length=3)] = None,
    department_id: Annotated[
        str | None, Query(max_length=MAX_ID, description='"none": the messages queue')
    ] = None,
    assignee_id: Annotated[
        str | None, Query(max_length=MAX_ID, description='"none": nobody assigned')
    ] = None,
    client_id: Annotated[str | None, Query(max_length=MAX_ID)] = None,
    number: Annotated[
        str | None,
        Query(pattern=r"^#?[0-9]{1,9}$", description="the short number: 1042 or #1042"),
    ] = None,
    sort: Annotated[
        Sort | None,
        Query(description="waiting (oldest unanswered first), deadline, updated, opened; -: desc"),
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
    counts: Annotated[
        bool,
        Query(
            description="also each status's total under the other filters, in"
            " X-Status-Counts (open=12, answered=3, closed=40): GET /tickets/counts in the"
            " same call"
        ),
    ] = False,
) -> Response:
    """The caller's queue: the tickets they may see, filtered; the total in ``X-Total-Count``
    (and with ``counts=true`` each status's in ``X-Status-Counts``, as ``/tickets/counts``
    answers them: a queue page in one call, for the price of its total).

    Staff default to the oldest waiting first, clients to the latest changed first.
    """
    scope = await _scope(db, principal)
    chosen: Sort = sort or ("-updated" if principal.kind == "client" else "waiting")
    f = QueueFilter(
        status=tuple(s for s in STATUSES if s in (status or ())),
        department_id=department_id,
        assignee_id=assignee_id,
        client_id=client_id,
        number=int(number.lstrip("#")) if number else None,
    )
    page = page_query(scope, f, chosen, limit, offset)
    if page is None:
        return _ticket_page([], 0, dict.fromkeys(STATUSES, 0) if counts else None)
    by_status: dict[Status, int] | None = None
    async with db.reading() as conn:
        rows = list(await conn.execute(*page))
        if counts:
            # The counts under the other filters give the total too: one count statement.
            by_status = await totals_by_status(conn, scope, replace(f, status=()))
            count = sum(by_status[s] for s in f.status or STATUSES)
        else:
            count = await total(conn, scope, f)
    return _ticket_page(rows, count, by_status)


@router.get("/tickets/counts", tags=["tickets"])
async def count_tickets(
    db: ReadDB,
    _: CaughtUp,
    principal: Caller,
    department_id: Annotated[
        str | None, Query(max_length=MAX_ID, description='"none": the messages queue')
    ] = None,
    assignee_id: Annotated[
        str | None, Query(max_length=MAX_ID, description='"none": nobody assigned')
    ] = None,
) -> dict[str, int]:
    """How many tickets of the caller's queue are in each status, under the same filters
    as ``GET /tickets`` (each the ``X-Total-Count`` that list would answer): one call and
    one statement for a queue page's counts instead of one per status."""
    scope = await _scope(db, principal)
    f = QueueFilter(department_id=department_id, assignee_id=assignee_id)
    async with db.reading() as conn:
        counts = await totals_by_status(conn, scope, f)
    return {status: n for status, n in counts.items()}


async def visible_row(db: ReadModelDB, principal: Principal, ticket_id: str) -> Any:
    """The ticket's row if the caller may see it; 404 otherwise (as if it did not exist)."""
    async with db.engine.connect() as conn:
        row = (await conn.execute(select(tickets).where(tickets.c.ticket_id == ticket_id))).first()
        owner = await support.client(conn, row.client_id) if row is not None else None
    if row is not None:
        if principal.kind == "staff":
            if not principal.access.has(visibility.VIEW):
                raise ApiError(403, "forbidden", f"the right {visibility.VIEW!r} is required")
            if visibility.staff_may_see(principal, row.department_id, row.assignee_id):
                return row
        elif visibility.client_may_see(
            principal, row.client_id, owner.company_id if owner else None
        ):
            return row
    raise not_found(f"ticket {ticket_id}")


@router.get("/tickets/{ticket_id}", tags=["tickets"])
async def get_ticket(ticket_id: str, db: ReadDB, _: CaughtUp, principal: Caller) -> TicketDetailOut:
    """The ticket with what the caller may see of it: clients never see internal notes,
    assignments, or transfer notices beyond the number shown to clients."""
    row = await visible_row(db, principal, ticket_id)
    query = select(ticket_entries).where(ticket_entries.c.ticket_id == ticket_id)
    client = principal.kind == "client"
    if client:
        query = query.where(ticket_entries.c.visible_to_client.is_(True))
    async with db.engine.connect() as conn:
        entries = list(await conn.execute(query.order_by(ticket_entries.c.version)))
        contact = None
        if not client and row.origin == "contact":
            contact = (
                await conn.execute(
                    select(ticket_contacts).where(ticket_contacts.c.ticket_id == ticket_id)
                )
            ).first()
    return TicketDetailOut(
        **_ticket(row).model_dump(),
        contact=ContactOut(contact_id=contact.contact_id, email=contact.email, name=contact.name)
        if contact is not None
        else None,
        entries=[
            EntryOut(
                version=e.version,
                type=e.type,
                at=e.at,
                message_id=e.message_id,
                author_kind=e.author_kind,
                author_id=e.author_id,
                impersonator_id=None if client else e.impersonator_id,
                body=e.body,
                internal=e.type == "internal_note",
                details=orjson.loads(e.details),
                attachments=orjson.loads(e.attachments) if e.attachments else [],
            )
            for e in entries
        ],
    )


# ---------------------------------------------------------------- commands


class MessageIn(StrictBody):
    body: str = Field(min_length=1, max_length=MAX_BODY)
    internal: bool = False
    expected_version: int | None = Field(default=None, ge=1)
    attachments: list[Annotated[str, Field(min_length=1, max_length=MAX_ID)]] = Field(
        default=[], max_length=MAX_ATTACHMENTS, description="ids from POST /tickets/attachments"
    )


class AssignIn(StrictBody):
    staff_id: str | None = Field(min_length=1, max_length=MAX_ID)
    expected_version: int | None = Field(default=None, ge=1)


class TransferIn(StrictBody):
    department_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    staff_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    expected_version: int | None = Field(default=None, ge=1)


class LinkIn(StrictBody):
    client_id: str = Field(min_length=1, max_length=MAX_ID)
    expected_version: int | None = Field(default=None, ge=1)


class VersionIn(StrictBody):
    expected_version: int | None = Field(default=None, ge=1)


class RateIn(StrictBody):
    score: int = Field(ge=1, le=5, strict=True)
    message_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    comment: str = Field(default="", max_length=MAX_COMMENT)


@router.post("/tickets/{ticket_id}/messages", status_code=201, tags=["tickets"])
async def post_message(
    ticket_id: str,
    body: MessageIn,
    app: TicketsDep,
    principal: Caller,
    expected_version: SeenQuery = None,
) -> OpenedOut:
    """A reply (client or staff with ``tickets.reply``) or an internal note
    (``internal``: staff with ``tickets.internal_note``; clients never see it).

    A client's reply to a closed ticket reopens it; staff reopen first (409
    ``ticket_closed``); 409 ``replies_forbidden`` when the thread forbids replies.
    """
    seen = _seen(body.expected_version, expected_version)
    answer = await _run(
        app.post_message(
            principal, ticket_id, body.body, body.internal, seen, tuple(body.attachments)
        )
    )
    return _message_answer(answer)


@router.post("/tickets/{ticket_id}/assign", tags=["tickets"])
async def assign(
    ticket_id: str,
    body: AssignIn,
    app: TicketsDep,
    principal: Caller,
    expected_version: SeenQuery = None,
) -> CommandAnswer:
    """Assign to a staff member of the ticket's department (``staff_id`` null: nobody)."""
    seen = _seen(body.expected_version, expected_version)
    return await _run(app.assign(principal, ticket_id, body.staff_id, seen))


@router.post("/tickets/{ticket_id}/transfer", tags=["tickets"])
async def transfer(
    ticket_id: str,
    body: TransferIn,
    app: TicketsDep,
    principal: Caller,
    expected_version: SeenQuery = None,
) -> CommandAnswer:
    """To another department (into its queue, nobody assigned) and/or staff member."""
    seen = _seen(body.expected_version, expected_version)
    return await _run(app.transfer(principal, ticket_id, body.department_id, body.staff_id, seen))


@router.post("/tickets/{ticket_id}/client", tags=["tickets"])
async def link_to_client(
    ticket_id: str,
    body: LinkIn,
    app: TicketsDep,
    principal: Caller,
    expected_version: SeenQuery = None,
) -> CommandAnswer:
    """Hand a ticket from a contact (an unknown sender's mail) to a client, who sees it
    from then on (staff with ``tickets.transfer`` who see the ticket).

    422 on ``client_id`` for a client this service does not know; 409
    ``not_from_a_contact`` for a client's own ticket, ``already_linked`` when it
    belongs to another client already; the same client again changes nothing.
    """
    seen = _seen(body.expected_version, expected_version)
    return await _run(app.link_to_client(principal, ticket_id, body.client_id, seen))


@router.post("/tickets/{ticket_id}/close", tags=["tickets"])
async def close(
    ticket_id: str,
    app: TicketsDep,
    principal: Caller,
    body: Annotated[VersionIn | None, Body()] = None,
    expected_version: SeenQuery = None,
) -> CommandAnswer:
    """Close (the ticket's client, or staff with ``tickets.close``); closing twice is harmless."""
    seen = _seen(body.expected_version if body else None, expected_version)
    return await _run(app.close(principal, ticket_id, seen))


@router.post("/tickets/{ticket_id}/reopen", tags=["tickets"])
async def reopen(
    ticket_id: str,
    app: TicketsDep,
    principal: Caller,
    body: Annotated[VersionIn | None, Body()] = None,
    expected_version: SeenQuery = None,
) -> CommandAnswer:
    """Reopen (the ticket's client, or staff with ``tickets.reopen``)."""
    seen = _seen(body.expected_version if body else None, expected_version)
    return await _run(app.reopen(principal, ticket_id, seen))


@router.post("/tickets/{ticket_id}/rate", tags=["tickets"])
async def rate(ticket_id: str, body: RateIn, app: TicketsDep, principal: Caller) -> CommandAnswer:
    """The client rates a staff reply (``message_id``) or the whole ticket, 1 to 5;
    a new rating of the same reply (or of the ticket) replaces the earlier one."""
    return await _run(app.rate(principal, ticket_id, body.score, body.message_id, body.comment))


class AutofillOut(BaseModel):
    subject: str
    body: str


@router.get("/tickets/{ticket_id}/autofill", tags=["tickets"])
async def autofill(
    ticket_id: str,
    request: Request,
    app: TicketsDep,
    principal: Caller,
    template_id: Annotated[str, Query(min_length=1, max_length=MAX_ID)],
) -> AutofillOut:
    """A response template filled in for this ticket (staff with ``tickets.reply``):
    ``%client_person%``, ``%admin_name%``, ``%ticket_id%``, ``%ticket_subject%``,
    ``%department%``. 404 for a template or a ticket that is not there (for the caller)."""
    authorization = request.headers.get("authorization")
    subject, body = await _run(app.autofill(principal, ticket_id, template_id, authorization))
    return AutofillOut(subject=subject, body=body)


# ---------------------------------------------------------------- files


class UploadedOut(BaseModel):
    attachment_id: str
    filename: str
    content_type: str
    size: int
    sha256: str


@router.post("/tickets/attachments", status_code=201, tags=["tickets"])
async def upload_attachment(
    app: TicketsDep,
    principal: Caller,
    file: Annotated[UploadFile, File(description="one file; its type from the allow-list")],
) -> UploadedOut:
    """Keep a file for a message the caller writes next (``attachments: [attachment_id]``).

    422 on ``file`` when it is empty, too large, of a type not accepted (by its
    name and its first bytes), or refused by the virus scanner; nothing is kept then.
    """
    store = app.files
    limit = store.policy.max_bytes if store is not None else 0
    data = await file.read(limit + 1)  # never more than the cap and a byte into memory
    stored = await _run(app.upload(principal, data, file.filename))
    return UploadedOut(filename=stored.filename, **stored.record.model_dump())


@router.get(
    "/tickets/{ticket_id}/attachments/{attachment_id}",
    tags=["tickets"],
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def download_attachment(
    ticket_id: str, attachment_id: str, app: TicketsDep, _: CaughtUp, principal: Caller
) -> Response:
    """A file of the ticket, as a download (``Content-Disposition: attachment``, ``nosniff``):
    for whoever sees the ticket and the message it came with; 404 otherwise."""
    filename, content_type, data = await _run(app.attachment(principal, ticket_id, attachment_id))
    return download(filename, content_type, data)
