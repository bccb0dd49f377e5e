"""HTTP adapter of companies, their members, manager, contacts and equipment.

Commands go through ``Companies`` (``api/deps.py``) and
answer ``{"id", "version", "position"}``: the id of what the command made or
changed (the company, a contact, an item), the company stream's version and
the global position. They need the right ``clients.companies`` and accept an
optional ``?expected_version=`` (409 ``version_conflict`` when the company
moved on). Reads come from the ``company_directory`` read model, need
``clients.view`` and accept ``?min_position=``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.engine import Row

from services.clients.api.deps import CompaniesDep, ExpectedVersion
from services.clients.app.companies import IdentityNotUpdated
from services.clients.domain.company import (
    CompanyPatch,
    ContactDraft,
    ContactPatch,
    EquipmentDraft,
    EquipmentPatch,
)
from services.clients.projections.companies import (
    companies,
    company_contacts,
    company_equipment,
    company_members,
)
from shared.access.control import Principal
from shared.application.commands import CommandAnswer
from shared.http.api import ApiError, CaughtUp, ReadDB, StrictBody, require
from shared.http.reads import Limit, Offset, one_or_404, page

router = APIRouter(tags=["companies"])

CHANGE = "clients.companies"
VIEW = "clients.view"


Changer = Annotated[Principal, Depends(require(CHANGE))]
Viewer = Annotated[Principal, Depends(require(VIEW))]


async def _answer(command: Awaitable[CommandAnswer]) -> CommandAnswer:
    """The command's answer; 503 when it is recorded but identity could not be told."""
    try:
        return await command
    except IdentityNotUpdated as error:
        raise ApiError(
            503,
            "identity_not_updated",
            f"the change is recorded, but {error}; repeat the same request",
            headers={"Retry-After": "1"},
        ) from None


# ---------------------------------------------------------------- bodies and answers


class CompanyIn(StrictBody):
    name: str


class MemberIn(StrictBody):
    client_id: str = Field(min_length=1, max_length=64)
    manager: bool = Field(default=False, description="also make them the client manager")


class ManagerIn(StrictBody):
    client_id: str | None = Field(
        min_length=1, max_length=64, description="a member's client id, or null for nobody"
    )


class CompanySummary(BaseModel):
    id: str
    name: str
    manager_id: str | None
    member_count: int
    version: int


class MemberOut(BaseModel):
    client_id: str
    manager: bool


class ContactOut(BaseModel):
    id: str
    name: str | None
    email: str | None
    email_generated: bool
    phone: str | None
    messenger: str | None
    messenger_id: str | None
    notifications: bool


class EquipmentNode(BaseModel):
    id: str
    name: str
    type: str | None
    serial: str | None
    parent_id: str | None
    children: list[EquipmentNode] = []


class CompanyOut(BaseModel):
    id: str
    name: str
    manager_id: str | None
    members: list[MemberOut]
    contacts: list[ContactOut]
    equipment: list[EquipmentNode]  # the roots, each with its children nested
    version: int


# ---------------------------------------------------------------- reads


@router.get("/companies")
async def list_companies(
    response: Response,
    db: ReadDB,
    _: CaughtUp,
    __: Viewer,
    name: Annotated[
        str | None, Query(max_length=200, description="part of the name, any case")
    ] = None,
    client_id: Annotated[
        str | None, Query(max_length=64, description="only the company this client is in")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[CompanySummary]:
    """Companies by name; the total is in ``X-Total-Count``."""
    member_count = (
        select(func.count())
        .where(company_members.c.company_id == companies.c.company_id)
        .scalar_subquery()
    )
    query = select(companies, member_count.label("member_count"))
    if name:
        query = query.where(func.lower(companies.c.name).contains(name.lower(), autoescape=True))
    if client_id is not None:
        query = query.where(
            companies.c.company_id.in_(
                select(company_members.c.company_id).where(company_members.c.client_id == client_id)
            )
        )
    order = (func.lower(companies.c.name), companies.c.company_id)
    async with db.engine.connect() as conn:
        rows = await page(conn, query, response, order_by=order, limit=limit, offset=offset)
        found = [
            CompanySummary(
                id=row.company_id,
                name=row.name,
                manager_id=row.manager_id,
                member_count=row.member_count,
                version=row.version,
            )
            for row in rows
        ]
    return found


@router.get("/companies/{company_id}")
async def get_company(company_id: str, db: ReadDB, _: CaughtUp, __: Viewer) -> CompanyOut:
    """The company with its members, manager, contacts and equipment tree."""
    async with db.engine.connect() as conn:
        company = await one_or_404(
            conn,
            select(companies).where(companies.c.company_id == company_id),
            f"company {company_id}",
        )
        members = await conn.execute(
            select(company_members.c.client_id)
            .where(company_members.c.company_id == company_id)
            .order_by(company_members.c.position)
        )
        contacts = await conn.execute(
            select(company_contacts)
            .where(company_contacts.c.company_id == company_id)
            .order_by(company_contacts.c.position)
        )
        items = await conn.execute(
            select(company_equipment)
            .where(company_equipment.c.company_id == company_id)
            .order_by(company_equipment.c.position)
        )
        return CompanyOut(
            id=company.company_id,
            name=company.name,
            manager_id=company.manager_id,
            members=[
                MemberOut(client_id=m.client_id, manager=m.client_id == company.manager_id)
                for m in members
            ],
            contacts=[_contact(row) for row in contacts],
            equipment=_tree(list(items)),
            version=company.version,
        )


def _contact(row: Row[Any]) -> ContactOut:
    return ContactOut(
        id=row.contact_id,
        name=row.name,
        email=row.email,
        email_generated=row.email_generated,
        phone=row.phone,
        messenger=row.messenger,
        messenger_id=row.messenger_id,
        notifications=row.notifications,
    )


def _tree(rows: list[Row[Any]]) -> list[EquipmentNode]:
    """Nest items under their parents, in the order they were added."""
    nodes = {
        row.item_id: EquipmentNode(
            id=row.item_id,
            name=row.name,
            type=row.type,
            serial=row.serial,
            parent_id=row.parent_id,
            children=[],
        )
        for row in rows
    }
    roots: list[EquipmentNode] = []
    for node in nodes.values():
        parent = nodes.get(node.parent_id) if node.parent_id is not None else None
        # An item whose parent is missing shows as a root rather than vanishing.
        (parent.children if parent is not None else roots).append(node)
    return roots


# ---------------------------------------------------------------- the company


@router.post("/companies", status_code=201)
async def create_company(body: CompanyIn, app: CompaniesDep, principal: Changer) -> CommandAnswer:
    return await app.create_company(principal.actor, body.name)


@router.patch("/companies/{company_id}")
async def change_company(
    company_id: str,
    body: CompanyPatch,
    app: CompaniesDep,
    principal: Changer,
    expected_version: ExpectedVersion = None,
) -> CommandAnswer:
    """Rename it (the only field a company has besides its members, contacts and equipment)."""
    return await app.change_company(principal.actor, company_id, body, expected_version)


@router.delete("/companies/{company_id}")
async def delete_company(
    company_id: str, app: CompaniesDep, principal: Changer, expected_version: ExpectedVersion = None
) -> CommandAnswer:
    """Delete it: its members leave (identity is told), its contacts are erased."""
    return await _answer(app.delete_company(principal.actor, company_id, expected_version))


# ---------------------------------------------------------------- members and manager


@router.post("/companies/{company_id}/members")
async def add_member(
    company_id: str,
    body: MemberIn,
    app: CompaniesDep,
    principal: Changer,
    expected_version: ExpectedVersion = None,
) -> CommandAnswer:
    """Add a client user (``manager: true`` also makes them the client manager).

    409 ``client_in_other_company`` when the client is in another company.
    """
    return await _answer(
        app.add_member(
            principal.actor,
            company_id,
            body.client_id,
            manager=body.manager,
            expected_version=expected_version,
        )
    )


@router.delete("/companies/{company_id}/members/{client_id}")
async def remove_member(
    company_id: str,
    client_id: str,
    app: CompaniesDep,
    principal: Changer,
    expected_version: ExpectedVersion = None,
) -> CommandAnswer:
    """The client leaves the company (and stops being its manager)."""
    return await _answer(
        app.remove_member(principal.actor, company_id, client_id, expected_version)
    )


@router.put("/companies/{company_id}/manager")
async def assign_manager(
    company_id: str,
    body: ManagerIn,
    app: CompaniesDep,
    principal: Changer,
    expected_version: ExpectedVersion = None,
) -> CommandAnswer:
    """The client manager (sees the company's tickets): a member, or null for nobody."""
    return await _answer(
        app.assign_manager(principal.actor, company_id, body.client_id, expected_version)
    )


# ---------------------------------------------------------------- contacts


@router.post("/companies/{company_id}/contacts", status_code=201)
async def add_contact(
    company_id: str,
    body: ContactDraft,
    app: CompaniesDep,
    principal: Changer,
    expected_version: ExpectedVersion = None,
) -> CommandAnswer:
    """A contact; without ``email``, ``messenger`` and ``messenger_id`` make one (``.invalid``)."""
    return await app.add_contact(principal.actor, company_id, body, expected_version)


@router.patch("/companies/{company_id}/contacts/{contact_id}")
async def change_contact(
    company_id: str,
    contact_id: str,
    body: ContactPatch,
    app: CompaniesDep,
    principal: Changer,
    expected_version: ExpectedVersion = None,
) -> CommandAnswer:
    """Change the fields given; ``email: null`` falls back to the generated address."""
    return await app.change_contact(principal.actor, company_id, contact_id, body, expected_version)


@router.delete("/companies/{company_id}/contacts/{contact_id}")
async def remove_contact(
    company_id: str,
    contact_id: str,
    app: CompaniesDep,
    principal: Changer,
    expected_version: ExpectedVersion = None,
) -> CommandAnswer:
    """Remove the contact and erase its personal data (its key is destroyed)."""
    return await app.remove_contact(principal.actor, company_id, contact_id, expected_version)


# ---------------------------------------------------------------- equipment


@router.post("/companies/{company_id}/equipment", status_code=201)
async def add_equipment(
    company_id: str,
    body: EquipmentDraft,
    app: CompaniesDep,
    principal: Changer,
    expected_version: ExpectedVersion = None,
) -> CommandAnswer:
    """An item (name, type, serial), under ``parent_id`` (an item of the company) or at the root."""
    return await app.add_equipment(principal.actor, company_id, body, expected_version)


@router.patch("/companies/{company_id}/equipment/{item_id}")
async def change_equipment(
    company_id: str,
    item_id: str,
    body: EquipmentPatch,
    app: CompaniesDep,
    principal: Changer,
    expected_version: ExpectedVersion = None,
) -> CommandAnswer:
    """Change the fields given; moving an item inside itself is a 422 naming ``parent_id``."""
    return await app.change_equipment(principal.actor, company_id, item_id, body, expected_version)


@router.delete("/companies/{company_id}/equipment/{item_id}")
async def remove_equipment(
    company_id: str,
    item_id: str,
    app: CompaniesDep,
    principal: Changer,
    expected_version: ExpectedVersion = None,
) -> CommandAnswer:
    """Remove a leaf item; 409 ``has_children`` while items hang under it."""
    return await app.remove_equipment(principal.actor, company_id, item_id, expected_version)
