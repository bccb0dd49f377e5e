"""The history of identity's access facts, kept so "who could see this ticket at T" is
answered from the log, for any past T (``GET /tickets/{id}/viewers``).

The access copy every service keeps (``shared.access.control.AccessCopy``)
holds each principal's access *now*; this table keeps every
``StaffAccessChanged`` and ``ClientAccessChanged`` identity published, with the
moment it happened and its place in identity's log.

Rules it keeps:

* One row per fact: (``principal_id``, ``version``), the fact's version on the
  principal's own stream, is the key, so a fact that comes twice (a relay's
  at-least-once, a refill) is kept once. Every fact carries the principal's
  whole access, so the row with the highest version at or before T *is* the
  principal's access at T; nothing is folded.
* Time is the fact's ``occurred_at`` (when identity decided it), and
  ``position`` its place in identity's log, for whoever follows up.
* Only what visibility needs is kept (full access, rights, departments, the
  rights' sources, disabled; a client's company and manager flag) plus the
  staff login; nothing secret is in these facts.
* A fact that is not an access fact, or does not decode, writes nothing.
* A service that had run before this table existed has it empty: refill it
  from the topic (``python -m shared.cli refill-copies tickets --copy
  access_history``); ``history_from`` tells a reader where the table begins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import structlog
from pydantic import ValidationError
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
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.access.control import AccessCopy, ClientAccessChanged, StaffAccessChanged
from shared.domain.events import RecordedEvent
from shared.readmodel.database import UtcDateTime, dialect_insert

log = structlog.get_logger(__name__)

metadata = MetaData()

access_history = Table(
    "access_history",
    metadata,
    Column("principal_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),  # on the principal's stream
    Column("kind", String(8), nullable=False),  # staff | client
    Column("position", BigInteger, nullable=False),  # in identity's log
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("login", String(64), nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("full_access", Boolean, nullable=False),
    Column("rights", Text, nullable=False),  # JSON list
    Column("departments", Text, nullable=False),  # JSON list
    Column("sources", Text, nullable=False),  # JSON {right: [source, ...]}
    Column("company_id", String(64), nullable=True),
    Column("company_manager", Boolean, nullable=False),
    Index("ix_access_history_at", "occurred_at"),
    Index("ix_access_history_company", "company_id"),
)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def record(conn: AsyncConnection, event: RecordedEvent) -> None:
    """Keep one fact of ``identity.events`` (nothing for any other event)."""
    if event.type not in ("StaffAccessChanged", "ClientAccessChanged"):
        return
    try:
        fact = AccessCopy.decode(event)
    except ValidationError as error:
        log.warning(
            "tickets.bad_access_fact",
            type=event.type,
            event_id=str(event.event_id),
            error=str(error),
        )
        return
    row: dict[str, Any] = {
        "version": event.stream_version,
        "position": event.position,
        "occurred_at": event.occurred_at,
    }
    if isinstance(fact, StaffAccessChanged):
        row.update(
            principal_id=fact.staff_id,
            kind="staff",
            login=fact.login[:64],
            disabled=fact.disabled,
            full_access=fact.full_access,
            rights=_json(sorted(fact.rights)),
            departments=_json(list(fact.departments)),
            sources=_json(fact.sources),
            company_id=None,
            company_manager=False,
        )
    elif isinstance(fact, ClientAccessChanged):
        row.update(
            principal_id=fact.client_id,
            kind="client",
            login="",  # a client's login is personal data; identity leaves it off the topic
            disabled=fact.disabled,
            full_access=False,
            rights="[]",
            departments="[]",
            sources="{}",
            company_id=fact.company_id,
            company_manager=fact.company_manager,
        )
    else:
        return
    insert = dialect_insert(conn.dialect.name, access_history)
    await conn.execute(insert.values(**row).on_conflict_do_nothing())


@dataclass(frozen=True)
class AccessAt:
    """One principal's access as the last fact at or before some moment said."""

    principal_id: str
    kind: str
    login: str
    disabled: bool
    full_access: bool
    rights: frozenset[str]
    departments: tuple[str, ...]
    sources: dict[str, list[str]]
    company_id: str | None
    company_manager: bool
    since: datetime  # when that fact happened
    position: int

    def has(self, right: str) -> bool:
        return self.full_access or right in self.rights


def _access_of(row: Any) -> AccessAt:
    return AccessAt(
        principal_id=row.principal_id,
        kind=row.kind,
        login=row.login,
        disabled=row.disabled,
        full_access=row.full_access,
        rights=frozenset(orjson.loads(row.rights)),
        departments=tuple(orjson.loads(row.departments)),
        sources=orjson.loads(row.sources),
        company_id=row.company_id,
        company_manager=row.company_manager,
        since=row.occurred_at,
        position=row.position,
    )


async def as_of(
    conn: AsyncConnection, at: datetime, kind: str, company_id: str | None = None
) -> list[AccessAt]:
    """Every principal of ``kind`` as they were at ``at`` (those without a fact yet: absent);
    with ``company_id``, only clients some fact up to ``at`` placed in that company."""
    h = access_history
    narrowed = select(h.c.principal_id, func.max(h.c.version).label("version")).where(
        h.c.occurred_at <= at, h.c.kind == kind
    )
    if company_id is not None:
        members = select(h.c.principal_id).where(
            h.c.company_id == company_id, h.c.occurred_at <= at
        )
        narrowed = narrowed.where(h.c.principal_id.in_(members))
    latest = narrowed.group_by(h.c.principal_id).subquery("latest")
    rows = await conn.execute(
        select(h)
        .join(
            latest,
            (h.c.principal_id == latest.c.principal_id) & (h.c.version == latest.c.version),
        )
        .order_by(h.c.principal_id)
    )
    return [_access_of(row) for row in rows]


async def one_as_of(conn: AsyncConnection, principal_id: str, at: datetime) -> AccessAt | None:
    """One principal as they were at ``at``; None before their first fact."""
    h = access_history
    row = (
        await conn.execute(
            select(h)
            .where(h.c.principal_id == principal_id, h.c.occurred_at <= at)
            .order_by(h.c.version.desc())
            .limit(1)
        )
    ).first()
    return None if row is None else _access_of(row)


async def history_from(conn: AsyncConnection) -> datetime | None:
    """When the oldest kept fact happened (None: nothing kept yet)."""
    found: datetime | None = (
        await conn.execute(select(func.min(access_history.c.occurred_at)))
    ).scalar()
    return found
