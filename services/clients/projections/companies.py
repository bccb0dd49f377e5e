"""Read model of companies: ``CompanyDirectory`` (companies, members, contacts, equipment).

Rebuilt from the events alone (``python -m shared.cli rebuild clients``).
Contacts' personal fields arrive sealed; the projection opens them with the
keys in the service's ``subject_keys`` table, read in its own transaction
(``shredding.keys_in``, as ``ClientDirectory`` does), so a contact whose key
was destroyed opens to None in a replay, and ``ContactRemoved`` deletes its
row anyway: nothing of a removed contact stays here. A deleted company's rows
are deleted with it.

``company_members`` is also what the application layer asks whether a client
already belongs to another company (see ``services.clients.app.companies``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.clients.domain.company_events import (
    COMPANY_EVENTS,
    CompanyCreated,
    CompanyDeleted,
    CompanyEvent,
    CompanyManagerAssigned,
    CompanyMemberAdded,
    CompanyMemberRemoved,
    CompanyRenamed,
    ContactAdded,
    ContactChanged,
    ContactRemoved,
    EquipmentAdded,
    EquipmentChanged,
    EquipmentRemoved,
)
from services.clients.domain.events import registry
from shared.domain.events import RecordedEvent
from shared.privacy import shredding
from shared.projections.runner import Projection

metadata = MetaData()

companies = Table(
    "companies",
    metadata,
    Column("company_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("manager_id", String(64), nullable=True),
    Column("version", Integer, nullable=False),
)

# One row per membership. Not unique per client: two concurrent commands may
# both pass the one-company check (see the application layer), and the read
# model must show what the log says rather than fail on it.
company_members = Table(
    "company_members",
    metadata,
    Column("company_id", String(64), primary_key=True),
    Column("client_id", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),  # when they joined: the listing order
    Index("company_members_client", "client_id"),
)

# Personal fields are nullable: a replay after erasure opens them to None.
company_contacts = Table(
    "company_contacts",
    metadata,
    Column("contact_id", String(64), primary_key=True),
    Column("company_id", String(64), nullable=False, index=True),
    Column("name", String(200), nullable=True),
    Column("email", String(320), nullable=True),
    Column("email_generated", Boolean, nullable=False),
    Column("phone", String(40), nullable=True),
    Column("messenger", String(32), nullable=True),
    Column("messenger_id", String(200), nullable=True),
    Column("notifications", Boolean, nullable=False),
    Column("position", BigInteger, nullable=False),
)

company_equipment = Table(
    "company_equipment",
    metadata,
    Column("item_id", String(64), primary_key=True),
    Column("company_id", String(64), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("type", String(100), nullable=True),
    Column("serial", String(100), nullable=True),
    Column("parent_id", String(64), nullable=True),
    Column("position", BigInteger, nullable=False),
)


class CompanyDirectory(Projection):
    """Companies with their members, manager, contacts and equipment, as the API shows them."""

    name = "company_directory"
    rebuild_cost = 0.2
    metadata = metadata
    reads = (shredding.metadata,)

    async def apply(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        if event.type not in COMPANY_EVENTS:
            return
        # Read in this transaction, not from a key ring's cache: a key destroyed a
        # moment ago is never used again. Only contact events need one.
        keys = await shredding.keys_in(conn, shredding.subjects_of(registry, [event]))
        payload = shredding.open_event(registry, event, keys)
        assert isinstance(payload, CompanyEvent)
        company_id = payload.company_id
        version = event.stream_version
        if isinstance(payload, CompanyCreated):
            await conn.execute(
                companies.insert().values(
                    company_id=company_id, name=payload.name, manager_id=None, version=version
                )
            )
            return
        if isinstance(payload, CompanyDeleted):
            for table in (company_members, company_contacts, company_equipment, companies):
                await conn.execute(table.delete().where(table.c.company_id == company_id))
            return
        company: dict[str, Any] = {"version": version}
        if isinstance(payload, CompanyRenamed):
            company["name"] = payload.name
        elif isinstance(payload, CompanyManagerAssigned):
            company["manager_id"] = payload.client_id
        elif isinstance(payload, CompanyMemberAdded):
            await conn.execute(
                company_members.insert().values(
                    company_id=company_id, client_id=payload.client_id, position=event.position
                )
            )
        elif isinstance(payload, CompanyMemberRemoved):
            await conn.execute(
                company_members.delete().where(
                    (company_members.c.company_id == company_id)
                    & (company_members.c.client_id == payload.client_id)
                )
            )
        elif isinstance(payload, ContactAdded):
            await conn.execute(
                company_contacts.insert().values(
                    contact_id=payload.contact_id,
                    company_id=company_id,
                    name=payload.name,
                    email=payload.email,
                    email_generated=payload.email_generated,
                    phone=payload.phone,
                    messenger=payload.messenger,
                    messenger_id=payload.messenger_id,
                    notifications=payload.notifications,
                    position=event.position,
                )
            )
        elif isinstance(payload, ContactChanged):
            values = {name: getattr(payload, name) for name in payload.changed}
            await conn.execute(
                company_contacts.update()
                .where(company_contacts.c.contact_id == payload.contact_id)
                .values(**values)
            )
        elif isinstance(payload, ContactRemoved):
            await conn.execute(
                company_contacts.delete().where(company_contacts.c.contact_id == payload.contact_id)
            )
        elif isinstance(payload, EquipmentAdded):
            await conn.execute(
                company_equipment.insert().values(
                    item_id=payload.item_id,
                    company_id=company_id,
                    name=payload.name,
                    type=payload.type,
                    serial=payload.serial,
                    parent_id=payload.parent_id,
                    position=event.position,
                )
            )
        elif isinstance(payload, EquipmentChanged):
            changes = {name: getattr(payload, name) for name in payload.changed}
            await conn.execute(
                company_equipment.update()
                .where(company_equipment.c.item_id == payload.item_id)
                .values(**changes)
            )
        elif isinstance(payload, EquipmentRemoved):
            await conn.execute(
                company_equipment.delete().where(company_equipment.c.item_id == payload.item_id)
            )
        await conn.execute(
            companies.update().where(companies.c.company_id == company_id).values(**company)
        )


def company_projections() -> list[Projection]:
    """The read models of companies, for the clients service's ``projections``."""
    return [CompanyDirectory()]
