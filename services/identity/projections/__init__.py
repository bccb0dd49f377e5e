"""Read models of identity.

* ``StaffDirectory`` (from identity's own store): staff rows for lists and
  cards, each member's effective rights with their sources (the
  effective-permissions read model behind ``GET /me`` and
  ``GET /staff/{id}/rights``), and sessions of staff and clients alike
  (impersonations among them), so that identity can end a principal's.

Identity's copy of departments (``departments_seen``) is not a read model of
its own log: it lives in ``services.identity.copies``.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import (
    Boolean,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.identity.domain.events import (
    AvatarChanged,
    SessionStarted,
    StaffAdded,
    StaffChanged,
    StaffDisabled,
    registry,
)
from shared.access.control import SessionEnded, StaffAccessChanged
from shared.domain.events import RecordedEvent
from shared.projections.runner import Projection
from shared.readmodel.database import UtcDateTime, upsert

staff_metadata = MetaData()

staff_rows = Table(
    "staff",
    staff_metadata,
    Column("staff_id", String(64), primary_key=True),
    Column("login", String(64), nullable=False),
    Column("card", Text, nullable=False),  # the account fields as JSON
    Column("departments", Text, nullable=False),  # JSON list, for membership queries
    Column("disabled", Boolean, nullable=False),
    Column("version", Integer, nullable=False),
)

staff_rights = Table(
    "staff_rights",
    staff_metadata,
    Column("staff_id", String(64), primary_key=True),
    Column("full_access", Boolean, nullable=False),
    Column("sources", Text, nullable=False),  # {right: [source, ...]} as JSON
)

sessions = Table(
    "sessions",
    staff_metadata,
    Column("session_id", String(64), primary_key=True),
    Column("principal_id", String(64), nullable=False, index=True),
    Column("ip", String(64), nullable=True),
    Column("active", Boolean, nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
)

# Which sessions are impersonations, and by whom: ending the staff member's
# session, or disabling them, ends these too. (A table of its own, so that
# read models made before impersonation existed need no new column.)
impersonations = Table(
    "impersonations",
    staff_metadata,
    Column("session_id", String(64), primary_key=True),
    Column("impersonator_id", String(64), nullable=False, index=True),
    Column("impersonator_session_id", String(64), nullable=True, index=True),
)

CARD_FIELDS = (
    "login",
    "full_name",
    "email",
    "phone",
    "departments",
    "full_access",
    "ip_policy",
    "bind_session_to_ip",
    "chat_enabled",
    "group",
)


class StaffDirectory(Projection):
    name = "staff_directory"
    metadata = staff_metadata

    async def apply(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        if event.type not in registry.models():
            return
        payload = registry.decode(event)
        if isinstance(payload, StaffAdded):
            card = payload.model_dump(mode="json", include=set(CARD_FIELDS))
            card.update(disabled=False, avatar=None)
            await conn.execute(
                staff_rows.insert().values(
                    staff_id=payload.staff_id,
                    login=payload.login,
                    card=_json(card),
                    departments=_json(payload.departments),
                    disabled=False,
                    version=event.stream_version,
                )
            )
        elif isinstance(payload, StaffChanged | StaffDisabled | AvatarChanged):
            await self._update_card(conn, payload, event.stream_version)
        elif isinstance(payload, StaffAccessChanged):
            row = {
                "staff_id": payload.staff_id,
                "full_access": payload.full_access,
                "sources": _json(payload.sources),
            }
            await upsert(conn, staff_rights, row)
        elif isinstance(payload, SessionStarted):
            await conn.execute(
                sessions.insert().values(
                    session_id=payload.session_id,
                    principal_id=payload.principal_id,
                    # Sealed in the log (personal data); nothing here reads it.
                    ip=None,
                    active=True,
                    expires_at=payload.expires_at,
                )
            )
            if payload.impersonator_id is not None:
                await conn.execute(
                    impersonations.insert().values(
                        session_id=payload.session_id,
                        impersonator_id=payload.impersonator_id,
                        impersonator_session_id=payload.impersonator_session_id,
                    )
                )
        elif isinstance(payload, SessionEnded):
            await conn.execute(
                sessions.update()
                .where(sessions.c.session_id == payload.session_id)
                .values(active=False)
            )

    async def _update_card(
        self,
        conn: AsyncConnection,
        payload: StaffChanged | StaffDisabled | AvatarChanged,
        version: int,
    ) -> None:
        row = (
            await conn.execute(
                select(staff_rows.c.card).where(staff_rows.c.staff_id == payload.staff_id)
            )
        ).first()
        if row is None:
            return
        card: dict[str, Any] = orjson.loads(row[0])
        if isinstance(payload, StaffChanged):
            card.update(payload.model_dump(mode="json", exclude_none=True, exclude={"staff_id"}))
        elif isinstance(payload, StaffDisabled):
            card["disabled"] = True
        else:
            card["avatar"] = {"sha256": payload.sha256, "content_type": payload.content_type}
        await conn.execute(
            staff_rows.update()
            .where(staff_rows.c.staff_id == payload.staff_id)
            .values(
                card=_json(card),
                departments=_json(card["departments"]),
                disabled=card["disabled"],
                version=version,
            )
        )


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def projections() -> list[Projection]:
    """The read models this service keeps (besides the kernel's event counts)."""
    return [StaffDirectory()]
