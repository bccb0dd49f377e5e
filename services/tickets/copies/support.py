"""What the support center knows of other contexts, kept from their topics.

* ``known_departments`` and ``known_schedules`` from ``departments.events``:
  each department's support block (available in the support center, the
  providers/projects it serves, sort, description, whether it charges for
  requests) and its work schedule;
* ``staff_names`` from ``identity.events`` (``StaffAdded``/``StaffChanged``):
  for ``%admin_name%`` in response templates;
* ``known_clients`` from ``clients.events``: each client's project (in clear
  on ``ClientRegistered``/``ClientChanged``) and company, and whether the
  client is that company's client manager.

These are not projections of this service's store: a consumer
(``shared.messaging.consumer.InboxConsumer``) writes them in its own transaction, once
per event. The payloads are read as the published JSON (``docs/events``), not
through the other contexts' code, so this service imports nothing of theirs;
unknown fields are ignored and a malformed fact is logged (the fields, not their
values) and skipped. What is stored fits the columns (``shared.messaging.limits``):
names clipped, an id that does not fit makes the fact malformed, an address or
project id that does not fit is left out, integers within the column's range.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

import orjson
import structlog
from pydantic import BaseModel, BeforeValidator, ConfigDict, StringConstraints, ValidationError
from sqlalchemy import (
    Boolean,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    literal_column,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.domain.business_hours import DAYS, ROUND_THE_CLOCK, BusinessHours, WeeklyHours
from shared.domain.events import RecordedEvent
from shared.messaging import staff_facts
from shared.messaging.limits import ID_MAX, ClippedName, ColumnInt, FactId, OptionalId, fitting
from shared.readmodel.database import upsert

log = structlog.get_logger(__name__)

metadata = MetaData()
EMAIL_MAX = 254  # a department's inbound address (the mail gateway routes by it)

known_departments = Table(
    "known_departments",
    metadata,
    Column("department_id", String(64), primary_key=True),
    Column("name_en", String(200), nullable=False),
    Column("name_ru", String(200), nullable=False),
    Column("schedule_id", String(64), nullable=True),
    Column("support_enabled", Boolean, nullable=False),
    Column("providers", Text, nullable=False),  # JSON list of project ids; empty: all
    Column("description", Text, nullable=False),
    Column("sort", Integer, nullable=False),
    Column("charge_requests", Boolean, nullable=False),
    Column("deleted", Boolean, nullable=False),
    # The address clients write to by mail (the mail gateway's routing); None: no mail.
    Column("inbound_email", String(EMAIL_MAX), nullable=True, index=True),
)

known_schedules = Table(
    "known_schedules",
    metadata,
    Column("schedule_id", String(64), primary_key=True),
    Column("timezone", String(64), nullable=False),
    Column("weekly", Text, nullable=False),  # {"mon": [["09:00", "18:00"]], ...}
    Column("holidays", Text, nullable=False),  # ["2026-12-31", ...]
)

known_clients = Table(
    "known_clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("project_id", String(64), nullable=True),
    Column("company_id", String(64), nullable=True, index=True),
    Column("company_manager", Boolean, nullable=False),
    Column("erased", Boolean, nullable=False),
)


staff_names = staff_facts.staff_names_table(metadata)


# ---------------------------------------------------------------- the published language


class _Fact(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# Read through ``shared.messaging.limits``: ids that do not fit a column make the fact
# malformed (logged, skipped), names are clipped, an address that does not fit is left out.


class _Name(_Fact):
    en: ClippedName = ""
    ru: ClippedName = ""


class _Support(_Fact):
    enabled: bool = False
    providers: list[FactId] = []
    description: str = ""
    sort: ColumnInt = 0
    charge_requests: bool = False
    inbound_email: Annotated[str | None, BeforeValidator(lambda v: fitting(v, EMAIL_MAX))] = None


class _DepartmentFact(_Fact):
    department_id: FactId
    changed: list[str] | None = None  # DepartmentChanged only
    name: _Name | None = None
    schedule_id: FactId | None = None
    support: _Support | None = None


class _ScheduleFact(_Fact):
    schedule_id: FactId
    changed: list[str] | None = None
    timezone: Annotated[str, StringConstraints(max_length=ID_MAX)] | None = None
    weekly: WeeklyHours | None = None
    holidays: list[date] | None = None


class _ClientFact(_Fact):
    client_id: FactId
    changed: list[str] | None = None
    project_id: OptionalId = None


class _CompanyFact(_Fact):
    company_id: FactId
    client_id: FactId | None = None
    previous_id: FactId | None = None


def _fields(error: ValidationError) -> list[str]:
    """The fields a fact got wrong, for the log: never their values (personal data)."""
    return [".".join(str(part) for part in e["loc"]) for e in error.errors()]


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _upsert(conn: AsyncConnection, table: Table, values: dict[str, Any]) -> None:
    """The row of ``values``' key holds ``values``; a new one gets the copy's defaults too."""
    await upsert(conn, table, values, insert_only=_DEFAULTS[table.name])


_DEFAULTS: dict[str, dict[str, Any]] = {
    "known_departments": {
        "name_en": "",
        "name_ru": "",
        "schedule_id": None,
        "support_enabled": False,
        "providers": "[]",
        "description": "",
        "sort": 0,
        "charge_requests": False,
        "deleted": False,
        "inbound_email": None,
    },
    "known_schedules": {"timezone": "UTC", "weekly": "{}", "holidays": "[]"},
    "staff_names": {"name_en": "", "name_ru": ""},
    "known_clients": {
        "project_id": None,
        "company_id": None,
        "company_manager": False,
        "erased": False,
    },
}


# ---------------------------------------------------------------- the consumer


async def on_departments_event(conn: AsyncConnection, event: RecordedEvent) -> bool:
    """Keep departments and schedules; True when the event was one of those facts."""
    try:
        if event.type in ("DepartmentCreated", "DepartmentChanged", "DepartmentDeleted"):
            await _department(conn, event.type, _DepartmentFact.model_validate(event.data))
            return True
        if event.type in ("ScheduleCreated", "ScheduleChanged"):
            await _schedule(conn, _ScheduleFact.model_validate(event.data))
            return True
    except ValidationError as error:
        log.warning(
            "tickets.bad_fact", type=event.type, event_id=str(event.event_id), fields=_fields(error)
        )
    return False


async def _department(conn: AsyncConnection, kind: str, fact: _DepartmentFact) -> None:
    values: dict[str, Any] = {"department_id": fact.department_id}
    if kind == "DepartmentDeleted":
        values["deleted"] = True
    else:
        every = kind == "DepartmentCreated"
        changed = set(fact.changed or ())
        if (every or "name" in changed) and fact.name is not None:
            values.update(name_en=fact.name.en, name_ru=fact.name.ru)
        if every or "schedule_id" in changed:
            values["schedule_id"] = fact.schedule_id
        if (every or "support" in changed) and fact.support is not None:
            s = fact.support
            values.update(
                support_enabled=s.enabled,
                providers=_json(sorted(set(s.providers))),
                description=s.description,
                sort=s.sort,
                charge_requests=s.charge_requests,
                inbound_email=s.inbound_email,
            )
    await _upsert(conn, known_departments, values)


async def _schedule(conn: AsyncConnection, fact: _ScheduleFact) -> None:
    values: dict[str, Any] = {"schedule_id": fact.schedule_id}
    if fact.timezone is not None:
        values["timezone"] = fact.timezone
    if fact.weekly is not None:
        values["weekly"] = _json(fact.weekly.model_dump(mode="json"))
    if fact.holidays is not None:
        values["holidays"] = _json([d.isoformat() for d in fact.holidays])
    await _upsert(conn, known_schedules, values)


async def on_identity_event(conn: AsyncConnection, event: RecordedEvent) -> None:
    """Keep staff names (``StaffAdded``, ``StaffChanged`` with a new ``full_name``)."""
    await staff_facts.record_staff_name(conn, staff_names, event)


async def on_clients_fact(conn: AsyncConnection, event: RecordedEvent) -> None:
    """Keep each client's project and company (the facts of ``clients.events`` it needs)."""
    try:
        if event.type in ("ClientRegistered", "ClientChanged"):
            fact = _ClientFact.model_validate(event.data)
            values: dict[str, Any] = {"client_id": fact.client_id}
            if fact.changed is None or "project_id" in fact.changed:
                values["project_id"] = fact.project_id
            await _upsert(conn, known_clients, values)
        elif event.type == "ClientErased":
            fact = _ClientFact.model_validate(event.data)
            await _upsert(conn, known_clients, {"client_id": fact.client_id, "erased": True})
        elif event.type == "CompanyMemberAdded":
            company = _CompanyFact.model_validate(event.data)
            if company.client_id:
                await _upsert(
                    conn,
                    known_clients,
                    {"client_id": company.client_id, "company_id": company.company_id},
                )
        elif event.type == "CompanyMemberRemoved":
            company = _CompanyFact.model_validate(event.data)
            await conn.execute(
                update(known_clients)
                .where(
                    (known_clients.c.client_id == company.client_id)
                    & (known_clients.c.company_id == company.company_id)
                )
                .values(company_id=None, company_manager=False)
            )
        elif event.type == "CompanyManagerAssigned":
            company = _CompanyFact.model_validate(event.data)
            await conn.execute(
                update(known_clients)
                .where(known_clients.c.company_id == company.company_id)
                .values(company_manager=False)
            )
            if company.client_id:
                await _upsert(
                    conn,
                    known_clients,
                    {
                        "client_id": company.client_id,
                        "company_id": company.company_id,
                        "company_manager": True,
                    },
                )
        elif event.type == "CompanyDeleted":
            company = _CompanyFact.model_validate(event.data)
            await conn.execute(
                update(known_clients)
                .where(known_clients.c.company_id == company.company_id)
                .values(company_id=None, company_manager=False)
            )
    except ValidationError as error:
        log.warning(
            "tickets.bad_fact", type=event.type, event_id=str(event.event_id), fields=_fields(error)
        )


# ---------------------------------------------------------------- reads


@dataclass(frozen=True)
class SupportDepartment:
    department_id: str
    name_en: str
    name_ru: str
    schedule_id: str | None
    support_enabled: bool
    providers: tuple[str, ...]
    description: str
    sort: int
    charge_requests: bool
    deleted: bool
    inbound_email: str | None = None

    @property
    def open_for_support(self) -> bool:
        return self.support_enabled and not self.deleted

    def serves(self, project_id: str | None) -> bool:
        """Shown for a client of ``project_id`` (a department without providers serves all)."""
        return not self.providers or (project_id is not None and project_id in self.providers)


@dataclass(frozen=True)
class KnownClient:
    client_id: str
    project_id: str | None
    company_id: str | None
    company_manager: bool
    erased: bool


def _department_of(row: Any) -> SupportDepartment:
    m = row._mapping
    return SupportDepartment(
        **{**m, "providers": tuple(orjson.loads(m["providers"]))},
    )


async def department(conn: AsyncConnection, department_id: str) -> SupportDepartment | None:
    row = (
        await conn.execute(
            select(known_departments).where(known_departments.c.department_id == department_id)
        )
    ).first()
    return None if row is None else _department_of(row)


async def support_departments(conn: AsyncConnection) -> list[SupportDepartment]:
    """Departments available in the support center, by sort value, then English name."""
    rows = await conn.execute(
        select(known_departments)
        .where(
            known_departments.c.support_enabled.is_(True) & known_departments.c.deleted.is_(False)
        )
        .order_by(
            known_departments.c.sort, known_departments.c.name_en, known_departments.c.department_id
        )
    )
    return [_department_of(row) for row in rows]


async def client(conn: AsyncConnection, client_id: str) -> KnownClient | None:
    row = (
        await conn.execute(select(known_clients).where(known_clients.c.client_id == client_id))
    ).first()
    return None if row is None else KnownClient(**row._mapping)


async def company_members(conn: AsyncConnection, company_id: str) -> list[str]:
    rows = await conn.execute(
        select(known_clients.c.client_id).where(known_clients.c.company_id == company_id)
    )
    return [r.client_id for r in rows]


async def staff_name(conn: AsyncConnection, staff_id: str, language: str = "en") -> str:
    row = (
        await conn.execute(select(staff_names).where(staff_names.c.staff_id == staff_id))
    ).first()
    if row is None:
        return ""
    return str((row.name_ru if language == "ru" else "") or row.name_en)


async def hours_of(conn: AsyncConnection, department_id: str | None) -> BusinessHours:
    """The business hours a department works by: its schedule, or round the clock
    (no department, no schedule, or a schedule not known yet)."""
    if department_id is None:
        return ROUND_THE_CLOCK
    found = (
        await conn.execute(
            select(known_schedules.c.timezone, known_schedules.c.weekly, known_schedules.c.holidays)
            .select_from(
                known_departments.join(
                    known_schedules,
                    known_schedules.c.schedule_id == known_departments.c.schedule_id,
                )
            )
            .where(known_departments.c.department_id == department_id)
        )
    ).first()
    if found is None:
        return ROUND_THE_CLOCK
    return _business_hours(found.timezone, found.weekly, found.holidays)


async def hours_of_each(
    conn: AsyncConnection, department_ids: list[str]
) -> dict[str, BusinessHours]:
    """``hours_of`` for several departments in one statement (a list of departments
    asks for all of theirs; one query each was most of its time)."""
    hours = dict.fromkeys(department_ids, ROUND_THE_CLOCK)
    if not department_ids:
        return hours
    rows = await conn.execute(
        select(
            known_departments.c.department_id,
            known_schedules.c.timezone,
            known_schedules.c.weekly,
            known_schedules.c.holidays,
        )
        .select_from(
            known_departments.join(
                known_schedules,
                known_schedules.c.schedule_id == known_departments.c.schedule_id,
            )
        )
        .where(known_departments.c.department_id.in_(department_ids))
    )
    for row in rows:
        hours[row.department_id] = _business_hours(row.timezone, row.weekly, row.holidays)
    return hours


# Built once: every open asks it. One row whatever exists: the client, the
# department and its schedule are each NULL when unknown.
_ONE = select(literal_column("1").label("one")).subquery("one")
_OPENING = select(
    *[c.label(f"c_{c.name}") for c in known_clients.c],
    *[c.label(f"d_{c.name}") for c in known_departments.c],
    known_schedules.c.timezone,
    known_schedules.c.weekly,
    known_schedules.c.holidays,
).select_from(
    _ONE.outerjoin(known_clients, known_clients.c.client_id == bindparam("client_id"))
    .outerjoin(known_departments, known_departments.c.department_id == bindparam("department_id"))
    .outerjoin(known_schedules, known_schedules.c.schedule_id == known_departments.c.schedule_id)
)


@dataclass(frozen=True)
class Opening:
    """What opening a ticket needs to know, read in one round trip."""

    client: KnownClient | None
    department: SupportDepartment | None
    hours: BusinessHours


async def opening(conn: AsyncConnection, client_id: str, department_id: str) -> Opening:
    """The client, the department and its business hours (as ``client``,
    ``department`` and ``hours_of`` would answer), in one statement."""
    row = (
        await conn.execute(_OPENING, {"client_id": client_id, "department_id": department_id})
    ).one()
    m = row._mapping
    client = None
    if m["c_client_id"] is not None:
        client = KnownClient(**{c.name: m[f"c_{c.name}"] for c in known_clients.c})
    department = None
    if m["d_department_id"] is not None:
        fields = {c.name: m[f"d_{c.name}"] for c in known_departments.c}
        department = SupportDepartment(
            **{**fields, "providers": tuple(orjson.loads(fields["providers"]))}
        )
    hours = ROUND_THE_CLOCK
    if m["timezone"] is not None:
        hours = _business_hours(m["timezone"], m["weekly"], m["holidays"])
    return Opening(client, department, hours)


@functools.lru_cache(maxsize=1024)
def _business_hours(timezone: str, weekly_json: str, holidays_json: str) -> BusinessHours:
    """A schedule row as ``BusinessHours``: a pure function of the row, so kept (every
    ticket opened or answered asks for its department's hours)."""
    weekly = WeeklyHours.model_validate(orjson.loads(weekly_json))
    if not any(weekly.on(day) for day in DAYS):
        return ROUND_THE_CLOCK
    holidays = tuple(date.fromisoformat(d) for d in orjson.loads(holidays_json))
    return BusinessHours(timezone, weekly, holidays)


# For a group of mails at once: the departments taking mail at any of the addresses
# (with their schedules), and the clients; two statements whatever the group's size.
_BY_ADDRESS = (
    select(
        known_departments,
        known_schedules.c.timezone,
        known_schedules.c.weekly,
        known_schedules.c.holidays,
    )
    .select_from(
        known_departments.outerjoin(
            known_schedules, known_schedules.c.schedule_id == known_departments.c.schedule_id
        )
    )
    .where(
        known_departments.c.inbound_email.in_(bindparam("addresses", expanding=True)),
        known_departments.c.deleted.is_(False),
        known_departments.c.support_enabled.is_(True),
    )
    .order_by(known_departments.c.department_id)
)
_CLIENTS = select(known_clients).where(
    known_clients.c.client_id.in_(bindparam("client_ids", expanding=True))
)


async def openings_by_address(
    conn: AsyncConnection, wanted: list[tuple[tuple[str, ...], str]]
) -> list[tuple[str | None, Opening]]:
    """For each (recipients, client id): the department of the first recipient that is
    an inbound address (the smallest department id among those taking mail there, in
    the support center and not deleted), and the ``Opening`` of that client in that
    department (as ``opening`` answers), the whole list read in two statements."""
    addresses = sorted({a.lower() for recipients, _ in wanted for a in recipients})
    client_ids = sorted({client_id for _, client_id in wanted if client_id})
    by_address: dict[str, tuple[SupportDepartment, BusinessHours]] = {}
    if addresses:
        names = [c.name for c in known_departments.c]
        for row in await conn.execute(_BY_ADDRESS, {"addresses": addresses}):
            m = row._mapping
            address = m["inbound_email"]
            if address in by_address:  # ordered by id: the smallest one takes the address
                continue
            fields = {name: m[name] for name in names}
            department = SupportDepartment(
                **{**fields, "providers": tuple(orjson.loads(fields["providers"]))}
            )
            hours = ROUND_THE_CLOCK
            if m["timezone"] is not None:
                hours = _business_hours(m["timezone"], m["weekly"], m["holidays"])
            by_address[address] = (department, hours)
    clients: dict[str, KnownClient] = {}
    if client_ids:
        for row in await conn.execute(_CLIENTS, {"client_ids": client_ids}):
            clients[row.client_id] = KnownClient(**row._mapping)
    answers: list[tuple[str | None, Opening]] = []
    for recipients, client_id in wanted:
        found = next((by_address[a.lower()] for a in recipients if a.lower() in by_address), None)
        client = clients.get(client_id)
        if found is None:
            answers.append((None, Opening(client, None, ROUND_THE_CLOCK)))
        else:
            answers.append((found[0].department_id, Opening(client, *found)))
    return answers


async def inbound_address(conn: AsyncConnection, department_id: str | None) -> str | None:
    """The department's inbound address: the Reply-To of mails about its tickets."""
    if department_id is None:
        return None
    found = await conn.execute(
        select(known_departments.c.inbound_email).where(
            known_departments.c.department_id == department_id
        )
    )
    address: str | None = found.scalar()
    return address
