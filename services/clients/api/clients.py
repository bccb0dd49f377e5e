"""Client cards: register, list with filters, read, change, erase, reset a password,
suspend and resume services, and "log in as this client" (impersonation).

Staff need the right named on each route; a client reads their own card without
what staff write for staff (``STAFF_ONLY``) and changes only ``SELF_SERVICE``
fields. Setting a client's password is its own right (``clients.password``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, EmailStr, Field
from sqlalchemy import select
from sqlalchemy.engine import Row

from services.clients.api.deps import ClientsDep, ExpectedVersion, may_read_client
from services.clients.domain.client import ClientCard, ClientPatch
from services.clients.domain.events import Characteristic, CustomerStatus
from services.clients.projections import clients
from services.clients.projections.queries import ClientFilter, ClientSort, client_query, ordered
from shared.access.control import Principal
from shared.application.commands import CommandAnswer
from shared.http.api import ApiError, CaughtUp, ReadDB, StrictBody, client_address, require
from shared.http.reads import Limit, Offset, not_found, page

router = APIRouter()


class ClientIn(StrictBody):
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


class ClientPatchIn(StrictBody):
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


class PasswordIn(StrictBody):
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


@router.post("/clients", status_code=201)
async def register_client(
    body: ClientIn,
    request: Request,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.create"))],
) -> CommandAnswer:
    """Register a client; they can log in at identity right away."""
    card = ClientCard.model_validate(body.model_dump(exclude={"password"}))
    return await app.register_client(principal.actor, card, body.password, client_address(request))


@router.get("/clients")
async def list_clients(
    response: Response,
    db: ReadDB,
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

    async with db.engine.connect() as conn:
        rows = await page(
            conn, ordered(query, sort), response, order_by=(), limit=limit, offset=offset
        )
    found = [_client(row) for row in rows]
    return found


@router.get("/clients/{client_id}")
async def get_client(
    client_id: str,
    db: ReadDB,
    _: CaughtUp,
    principal: Annotated[Principal, Depends(require())],
) -> ClientOut | OwnClientOut:
    """Staff with ``clients.view`` see the whole card; the client sees their own
    without what staff write for staff (note, characteristic, referral source,
    partner program)."""
    may_read_client(principal, client_id)
    async with db.engine.connect() as conn:
        row = (await conn.execute(select(clients).where(clients.c.client_id == client_id))).first()
    if row is None or (row.erased and principal.kind == "client"):
        raise not_found(f"client {client_id}")
    card = _client(row)
    if principal.kind == "client":  # the client (or staff logged in as the client)
        return OwnClientOut.model_validate(card.model_dump(exclude=set(STAFF_ONLY)))
    return card


@router.patch("/clients/{client_id}")
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


@router.delete("/clients/{client_id}")
async def erase_client(
    client_id: str,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.delete"))],
) -> CommandAnswer:
    """Delete on request: the client's personal data becomes unreadable in every replay."""
    return await app.erase_client(principal.actor, client_id)


@router.put("/clients/{client_id}/password")
async def reset_password(
    client_id: str,
    body: PasswordIn,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.password"))],
) -> CommandAnswer:
    """Set a client's password: its own right (not ``clients.edit``), recorded in the log."""
    return await app.reset_password(principal.actor, client_id, body.password)


@router.post("/clients/{client_id}/services/suspend")
async def suspend_services(
    client_id: str,
    app: ClientsDep,
    principal: Annotated[Principal, Depends(require("clients.edit"))],
) -> CommandAnswer:
    return await app.suspend_services(principal.actor, client_id)


@router.post("/clients/{client_id}/services/resume")
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


@router.post("/clients/{client_id}/impersonate", status_code=201)
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
