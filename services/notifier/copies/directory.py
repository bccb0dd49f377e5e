"""What the notifier knows of other contexts, from their topics: staff, departments, tickets.

Kept by the stream processor in the read-model database, each event applied in
the same transaction that records it in the inbox (so once). What it stores fits
its columns (``shared.messaging.limits``): names clipped, a fact with an id that
does not fit logged and skipped, a phone or e-mail that does not fit left out. Clients' e-mails
and phones are not here: they are sealed on ``clients.events`` and read from
the clients service when a notice is due (``adapters.clients_http``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

import orjson
import structlog
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    MetaData,
    String,
    Table,
    Text,
    delete,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier.domain.deadlines import TicketFacts
from services.notifier.domain.notices import StaffCard
from services.notifier.domain.subscription import Subscription
from services.notifier.projections import subscriptions
from shared.domain.business_hours import BusinessHours, WeeklyHours
from shared.domain.events import RecordedEvent
from shared.messaging.limits import ID_MAX, clip, fact_id, fitting
from shared.messaging.staff_facts import STAFF_FACTS, StaffFact, staff_fact
from shared.readmodel.database import upsert

log = structlog.get_logger(__name__)

metadata = MetaData()

staff_cards = Table(
    "notifier_staff",
    metadata,
    Column("staff_id", String(64), primary_key=True),
    Column("email", String(320), nullable=True),
    Column("phone", String(64), nullable=True),
    Column("name_en", String(200), nullable=False),
    Column("name_ru", String(200), nullable=False),
    Column("active", Boolean, nullable=False),
)

staff_departments = Table(
    "notifier_staff_departments",
    metadata,
    Column("staff_id", String(64), primary_key=True),
    Column("department_id", String(64), primary_key=True, index=True),
)

departments = Table(
    "notifier_departments",
    metadata,
    Column("department_id", String(64), primary_key=True),
    Column("name_en", String(200), nullable=False),
    Column("name_ru", String(200), nullable=False),
    Column("schedule_id", String(64), nullable=True),
)

schedules = Table(
    "notifier_schedules",
    metadata,
    Column("schedule_id", String(64), primary_key=True),
    Column("timezone", String(64), nullable=False),
    Column("weekly", Text, nullable=False),
    Column("holidays", Text, nullable=False),
)

tickets = Table(
    "notifier_tickets",
    metadata,
    Column("ticket_id", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("department_id", String(64), nullable=True),
    Column("assignee_id", String(64), nullable=True),
    Column("message_ref", String(64), nullable=True),
    # The short number its opening carried: a notice names the ticket without asking the
    # tickets service (NULL for tickets the directory knew before the column).
    Column("number", BigInteger, nullable=True),
)


async def _apply_staff(conn: AsyncConnection, fact: StaffFact) -> None:
    """A member's name, addresses, departments and whether they are active."""
    if fact.added:
        await upsert(conn, staff_cards, {
            "staff_id": fact.staff_id, "email": fact.email, "phone": fact.phone,
            "name_en": fact.name_en or "", "name_ru": fact.name_ru or "", "active": True,
        })  # fmt: skip
    else:
        changes: dict[str, Any] = {"active": False} if fact.disabled else {}
        changes |= {k: v for k, v in (("email", fact.email), ("phone", fact.phone)) if v}
        changes |= fact.names or {}
        if changes:
            await conn.execute(
                update(staff_cards).where(staff_cards.c.staff_id == fact.staff_id).values(**changes)
            )
    if fact.departments is not None:
        await _set_departments(conn, fact.staff_id, list(fact.departments))


CHANGING = frozenset({
    "DepartmentCreated", "DepartmentChanged", "ScheduleCreated", "ScheduleChanged",
    "TicketOpened", "TicketLinkedToClient", "TicketAssigned", "TicketTransferred",
})  # fmt: skip


def changes(event: RecordedEvent) -> bool:
    """Whether ``apply`` may change the directory for ``event`` (a staff fact, or one of
    ``CHANGING``): the processor decides the events after it on the changed directory."""
    return event.type in CHANGING or event.type in STAFF_FACTS


_IDS = ("department_id", "schedule_id", "ticket_id", "client_id", "assignee_id", "to_staff_id",
        "to_department_id", "message_ref")  # fmt: skip


async def apply(conn: AsyncConnection, event: RecordedEvent) -> None:
    """Change the directory for one fact of another context (unknown facts: nothing).

    What it stores fits the columns (``shared.messaging.limits``): a fact with an
    id that does not fit is logged and skipped, names are clipped."""
    d, kind = event.data, event.type
    staff = staff_fact(event)
    if staff is not None:
        await _apply_staff(conn, staff)
        return
    misfits = [k for k in _IDS if d.get(k) is not None and fact_id(d[k]) is None]
    if misfits:
        log.warning("notifier.bad_fact", type=kind, event_id=str(event.event_id), fields=misfits)
        return
    if kind == "DepartmentCreated":
        name = d.get("name") or {}
        await upsert(conn, departments, {
            "department_id": d["department_id"], "name_en": clip(name.get("en", "")),
            "name_ru": clip(name.get("ru", "")), "schedule_id": d.get("schedule_id"),
        })  # fmt: skip
    elif kind == "DepartmentChanged":
        changed = d.get("changed") or []
        values: dict[str, Any] = {}
        if "name" in changed and d.get("name"):
            values |= {"name_en": clip(d["name"].get("en", "")),
                       "name_ru": clip(d["name"].get("ru", ""))}  # fmt: skip
        if "schedule_id" in changed:
            values["schedule_id"] = d.get("schedule_id")
        if values:
            await conn.execute(
                update(departments)
                .where(departments.c.department_id == d["department_id"])
                .values(**values)
            )
    elif kind in ("ScheduleCreated", "ScheduleChanged"):
        await _apply_schedule(conn, kind, d)
    elif kind == "TicketOpened":
        await upsert(conn, tickets, {
            "ticket_id": d["ticket_id"], "client_id": d["client_id"],
            "department_id": d.get("department_id"), "assignee_id": d.get("assignee_id"),
            "message_ref": d.get("message_ref"),
            "number": _number(d.get("number")),
        })  # fmt: skip
    elif kind == "TicketLinkedToClient":  # a contact's ticket is now the client's
        await conn.execute(
            update(tickets)
            .where(tickets.c.ticket_id == d["ticket_id"])
            .values(client_id=d["client_id"])
        )
    elif kind == "TicketAssigned":
        await conn.execute(
            update(tickets)
            .where(tickets.c.ticket_id == d["ticket_id"])
            .values(assignee_id=d.get("assignee_id"))
        )
    elif kind == "TicketTransferred":
        moved: dict[str, Any] = {"assignee_id": d.get("to_staff_id")}
        if d.get("to_department_id"):
            moved["department_id"] = d["to_department_id"]
        await conn.execute(
            update(tickets).where(tickets.c.ticket_id == d["ticket_id"]).values(**moved)
        )


def _number(value: Any) -> int | None:
    """A ticket's number as the column takes it; None when it does not fit."""
    return value if isinstance(value, int) and 0 <= value < 2**63 else None


async def _set_departments(conn: AsyncConnection, staff_id: str, ids: Iterable[str]) -> None:
    await conn.execute(delete(staff_departments).where(staff_departments.c.staff_id == staff_id))
    for department_id in sorted(set(ids)):
        await conn.execute(
            staff_departments.insert().values(staff_id=staff_id, department_id=department_id)
        )


async def _apply_schedule(conn: AsyncConnection, kind: str, d: dict[str, Any]) -> None:
    values: dict[str, Any] = {"schedule_id": d["schedule_id"]}
    if fitting(d.get("timezone"), ID_MAX) is not None:  # no zone name is longer
        values["timezone"] = d["timezone"]
    if d.get("weekly") is not None:
        values["weekly"] = orjson.dumps(d["weekly"]).decode()
    if d.get("holidays") is not None:
        values["holidays"] = orjson.dumps(d["holidays"]).decode()
    if kind == "ScheduleCreated":
        await upsert(conn, schedules, values)
    else:
        await conn.execute(
            update(schedules).where(schedules.c.schedule_id == d["schedule_id"]).values(**values)
        )


# ---------------------------------------------------------------- reads


def _card(row: Any) -> StaffCard:
    return StaffCard(row.staff_id, row.email, row.phone, row.name_en, row.name_ru, row.active)


async def staff(conn: AsyncConnection, staff_ids: Iterable[str]) -> list[StaffCard]:
    wanted = sorted({s for s in staff_ids if s})
    if not wanted:
        return []
    rows = await conn.execute(select(staff_cards).where(staff_cards.c.staff_id.in_(wanted)))
    return [_card(r) for r in rows]


async def members(conn: AsyncConnection, department_id: str | None) -> list[StaffCard]:
    if not department_id:
        return []
    rows = await conn.execute(
        select(staff_cards)
        .join(staff_departments, staff_departments.c.staff_id == staff_cards.c.staff_id)
        .where(staff_departments.c.department_id == department_id)
        .order_by(staff_cards.c.staff_id)
    )
    return [_card(r) for r in rows]


async def staff_subscriptions(
    conn: AsyncConnection, staff_ids: Iterable[str]
) -> dict[str, Subscription]:
    wanted = sorted(set(staff_ids))
    if not wanted:
        return {}
    rows = await conn.execute(select(subscriptions).where(subscriptions.c.staff_id.in_(wanted)))
    found: dict[str, Subscription] = {}
    for row in rows:
        subscription = Subscription()
        subscription.language = "ru" if row.language == "ru" else "en"
        subscription.notices = orjson.loads(row.notices)
        subscription.version = row.version
        found[row.staff_id] = subscription
    return found


async def ticket(conn: AsyncConnection, ticket_id: str | None) -> TicketFacts | None:
    if not ticket_id:
        return None
    row = (await conn.execute(select(tickets).where(tickets.c.ticket_id == ticket_id))).first()
    if row is None:
        return None
    return TicketFacts(
        row.ticket_id, row.client_id, row.department_id, row.assignee_id, row.message_ref,
        row.number,
    )  # fmt: skip


async def department_name(conn: AsyncConnection, department_id: str | None) -> dict[str, str]:
    """The department's name by language (``{}`` when unknown)."""
    if not department_id:
        return {}
    row = (
        await conn.execute(select(departments).where(departments.c.department_id == department_id))
    ).first()
    if row is None:
        return {}
    return {"en": row.name_en, "ru": row.name_ru or row.name_en}


async def schedule_of(conn: AsyncConnection, department_id: str | None) -> BusinessHours | None:
    """The business hours a department works by; None: round the clock (or unknown)."""
    if not department_id:
        return None
    row = (
        await conn.execute(
            select(schedules)
            .join(departments, departments.c.schedule_id == schedules.c.schedule_id)
            .where(departments.c.department_id == department_id)
        )
    ).first()
    if row is None:
        return None
    holidays = tuple(date.fromisoformat(h) for h in orjson.loads(row.holidays))
    return BusinessHours(
        row.timezone, WeeklyHours.model_validate(orjson.loads(row.weekly)), holidays
    )
