"""Read models of the clients context, fed from its own store.

* ``ClientDirectory``: one row per client with the card in clear text (opened
  with the client's key), link rows for the group and product filters, the
  client's messages, and the groups and projects. An erased client keeps its
  row (id, country, status, dates, penalty points: what reports count) with
  every personal column emptied; a rebuild after the erasure finds no key and
  writes nothing personal in the first place. ``search`` (lower-cased login,
  e-mail, company, contact person) has a trigram GIN index on PostgreSQL, made
  with the ``pg_trgm`` extension when the database allows it (SQLite scans).
* ``StaffNames``: the names of staff members (for ``%admin_name%``), kept by a
  consumer of ``identity.events``, so it is not a projection of this store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    text,
    update,
)
from sqlalchemy.event import listen
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.schema import SchemaItem
from sqlalchemy.sql.compiler import DDLCompiler
from sqlalchemy.sql.ddl import BaseDDLElement

from services.clients.domain.events import (
    CLIENT_PERSONAL,
    AbuseNoticeExpired,
    ClientChanged,
    ClientErased,
    ClientGroupCreated,
    ClientGroupDeleted,
    ClientGroupRenamed,
    ClientMessaged,
    ClientRegistered,
    ClientServicesResumed,
    ClientServicesSuspended,
    PenaltyPointsAdded,
    ProjectChanged,
    ProjectCreated,
    ProjectDeleted,
    registry,
)
from shared.domain.events import RecordedEvent
from shared.privacy import shredding
from shared.projections.runner import Projection
from shared.readmodel.database import RowFold, UtcDateTime, among, insert_rows

metadata = MetaData()


# Before the tables, on every start (so an existing database gets it too): the
# trigram extension, if this database lets us make it. Without it the index
# below is skipped and ``?name=`` still works, by scanning; the DO block keeps
# a refusal from failing the start.
def _make_trigrams(_target: MetaData, connection: Connection, **_: Any) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(
            text(
                "DO $$ BEGIN CREATE EXTENSION IF NOT EXISTS pg_trgm; EXCEPTION WHEN OTHERS"
                " THEN RAISE NOTICE 'pg_trgm unavailable: client search scans'; END $$"
            )
        )


listen(metadata, "before_create", _make_trigrams)


def _trigrams_available(
    ddl: BaseDDLElement,
    target: SchemaItem | str,
    bind: Connection | None,
    tables: list[Table] | None = None,
    state: Any | None = None,
    *,
    dialect: Dialect | None = None,
    compiler: DDLCompiler | None = None,
    checkfirst: bool = False,
) -> bool:
    """Whether ``_make_trigrams`` could make pg_trgm here (the index's condition)."""
    if bind is None or bind.dialect.name != "postgresql":
        return False
    found = bind.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'"))
    return found.first() is not None


clients = Table(
    "clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("login", String(64), nullable=True),
    Column("email", String(320), nullable=True),
    Column("country", String(2), nullable=False),
    Column("customer_status", String(16), nullable=False),
    Column("company_name", String(200), nullable=True),
    Column("contact_person", String(200), nullable=True),
    Column("project_id", String(64), nullable=True, index=True),
    Column("registered_at", UtcDateTime(), nullable=False, index=True),
    Column("registration_ip", String(64), nullable=True),
    Column("language", String(8), nullable=False, index=True),
    Column("phone", String(200), nullable=True),
    Column("phone_verified", Boolean, nullable=False),
    Column("note", Text, nullable=True),
    Column("referral_source", String(200), nullable=True),
    Column("characteristic", String(16), nullable=False),
    Column("referrer_id", String(64), nullable=True),
    Column("partner_program", String(64), nullable=True),
    Column("groups", Text, nullable=False),  # JSON list, also in client_group_links
    Column("products", Text, nullable=False),  # JSON list, also in client_products
    Column("penalty_points", Integer, nullable=False),
    Column("services_suspended", Boolean, nullable=False),
    Column("erased", Boolean, nullable=False),
    # Lower-cased login, e-mail, company and contact person: what ``?name=`` searches.
    Column("search", Text, nullable=False),
    Column("version", Integer, nullable=False),
    # ``?name=`` is ``search LIKE '%…%'``: a trigram index serves it on PostgreSQL
    # (when pg_trgm could be made, ``_make_trigrams``); SQLite scans.
    Index(
        "ix_clients_search_trgm",
        "search",
        postgresql_using="gin",
        postgresql_ops={"search": "gin_trgm_ops"},
    ).ddl_if(callable_=_trigrams_available),
)

client_group_links = Table(
    "client_group_links",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("group_id", String(64), primary_key=True, index=True),
)

client_products = Table(
    "client_products",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("product", String(64), primary_key=True, index=True),
)

client_messages = Table(
    "client_messages",
    metadata,
    Column("message_id", String(64), primary_key=True),
    Column("client_id", String(64), primary_key=True),
    Column("category_id", String(64), nullable=True),
    Column("subject", Text, nullable=True),
    Column("text", Text, nullable=True),
    Column("language", String(8), nullable=False),
    Column("forbid_replies", Boolean, nullable=False),
    Column("assign_replies_to", String(64), nullable=True),
    Column("attachments", Text, nullable=False),  # JSON list of attachment records
    Column("violation", Text, nullable=True),  # JSON or NULL
    Column("notice_state", String(16), nullable=True),  # open / expired, for abuse notices
    Column("action_taken", String(32), nullable=True),
    Column("sent_at", UtcDateTime(), nullable=False),
    Column("sent_by", String(64), nullable=True),
    Column("impersonator_id", String(64), nullable=True),
)

client_groups = Table(
    "client_groups",
    metadata,
    Column("group_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("version", Integer, nullable=False),
)

projects = Table(
    "projects",
    metadata,
    Column("project_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("version", Integer, nullable=False),
)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _search(*parts: str | None) -> str:
    return " ".join(p.lower() for p in parts if p)


SEARCHED = ("login", "email", "company_name", "contact_person")


@dataclass
class _ClientBatch:
    """A batch's client rows (as they will be written), new messages and each
    client's latest group and product lists, written by ``flush``; statements on
    other tables run as the events come."""

    clients: RowFold = field(default_factory=lambda: RowFold(clients))
    messages: list[dict[str, Any]] = field(default_factory=list)
    groups: dict[str, list[str]] = field(default_factory=dict)
    products: dict[str, list[str]] = field(default_factory=dict)

    async def flush_messages(self, conn: AsyncConnection) -> None:
        await insert_rows(conn, client_messages, self.messages)
        self.messages = []

    def link(self, client_id: str, groups: list[str] | None, products: list[str] | None) -> None:
        """The client's lists as they stand after this event (None: unchanged)."""
        if groups is not None:
            self.groups[client_id] = groups
        if products is not None:
            self.products[client_id] = products

    async def flush_links(self, conn: AsyncConnection) -> None:
        """Each touched client's link rows replaced: one DELETE and one INSERT per table."""
        for table, column, lists in (
            (client_group_links, "group_id", self.groups),
            (client_products, "product", self.products),
        ):
            if not lists:
                continue
            await conn.execute(delete(table).where(among(conn, table.c.client_id, lists)))
            rows = [{"client_id": c, column: v} for c, values in lists.items() for v in values]
            await insert_rows(conn, table, rows)
            lists.clear()

    async def flush(self, conn: AsyncConnection) -> None:
        await self.clients.write(conn)
        await self.flush_messages(conn)
        await self.flush_links(conn)


class ClientDirectory(Projection):
    """Clients, their messages, groups and projects, as the API lists and shows them."""

    name = "client_directory"
    rebuild_cost = 46
    metadata = metadata
    reads = (shredding.metadata,)

    async def apply(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        await self.apply_all(conn, [event])

    async def apply_all(self, conn: AsyncConnection, events: list[RecordedEvent]) -> None:
        """A batch in a few statements: the keys and the client rows it touches read at
        once, the events folded into those rows in memory, each row written once."""
        known = registry.models()
        relevant = [e for e in events if e.type in known]
        if not relevant:
            return
        keys = await shredding.keys_in(conn, shredding.subjects_of(registry, relevant))
        opened = [(e, shredding.open_event(registry, e, keys)) for e in relevant]
        registered = {p.client_id for _, p in opened if type(p) is ClientRegistered}
        stored = {
            str(client_id)
            for _, p in opened
            if (client_id := getattr(p, "client_id", None)) and client_id not in registered
        }
        batch = _ClientBatch()
        await batch.clients.load(conn, stored)
        for event, payload in opened:
            await self._apply(conn, event, payload, batch)
        await batch.flush(conn)

    async def _apply(
        self, conn: AsyncConnection, event: RecordedEvent, payload: Any, batch: _ClientBatch
    ) -> None:
        version = event.stream_version
        # By exact class (event models are final): ``isinstance`` on a pydantic model
        # goes through ABCMeta's Python-level check, several per event of a rebuild.
        if type(payload) is ClientRegistered:
            row = payload.model_dump(exclude={"groups", "products"})
            batch.clients.add(
                dict(
                    **row,
                    groups=_json(payload.groups),
                    products=_json(payload.products),
                    penalty_points=0,
                    services_suspended=False,
                    erased=False,
                    search=_search(*(row[name] for name in SEARCHED)),
                    version=version,
                )
            )
            batch.link(payload.client_id, payload.groups, payload.products)
        elif type(payload) is ClientChanged:
            values: dict[str, Any] = {"version": version}
            for name in payload.changed:
                value = getattr(payload, name)
                values[name] = _json(value) if name in ("groups", "products") else value
            current = batch.clients.get(payload.client_id)
            if current is not None and any(name in payload.changed for name in SEARCHED):
                merged = {name: values.get(name, current[name]) for name in SEARCHED}
                values["search"] = _search(*merged.values())
            batch.clients.change(payload.client_id, values)
            batch.link(payload.client_id, payload.groups, payload.products)
        elif type(payload) is ClientErased:
            blank = {name: None for name in CLIENT_PERSONAL}
            batch.clients.change(
                payload.client_id, {**blank, "search": "", "erased": True, "version": version}
            )
            await batch.flush_messages(conn)  # this batch's messages to them too
            await conn.execute(
                update(client_messages)
                .where(client_messages.c.client_id == payload.client_id)
                .values(subject=None, text=None)
            )
        elif type(payload) is ClientMessaged:
            violation = payload.violation
            batch.messages.append(
                dict(
                    message_id=payload.message_id,
                    client_id=payload.client_id,
                    category_id=payload.category_id,
                    subject=payload.subject,
                    text=payload.text,
                    language=payload.language,
                    forbid_replies=payload.forbid_replies,
                    assign_replies_to=payload.assign_replies_to,
                    attachments=_json([a.model_dump(mode="json") for a in payload.attachments]),
                    violation=None
                    if violation is None
                    else _json(violation.model_dump(mode="json")),
                    notice_state=None if violation is None else "open",
                    action_taken=None,
                    sent_at=event.occurred_at,
                    sent_by=event.actor.id,
                    impersonator_id=event.actor.impersonator_id,
                )
            )
            batch.clients.change(payload.client_id, {"version": version})
        elif type(payload) is PenaltyPointsAdded:
            current = batch.clients.get(payload.client_id)
            if current is not None:
                points = current["penalty_points"] + payload.points
                batch.clients.change(
                    payload.client_id, {"penalty_points": points, "version": version}
                )
        elif type(payload) is AbuseNoticeExpired:
            await batch.flush_messages(conn)
            await conn.execute(
                update(client_messages)
                .where(
                    (client_messages.c.message_id == payload.message_id)
                    & (client_messages.c.client_id == payload.client_id)
                )
                .values(notice_state="expired", action_taken=payload.action)
            )
            batch.clients.change(payload.client_id, {"version": version})
        elif type(payload) is ClientServicesSuspended or type(payload) is ClientServicesResumed:
            suspended = type(payload) is ClientServicesSuspended
            batch.clients.change(
                payload.client_id, {"services_suspended": suspended, "version": version}
            )
        elif type(payload) is ClientGroupCreated:
            await conn.execute(
                insert(client_groups).values(
                    group_id=payload.group_id, name=payload.name, deleted=False, version=version
                )
            )
        elif type(payload) is ClientGroupRenamed:
            await conn.execute(
                update(client_groups)
                .where(client_groups.c.group_id == payload.group_id)
                .values(name=payload.name, version=version)
            )
        elif type(payload) is ClientGroupDeleted:
            await conn.execute(
                update(client_groups)
                .where(client_groups.c.group_id == payload.group_id)
                .values(deleted=True, version=version)
            )
        elif type(payload) is ProjectCreated:
            await conn.execute(
                insert(projects).values(
                    project_id=payload.project_id,
                    name=payload.name,
                    description=payload.description,
                    deleted=False,
                    version=version,
                )
            )
        elif type(payload) is ProjectChanged:
            changes: dict[str, Any] = {"version": version}
            if payload.name is not None:
                changes["name"] = payload.name
            if payload.description is not None:
                changes["description"] = payload.description
            await conn.execute(
                update(projects)
                .where(projects.c.project_id == payload.project_id)
                .values(**changes)
            )
        elif type(payload) is ProjectDeleted:
            await conn.execute(
                update(projects)
                .where(projects.c.project_id == payload.project_id)
                .values(deleted=True, version=version)
            )
        elif event.stream.startswith("client-") and hasattr(payload, "client_id"):
            # Other facts on a client's stream (password reset, impersonation):
            # only the version moves, so ``expected_version`` stays right.
            batch.clients.change(payload.client_id, {"version": version})
