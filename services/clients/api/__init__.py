"""HTTP adapter of the clients context (the clients table of API.md, and what it implies).

Commands go through ``Clients`` and answer ``{"id", "version", "position"}``;
reads come from the ``client_directory`` read model and accept
``?min_position=``. Staff need the right named on each endpoint; a client may
read their own card and their own messages, nothing else.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from sqlalchemy import func, select
from sqlalchemy.engine import Row

from services.clients.api.deps import ClientsDep
from services.clients.app.handlers import MessageDraft
from services.clients.domain.client import ClientCard, ClientPatch
from services.clients.domain.events import Attachment, Characteristic, CustomerStatus, Violation
from services.clients.projections import client_groups, client_messages, clients, projects
from services.clients.projections.queries import ClientFilter, ClientSort, client_query, ordered
from shared.access.control import Principal
from shared.application.commands import CommandAnswer
from shared.http import downloads
from shared.http.api import ApiError, CaughtUp, client_address, require
from shared.http.reads import Limit, Offset, not_found, page

router = APIRouter()


ExpectedVersion = Annotated[
    int | None,
    Query(ge=0, description="409 version_conflict unless the client is at this version"),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _may_read_client(principal: Principal, client_id: str) -> None:
    """Staff with ``clients.view``, or the client themself."""
    if principal.kind == "client":
        if principal.id != client_id:
            raise not_found(f"client {client_id}")
    elif not principal.access.has("clients.view"):
        raise ApiError(403, "forbidden", "the right 'clients.view' is required")


# ---------------------------------------------------------------- clients


class ClientIn(Strict):
    login: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    email: EmailStr
    country: str = Field(min_length=2, max_length=2)
    customer_status: CustomerStatus
    company_name: str | None = Field(default=None, max_length=200)
    contact_person: str | None = Field(default=None, max_length=200)
    project_id: str | None = Field(default=None, max_length=64)
    language: str = Field(default="en", min_length=2, max_length=2)
    phone: str | None = Field(default=None, max_length=200)
    phone_verified: bool = False
    note: str | None = Field(default=None, max_length=4000)
    referral_source: str | None = Field(default=None, max_length=200)
    characteristic: Characteristic = "normal"
    referrer_id: str | None = Field(default=None, max_length=64)
    partner_program: str | None = Field(default=None, max_length=64)
    groups: list[str] = Field(default=[], max_length=50)
    products: list[str] = Field(default=[], max_length=50)


class ClientPatchIn(Strict):
    email: EmailStr | None = None
    country: str | None = Field(default=None, min_length=2, max_length=2)
    customer_status: CustomerStatus | None = None
    company_name: str | None = Field(default=None, max_length=200)
    contact_person: str | None = Field(default=None, max_length=200)
    project_id: str | None = Field(default=None, max_length=64)
    language: str | None = Field(default=None, min_length=2, max_length=2)
    phone: str | None = Field(default=None, max_length=200)
    phone_verified: bool | None = None
    note: str | None = Field(default=None, max_length=4000)
    referral_source: str | None = Field(default=None, max_length=200)
    characteristic: Characteristic | None = None
    referrer_id: str | None = Field(default=None, max_length=64)
    partner_program: str | None = Field(default=None, max_length=64)
    groups: list[str] | None = Field(default=None, max_length=50)
    products: list[str] | None = Field(default=None, max_length=50)


# What a client (or staff logged in as them) may change on their own card.
SELF_SERVICE = frozenset({"contact_person", "phone", "language"})


class PasswordIn(Strict):
    password: str = Field(min_length=1, max_length=256)


class ClientOut(BaseModel):
    id: str
    login: str | None
    email: str | None
    country: str
    customer_status: str
    company_name: str | None
    contact_person: str | None
    project_id: str | None
    registered_at: datetime
    registration_ip: str | None
    language: str
    phone: str | None
    phone_verified: bool
    note: str | None
    referral_source: str | None
    characteristic: str
    referrer_id: str | None
    partner_program: str | None
    groups: list[str]
    products: list[str]
    penalty_points: int
    services: Literal["active", "suspended"]
    erased: bool
    version: int


# What staff write about a client for staff: never shown to the client.
STAFF_ONLY = frozenset({"note", "characteristic", "referral_source", "partner_program"})


class OwnClientOut(BaseModel):
    """A client's own card as the client sees it: ``ClientOut`` without ``STAFF_ONLY``."""

    id: str
    login: str | None
    email: str | None
    country: str
    customer_status: str
    company_name: str | None
    contact_person: str | None
    project_id: str | None
    registered_at: datetime
    registration_ip: str | None
    language: str
    phone: str | None
    phone_verified: bool
    referrer_id: str | None
    groups: list[str]
    products: list[str]
    penalty_points: int
    services: Literal["active", "suspended"]
    erased: bool
    version: int


def _client(row: Row[Any]) -> ClientOut:
    m = row._mapping
    return ClientOut(
        id=m["client_id"],
        groups=orjson.loads(m["groups"]),
        products=orjson.loads(m["products"]),
        services="suspended" if m["services_suspended"] else "active",
        **{
            k: m[k]
            for k in ClientOut.model_fields
            if k not in ("id", "groups", "products", "services")
        },
    )


@router.post("/clients", status_code=201, tags=["clients"])
async def register_client(
    body: ClientIn,
    request: Request,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.create"))],
) -> CommandAnswer:
    """Register a client; they can log in at identity right away."""
    card = ClientCard.model_validate(body.model_dump(exclude={"password"}))
    return await app.register_client(principal.actor, card, body.password, client_address(request))


@router.get("/clients", tags=["clients"])
async def list_clients(
    response: Response,
    request: Request,
    _: CaughtUp,
    __: Annotated[Principal, Depends(require("clients.view"))],
    id: Annotated[list[str] | None, Query(max_length=1000)] = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    project_id: str | None = None,
    language: str | None = None,
    country: str | None = None,
    customer_status: CustomerStatus | None = None,
    registered_from: datetime | None = None,
    registered_to: datetime | None = None,
    group_id: str | None = None,
    product: str | None = None,
    services: Literal["active", "suspended"] | None = None,
    sort: ClientSort = "-registered_at",
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[ClientOut]:
    """Clients matching every filter given; the total is in ``X-Total-Count``."""
    query = client_query(
        ClientFilter(
            id=id,
            name=name,
            project_id=project_id,
            language=language,
            country=country,
            customer_status=customer_status,
            registered_from=registered_from,
            registered_to=registered_to,
            group_id=group_id,
            product=product,
            services_suspended=None if services is None else services == "suspended",
        )
    )
    db = request.app.state.runtime.db
    async with db.engine.connect() as conn:
        rows = await page(
            conn, ordered(query, sort), response, order_by=(), limit=limit, offset=offset
        )
    found = [_client(row) for row in rows]
    return found


@router.get("/clients/{client_id}", tags=["clients"])
async def get_client(
    client_id: str,
    request: Request,
    _: CaughtUp,
    principal: Annotated[Principal, Depends(require())],
) -> ClientOut | OwnClientOut:
    """Staff with ``clients.view`` see the whole card; the client sees their own
    without what staff write for staff (note, characteristic, referral source,
    partner program)."""
    _may_read_client(principal, client_id)
    async with request.app.state.runtime.db.engine.connect() as conn:
        row = (await conn.execute(select(clients).where(clients.c.client_id == client_id))).first()
    if row is None or (row.erased and principal.kind == "client"):
        raise not_found(f"client {client_id}")
    card = _client(row)
    if principal.kind == "client":  # the client (or staff logged in as the client)
        return OwnClientOut.model_validate(card.model_dump(exclude=set(STAFF_ONLY)))
    return card


@router.patch("/clients/{client_id}", tags=["clients"])
async def change_client(
    client_id: str,
    body: ClientPatchIn,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require())],
    expected_version: ExpectedVersion = None,
) -> CommandAnswer:
    """Staff with ``clients.edit`` change the card; a client may change their own profile."""
    given = body.model_dump(exclude_unset=True)
    if principal.kind == "client":
        if principal.id != client_id:
            raise not_found(f"client {client_id}")
        other = sorted(set(given) - SELF_SERVICE)
        if other:
            raise ApiError(403, "forbidden", f"clients cannot change {other[0]}", field=other[0])
    elif not principal.access.has("clients.edit"):
        raise ApiError(403, "forbidden", "the right 'clients.edit' is required")
    if "note" in given and not principal.access.has("clients.notes"):
        raise ApiError(403, "forbidden", "the right 'clients.notes' is required to change notes")
    patch = ClientPatch.model_validate(given)
    return await app.change_client(principal.actor, client_id, patch, expected_version)


@router.delete("/clients/{client_id}", tags=["clients"])
async def erase_client(
    client_id: str,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.delete"))],
) -> CommandAnswer:
    """Delete on request: the client's personal data becomes unreadable in every replay."""
    return await app.erase_client(principal.actor, client_id)


@router.put("/clients/{client_id}/password", tags=["clients"])
async def reset_password(
    client_id: str,
    body: PasswordIn,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.password"))],
) -> CommandAnswer:
    """Set a client's password: its own right (not ``clients.edit``), recorded in the log."""
    return await app.reset_password(principal.actor, client_id, body.password)


@router.post("/clients/{client_id}/services/suspend", tags=["clients"])
async def suspend_services(
    client_id: str,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.edit"))],
) -> CommandAnswer:
    return await app.suspend_services(principal.actor, client_id)


@router.post("/clients/{client_id}/services/resume", tags=["clients"])
async def resume_services(
    client_id: str,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.edit"))],
) -> CommandAnswer:
    return await app.resume_services(principal.actor, client_id)


class ImpersonationOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    principal: dict[str, str]
    impersonator_id: str
    session_id: str
    version: int
    position: int


@router.post("/clients/{client_id}/impersonate", status_code=201, tags=["clients"])
async def impersonate(
    client_id: str,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.impersonate"))],
) -> ImpersonationOut:
    """A client token for the calling staff member; ``POST /auth/logout`` with it ends it."""
    if principal.kind != "staff" or principal.impersonator_id:
        raise ApiError(403, "forbidden", "only staff in their own session may impersonate")
    impersonation, answer = await app.impersonate(principal.actor, principal.session_id, client_id)
    return ImpersonationOut(
        access_token=impersonation.access_token,
        principal={"id": client_id, "kind": "client"},
        impersonator_id=principal.id,
        session_id=impersonation.session_id,
        version=answer.version,
        position=answer.position,
    )


# ---------------------------------------------------------------- messages


class ViolationIn(Strict):
    deadline: datetime
    on_no_reaction: Literal["move_to_active", "suspend_services"]
    penalty_points: int = Field(default=0, ge=0, le=1000)
    comment: str = Field(default="", max_length=2000)


class MessageIn(Strict):
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


@router.post("/clients/messages", status_code=201, tags=["messages"])
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


@router.post("/clients/attachments", status_code=201, tags=["messages"])
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


@router.get("/clients/{client_id}/messages", tags=["messages"])
async def client_messages_list(
    client_id: str,
    request: Request,
    response: Response,
    _: CaughtUp,
    principal: Annotated[Principal, Depends(require())],
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[ClientMessageOut]:
    """Messages to one client, newest first (a client sees only their own)."""
    _may_read_client(principal, client_id)
    query = select(client_messages).where(client_messages.c.client_id == client_id)
    async with request.app.state.runtime.db.engine.connect() as conn:
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
    tags=["messages"],
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def client_message_attachment(
    client_id: str,
    message_id: str,
    attachment_id: str,
    request: Request,
    app: ClientsDep,
    _: CaughtUp,
    principal: Annotated[Principal, Depends(require())],
) -> Response:
    """A file sent with a message, for its recipient (or staff with ``clients.view``), as a
    download (``Content-Disposition: attachment``, ``nosniff``); 404 for anyone else."""
    _may_read_client(principal, client_id)
    async with request.app.state.runtime.db.engine.connect() as conn:
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


# ---------------------------------------------------------------- groups and projects


class NameIn(Strict):
    name: str = Field(min_length=1, max_length=100)


class ProjectIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=2000)


class ProjectPatchIn(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=2000)


class GroupOut(BaseModel):
    id: str
    name: str
    version: int


class ProjectOut(BaseModel):
    id: str
    name: str
    description: str
    version: int


@router.post("/client-groups", status_code=201, tags=["groups"])
async def create_group(
    body: NameIn,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.groups"))],
) -> CommandAnswer:
    return await app.create_group(principal.actor, body.name)


@router.get("/client-groups", tags=["groups"])
async def list_groups(
    request: Request,
    _: CaughtUp,
    __: Annotated[Principal, Depends(require("clients.view"))],
) -> list[GroupOut]:
    async with request.app.state.runtime.db.engine.connect() as conn:
        rows = await conn.execute(
            select(client_groups)
            .where(client_groups.c.deleted.is_(False))
            .order_by(func.lower(client_groups.c.name), client_groups.c.group_id)
        )
        return [GroupOut(id=r.group_id, name=r.name, version=r.version) for r in rows]


@router.patch("/client-groups/{group_id}", tags=["groups"])
async def rename_group(
    group_id: str,
    body: NameIn,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.groups"))],
) -> CommandAnswer:
    return await app.rename_group(principal.actor, group_id, body.name)


@router.delete("/client-groups/{group_id}", tags=["groups"])
async def delete_group(
    group_id: str,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.groups"))],
) -> CommandAnswer:
    return await app.delete_group(principal.actor, group_id)


@router.post("/projects", status_code=201, tags=["projects"])
async def create_project(
    body: ProjectIn,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.projects"))],
) -> CommandAnswer:
    return await app.create_project(principal.actor, body.name, body.description)


@router.get("/projects", tags=["projects"])
async def list_projects(
    request: Request,
    _: CaughtUp,
    __: Annotated[Principal, Depends(require("clients.view"))],
) -> list[ProjectOut]:
    async with request.app.state.runtime.db.engine.connect() as conn:
        rows = await conn.execute(
            select(projects)
            .where(projects.c.deleted.is_(False))
            .order_by(func.lower(projects.c.name), projects.c.project_id)
        )
        return [
            ProjectOut(id=r.project_id, name=r.name, description=r.description, version=r.version)
            for r in rows
        ]


@router.patch("/projects/{project_id}", tags=["projects"])
async def change_project(
    project_id: str,
    body: ProjectPatchIn,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.projects"))],
) -> CommandAnswer:
    return await app.change_project(principal.actor, project_id, body.name, body.description)


@router.delete("/projects/{project_id}", tags=["projects"])
async def delete_project(
    project_id: str,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.projects"))],
) -> CommandAnswer:
    return await app.delete_project(principal.actor, project_id)
