"""Identity's copy of departments, from ``departments.events`` (``shared.messaging.copies``).

``departments_seen``: which departments exist and the rights each gives, so
identity can validate memberships and derive its members' access. Rules kept:
a department's id and its deleted flag come from the department's own events,
its rights only from ``DepartmentRightsChanged`` (the fact departments publish
for access); a change applied twice leaves the same row (the consumer's inbox
drops copies, and ``record_department`` only sets what the fact says). Filled
again by ``python -m shared.cli refill-copies identity``.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Boolean, Column, MetaData, String, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.access.control import DepartmentRightsChanged
from shared.domain.events import RecordedEvent

departments_metadata = MetaData()

departments_seen = Table(
    "departments_seen",
    departments_metadata,
    Column("department_id", String(64), primary_key=True),
    Column("deleted", Boolean, nullable=False),
    Column("rights", Text, nullable=False),  # JSON list of effective rights
)


def department_change(event: RecordedEvent) -> tuple[str, bool | None, list[str] | None] | None:
    """(department id, deleted?, rights?) from a ``departments.events`` message we care about."""
    data = event.data
    if event.type == "DepartmentCreated":
        return str(data["department_id"]), False, None
    if event.type == "DepartmentDeleted":
        return str(data["department_id"]), True, None
    if event.type == DepartmentRightsChanged.event_type:
        fact = DepartmentRightsChanged.model_validate(data)
        return fact.department_id, fact.deleted or None, list(fact.rights)
    return None


async def copy_department(conn: AsyncConnection, event: RecordedEvent) -> None:
    """The copy part of following ``departments.events``: ``departments_seen`` alone
    (``shared.messaging.copies``; the handler also re-derives members' access)."""
    change = department_change(event)
    if change is not None:
        await record_department(conn, *change)


async def record_department(
    conn: AsyncConnection, department_id: str, deleted: bool | None, rights: list[str] | None
) -> None:
    row = (
        await conn.execute(
            select(departments_seen.c.deleted, departments_seen.c.rights).where(
                departments_seen.c.department_id == department_id
            )
        )
    ).first()
    values: dict[str, Any] = {}
    if deleted is not None:
        values["deleted"] = deleted
    if rights is not None:
        values["rights"] = _json(sorted(rights))
    if row is None:
        await conn.execute(
            departments_seen.insert().values(
                department_id=department_id,
                deleted=values.get("deleted", False),
                rights=values.get("rights", "[]"),
            )
        )
    elif values:
        await conn.execute(
            departments_seen.update()
            .where(departments_seen.c.department_id == department_id)
            .values(**values)
        )


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()
