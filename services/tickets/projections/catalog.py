"""Read model of the support catalogue: ``CatalogDirectory``.

Categories, response templates, announcements and paid-request balances with
their history, as the API lists them; rebuilt from the events alone
(``python -m shared.cli rebuild tickets --projection catalog_directory``).
Deleted categories and templates lose their rows; announcements keep theirs
(staff list past ones), with ``active_until`` = the earlier of their end and
the moment staff ended them.

``catalog_announcement_marks`` is not part of the read model (a rebuild keeps
it): the application layer writes there the position of every announcement
command it answered, and this projection clears a mark once it has applied
that position. ``SupportCatalog.blocking_announcement`` reads the read model
and then loads from the store every announcement whose mark is beyond the
projection's checkpoint, so the lag of this read model never hides an
announcement whose 201 was already given (see ``services.tickets.app.catalog``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    func,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.tickets.domain.catalog_events import (
    CATALOG_EVENTS,
    AnnouncementEnded,
    AnnouncementPublished,
    LocalizedText,
    PaidRequestReturned,
    PaidRequestsCredited,
    PaidRequestTaken,
    ResponseTemplateChanged,
    ResponseTemplateCreated,
    ResponseTemplateDeleted,
    TicketCategoryChanged,
    TicketCategoryCreated,
    TicketCategoryDeleted,
)
from services.tickets.domain.events import registry
from shared.domain.events import RecordedEvent
from shared.names import checkpoint_name
from shared.projections.runner import Projection
from shared.readmodel.database import UtcDateTime, checkpoints, upsert

metadata = MetaData()

categories = Table(
    "catalog_categories",
    metadata,
    Column("category_id", String(64), primary_key=True),
    Column("topic_en", String(200), nullable=False),
    Column("topic_ru", String(200), nullable=False),
    Column("department_id", String(64), nullable=False, index=True),
    Column("project_id", String(64), nullable=True, index=True),
    Column("paid", Boolean, nullable=False),
    Column("warning", Text, nullable=False),
    Column("sort", Integer, nullable=False),
    Column("version", Integer, nullable=False),
)

templates = Table(
    "catalog_templates",
    metadata,
    Column("template_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("body", Text, nullable=False),
    Column("version", Integer, nullable=False),
)

announcements = Table(
    "catalog_announcements",
    metadata,
    Column("announcement_id", String(64), primary_key=True),
    Column("text", Text, nullable=False),  # JSON: a string or {"en","ru"}, as given
    Column("starts_at", UtcDateTime(), nullable=False),
    Column("ends_at", UtcDateTime(), nullable=False),
    Column("ended_at", UtcDateTime(), nullable=True),
    Column("active_until", UtcDateTime(), nullable=False),
    Column("blocking", Boolean, nullable=False),
    Column("published_by", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Index("catalog_announcements_window", "active_until", "starts_at"),
)

paid_balances = Table(
    "catalog_paid_balances",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("balance", Integer, nullable=False),
    Column("version", Integer, nullable=False),
)

paid_history = Table(
    "catalog_paid_history",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),  # the stream version of the entry
    Column("kind", String(16), nullable=False),  # credited / taken / returned
    Column("amount", Integer, nullable=False),  # +n credited, -1 taken, +1 returned
    Column("balance", Integer, nullable=False),  # after the entry
    Column("ticket_id", String(64), nullable=True),
    Column("comment", Text, nullable=False),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("actor_id", String(64), nullable=False),
    Column("impersonator_id", String(64), nullable=True),
)

marks_metadata = MetaData()

announcement_marks = Table(
    "catalog_announcement_marks",
    marks_metadata,
    Column("announcement_id", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
)


def text_json(text: LocalizedText | str) -> str:
    value: Any = text if isinstance(text, str) else text.model_dump()
    return orjson.dumps(value).decode()


def text_from_json(raw: str) -> LocalizedText | str:
    value = orjson.loads(raw)
    return value if isinstance(value, str) else LocalizedText.model_validate(value)


class CatalogDirectory(Projection):
    """Categories, templates, announcements and paid balances, as the API lists them."""

    name = "catalog_directory"
    rebuild_cost = 0.2
    handles = CATALOG_EVENTS
    metadata = metadata
    reads = (marks_metadata,)

    async def apply(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        if event.type not in CATALOG_EVENTS:
            return
        payload = registry.decode(event)
        version = event.stream_version
        if isinstance(payload, TicketCategoryCreated):
            await conn.execute(
                categories.insert().values(
                    category_id=payload.category_id,
                    topic_en=payload.topic.en,
                    topic_ru=payload.topic.ru,
                    department_id=payload.department_id,
                    project_id=payload.project_id,
                    paid=payload.paid,
                    warning=payload.warning,
                    sort=payload.sort,
                    version=version,
                )
            )
        elif isinstance(payload, TicketCategoryChanged):
            values: dict[str, Any] = {"version": version}
            for name in payload.changed:
                if name == "topic":
                    assert payload.topic is not None
                    values["topic_en"] = payload.topic.en
                    values["topic_ru"] = payload.topic.ru
                else:
                    values[name] = getattr(payload, name)
            await conn.execute(
                categories.update()
                .where(categories.c.category_id == payload.category_id)
                .values(**values)
            )
        elif isinstance(payload, TicketCategoryDeleted):
            await conn.execute(
                categories.delete().where(categories.c.category_id == payload.category_id)
            )
        elif isinstance(payload, ResponseTemplateCreated):
            await conn.execute(
                templates.insert().values(
                    template_id=payload.template_id,
                    name=payload.name,
                    subject=payload.subject,
                    body=payload.body,
                    version=version,
                )
            )
        elif isinstance(payload, ResponseTemplateChanged):
            changes = {name: getattr(payload, name) for name in payload.changed}
            await conn.execute(
                templates.update()
                .where(templates.c.template_id == payload.template_id)
                .values(version=version, **changes)
            )
        elif isinstance(payload, ResponseTemplateDeleted):
            await conn.execute(
                templates.delete().where(templates.c.template_id == payload.template_id)
            )
        elif isinstance(payload, AnnouncementPublished):
            await conn.execute(
                announcements.insert().values(
                    announcement_id=payload.announcement_id,
                    text=text_json(payload.text),
                    starts_at=payload.starts_at,
                    ends_at=payload.ends_at,
                    ended_at=None,
                    active_until=payload.ends_at,
                    blocking=payload.blocking,
                    published_by=event.actor.id,
                    version=version,
                )
            )
            await self._clear_mark(conn, payload.announcement_id, event.position)
        elif isinstance(payload, AnnouncementEnded):
            row = (
                await conn.execute(
                    announcements.select().where(
                        announcements.c.announcement_id == payload.announcement_id
                    )
                )
            ).first()
            if row is not None:
                await conn.execute(
                    announcements.update()
                    .where(announcements.c.announcement_id == payload.announcement_id)
                    .values(
                        ended_at=payload.ended_at,
                        active_until=min(row.ends_at, payload.ended_at),
                        version=version,
                    )
                )
            await self._clear_mark(conn, payload.announcement_id, event.position)
        elif isinstance(payload, PaidRequestsCredited | PaidRequestTaken | PaidRequestReturned):
            await self._paid(conn, event, payload)

    async def _paid(
        self,
        conn: AsyncConnection,
        event: RecordedEvent,
        payload: PaidRequestsCredited | PaidRequestTaken | PaidRequestReturned,
    ) -> None:
        version = event.stream_version
        await upsert(
            conn,
            paid_balances,
            {"client_id": payload.client_id, "balance": payload.balance, "version": version},
        )
        if isinstance(payload, PaidRequestsCredited):
            kind, amount, ticket_id, comment = "credited", payload.amount, None, payload.comment
        elif isinstance(payload, PaidRequestTaken):
            kind, amount, ticket_id, comment = "taken", -1, payload.ticket_id, ""
        else:
            kind, amount, ticket_id, comment = "returned", 1, payload.ticket_id, ""
        await conn.execute(
            paid_history.insert().values(
                client_id=payload.client_id,
                version=version,
                kind=kind,
                amount=amount,
                balance=payload.balance,
                ticket_id=ticket_id,
                comment=comment,
                occurred_at=event.occurred_at,
                actor_id=event.actor.id,
                impersonator_id=event.actor.impersonator_id,
            )
        )

    async def _clear_mark(self, conn: AsyncConnection, announcement_id: str, position: int) -> None:
        await conn.execute(
            announcement_marks.delete().where(
                (announcement_marks.c.announcement_id == announcement_id)
                & (announcement_marks.c.position <= position)
            )
        )


# Built once: every client's open asks it. One statement, so one snapshot: the
# marks past the directory's checkpoint and the rows, which are at least that far.
_BLOCKING_NOW = union_all(
    select(
        literal_column("'row'").label("kind"),
        announcements.c.announcement_id,
        announcements.c.text,
        announcements.c.starts_at,
        announcements.c.active_until,
    ).where(
        announcements.c.blocking.is_(True)
        & (announcements.c.starts_at <= bindparam("now"))
        & (announcements.c.active_until > bindparam("now"))
    ),
    select(
        literal_column("'mark'"), announcement_marks.c.announcement_id, null(), null(), null()
    ).where(
        announcement_marks.c.position
        > func.coalesce(
            select(checkpoints.c.position)
            .where(checkpoints.c.name == checkpoint_name(CatalogDirectory.name))
            .scalar_subquery(),
            0,
        )
    ),
)


async def blocking_now(conn: AsyncConnection, now: datetime) -> tuple[list[Any], set[str]]:
    """Blocking announcements active at ``now`` by the read model, and the ids of
    announcements answered beyond it (their rows may be behind: load those)."""
    rows, marked = [], set()
    for row in await conn.execute(_BLOCKING_NOW, {"now": now}):
        if row.kind == "mark":
            marked.add(str(row.announcement_id))
        else:
            rows.append(row)
    return rows, marked


def catalog_projections() -> list[Projection]:
    """The read models of the catalogue, for the tickets service's ``projections``."""
    return [CatalogDirectory()]
