"""Time travel: questions about a moment T answered by replaying the log up to T.

"Up to T" means every event with ``occurred_at <= T``. The answers use the
domain's own code (``Staff.effective_rights``, ``Department.rights``, the
ticket and client aggregates, ``services.tickets.app.visibility``), so they
follow the same rules as the running services. They say what the facts were
at T; a service that learns a fact from a topic acted on it a moment later.

The pure functions take decoded events already cut at T, so tests can feed
them a scripted history; the ``*_at`` coroutines read the stores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from analytics.sources import SubjectKeys, open_store, opened_data, pages, registry_of
from services.clients.domain.client import Client
from services.clients.domain.client import stream_name as client_stream
from services.clients.domain.company import Company
from services.clients.domain.company_events import (
    CompanyCreated,
    CompanyDeleted,
    CompanyEvent,
    CompanyManagerAssigned,
    CompanyMemberAdded,
    CompanyMemberRemoved,
    CompanyRenamed,
)
from services.clients.domain.events import (
    CLIENT_PERSONAL,
    ClientChanged,
    ClientErased,
    ClientRegistered,
)
from services.departments.domain.department import Department
from services.identity.domain.staff import FULL_ACCESS, Staff
from services.tickets.app import visibility
from services.tickets.domain.ticket import Ticket
from services.tickets.domain.ticket import stream_name as ticket_stream
from shared.access.control import Access, IpPolicy, Principal
from shared.domain.events import DomainEvent, EventRegistry, RecordedEvent
from shared.privacy.shredding import subjects_of
from shared.runtime.sources import Source


def as_utc(moment: datetime) -> datetime:
    """A moment with a time zone; a naive one is taken as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def up_to(events: Iterable[RecordedEvent], at: datetime) -> list[RecordedEvent]:
    """The events that had happened at ``at`` (``occurred_at <= at``)."""
    moment = as_utc(at)
    return [e for e in events if e.occurred_at <= moment]


# ---------------------------------------------------------------- staff rights


@dataclass(frozen=True)
class StaffRights:
    """A staff member's effective rights at a moment, each with its sources.

    Sources are ``full_access``, ``individual`` and ``department:<id>``.
    ``exists`` is False when the member had not been added yet.
    """

    staff_id: str
    login: str
    exists: bool
    disabled: bool
    full_access: bool
    departments: tuple[str, ...]
    rights: dict[str, list[str]]
    ip_policy: IpPolicy

    def access(self) -> Access:
        """As the services' access copy would have held it."""
        return Access(
            principal_id=self.staff_id,
            kind="staff",
            login=self.login,
            disabled=self.disabled,
            full_access=self.full_access,
            rights=frozenset(self.rights),
            departments=self.departments,
        )


def departments_from(events: Iterable[DomainEvent]) -> dict[str, Department]:
    """Every department the events tell of, by id."""
    found: dict[str, Department] = {}
    for event in events:
        department_id = getattr(event, "department_id", None)
        if department_id is None:
            continue
        department = found.setdefault(department_id, Department())
        department.apply(event)
        department.version += 1
    return found


def department_rights(departments: Mapping[str, Department]) -> dict[str, frozenset[str]]:
    """What each department gives its members (a deleted one: nothing)."""
    return {
        department_id: frozenset() if department.deleted else department.rights()
        for department_id, department in departments.items()
    }


def staff_from(events: Iterable[DomainEvent]) -> dict[str, Staff]:
    """Every staff member the events tell of, by id."""
    found: dict[str, Staff] = {}
    for event in events:
        if event.event_type not in Staff.handles:
            continue
        staff_id: str = getattr(event, "staff_id")  # noqa: B009 - every staff event has it
        member = found.setdefault(staff_id, Staff())
        member.apply(event)
        member.version += 1
    return found


def rights_of(
    staff_id: str, member: Staff | None, rights_by_department: Mapping[str, frozenset[str]]
) -> StaffRights:
    """A member's effective rights with their sources (the identity service's own rule)."""
    if member is None or not member.exists:
        return StaffRights(staff_id, "", False, False, False, (), {}, IpPolicy())
    return StaffRights(
        staff_id=member.id,
        login=member.login,
        exists=True,
        disabled=member.disabled,
        full_access=member.full_access,
        departments=tuple(member.departments),
        rights=member.effective_rights(rights_by_department),
        ip_policy=member.ip_policy,
    )


def everyone(
    staff_events: Iterable[DomainEvent], department_events: Iterable[DomainEvent]
) -> list[StaffRights]:
    """Every staff member's rights, from the identity and departments events up to a moment."""
    rights = department_rights(departments_from(department_events))
    return [rights_of(i, member, rights) for i, member in staff_from(staff_events).items()]


# ---------------------------------------------------------------- ticket visibility


@dataclass(frozen=True)
class Viewer:
    """Someone who could see the ticket, and why."""

    kind: Literal["staff", "client"]
    id: str
    login: str
    why: str


@dataclass(frozen=True)
class TicketViewers:
    """Who could see a ticket at a moment, with the ticket's placement then."""

    ticket_id: str
    exists: bool
    client_id: str = ""
    company_id: str | None = None
    department_id: str | None = None
    assignee_id: str | None = None
    status: str = ""
    subject: str | None = None
    viewers: list[Viewer] = field(default_factory=list)


def _staff_reason(member: StaffRights, ticket: Ticket) -> str:
    if ticket.assignee_id == member.staff_id:
        return "assignee"
    if member.full_access:
        return FULL_ACCESS
    if visibility.ALL_DEPARTMENTS in member.rights:
        return visibility.ALL_DEPARTMENTS
    if ticket.department_id is None:
        return f"messages queue ({visibility.MESSAGES})"
    return f"department:{ticket.department_id}"


def _principal(member_id: str, access: Access) -> Principal:
    return Principal(
        id=member_id, kind=access.kind, session_id="", impersonator_id=None, access=access
    )


def company_of(client_id: str, companies: Mapping[str, Company]) -> Company | None:
    """The company the client was a member of (None: none)."""
    for company in companies.values():
        if company.exists and client_id in company.members:
            return company
    return None


def ticket_viewers(
    ticket: Ticket,
    staff: Iterable[StaffRights],
    companies: Mapping[str, Company],
    erased_clients: Iterable[str] = (),
) -> TicketViewers:
    """Who could see ``ticket``: staff by ``visibility.staff_may_see``, clients by
    ``visibility.client_may_see`` (its client, the client manager of the client's company).

    Disabled staff and erased clients could not log in, so they saw nothing.
    """
    if not ticket.exists:
        return TicketViewers(ticket_id=ticket.id, exists=False)
    viewers: list[Viewer] = []
    for member in sorted(staff, key=lambda m: m.login):
        if not member.exists or member.disabled:
            continue
        principal = _principal(member.staff_id, member.access())
        if visibility.staff_may_see(principal, ticket.department_id, ticket.assignee_id):
            viewers.append(
                Viewer("staff", member.staff_id, member.login, _staff_reason(member, ticket))
            )
    gone = set(erased_clients)
    company = company_of(ticket.client_id, companies)
    company_id = company.id if company else None
    candidates = [(ticket.client_id, "the ticket's client")]
    if company is not None and company.manager_id and company.manager_id != ticket.client_id:
        candidates.append((company.manager_id, f"client manager of company {company.id}"))
    for client_id, why in candidates:
        if client_id in gone:
            continue
        own = company_of(client_id, companies)
        access = Access(
            principal_id=client_id,
            kind="client",
            login="",
            disabled=False,
            company_id=own.id if own else None,
            company_manager=bool(own and own.manager_id == client_id),
        )
        if visibility.client_may_see(_principal(client_id, access), ticket.client_id, company_id):
            viewers.append(Viewer("client", client_id, "", why))
    return TicketViewers(
        ticket_id=ticket.id,
        exists=True,
        client_id=ticket.client_id,
        company_id=company_id,
        department_id=ticket.department_id,
        assignee_id=ticket.assignee_id,
        status=ticket.status,
        subject=ticket.subject,
        viewers=viewers,
    )


def ticket_from(events: Iterable[DomainEvent]) -> Ticket:
    """The ticket as its events up to a moment make it."""
    ticket = Ticket()
    for event in events:
        if event.event_type in Ticket.handles:
            ticket.apply(event)
            ticket.version += 1
    return ticket


def companies_from(events: Iterable[DomainEvent]) -> dict[str, Company]:
    """Every company the events tell of (membership and manager), by id."""
    found: dict[str, Company] = {}
    for event in events:
        if isinstance(event, CompanyEvent):
            company = found.setdefault(event.company_id, Company())
            company.apply(event)
    return found


# ---------------------------------------------------------------- client state


@dataclass(frozen=True)
class ClientState:
    """A client as the log says it was at a moment.

    ``card`` holds the fields of registration and later changes; personal
    fields are opened with the live key, so an erased client's are None.
    """

    client_id: str
    exists: bool
    erased: bool = False
    version: int = 0
    card: dict[str, Any] = field(default_factory=dict)
    penalty_points: int = 0
    services_suspended: bool = False
    open_notices: list[str] = field(default_factory=list)
    company_id: str | None = None
    company_manager: bool = False


def client_state(
    client_id: str, events: Sequence[DomainEvent], companies: Mapping[str, Company]
) -> ClientState:
    """Fold a client's stream (cut at a moment) into its state then."""
    aggregate = Client().applied(events)
    if not aggregate.id:
        return ClientState(client_id=client_id, exists=False)
    card: dict[str, Any] = {}
    for event in events:
        if isinstance(event, ClientRegistered):
            card = event.model_dump(mode="json")
        elif isinstance(event, ClientChanged):
            changed = event.model_dump(mode="json")
            card.update({name: changed[name] for name in event.changed})
        elif isinstance(event, ClientErased):
            card.update(dict.fromkeys(CLIENT_PERSONAL))
    company = company_of(client_id, companies)
    return ClientState(
        client_id=client_id,
        exists=True,
        erased=aggregate.erased,
        version=aggregate.version,
        card=card,
        penalty_points=aggregate.penalty_points,
        services_suspended=aggregate.services_suspended,
        open_notices=[m for m, notice in aggregate.notices.items() if not notice.expired],
        company_id=company.id if company else None,
        company_manager=bool(company and company.manager_id == client_id),
    )


# ---------------------------------------------------------------- reading the stores


def decode(registry: EventRegistry, event: RecordedEvent, keys: dict[str, bytes]) -> DomainEvent:
    """The typed payload, upcast and opened as in an export (``opened_data``)."""
    return registry.model(event.type).model_validate(opened_data(registry, event, keys)[1])


async def replay(
    source: Source, at: datetime, wanted: Callable[[RecordedEvent], bool]
) -> list[DomainEvent]:
    """Decoded events of a context's whole log that ``wanted`` picks, up to ``at``,
    with personal fields opened by the live keys."""
    registry = registry_of(source.context)
    models = registry.models()
    store = await open_store(source)
    keys = await SubjectKeys.open(source.keys_url)
    decoded: list[DomainEvent] = []
    try:
        async for page in pages(store):
            chosen = [e for e in up_to(page, at) if e.type in models and wanted(e)]
            found = await keys.keys(subjects_of(registry, chosen))
            decoded.extend(decode(registry, e, found) for e in chosen)
    finally:
        await keys.close()
        await store.close()
    return decoded


async def replay_stream(source: Source, stream: str, at: datetime) -> list[DomainEvent]:
    """One stream's decoded events up to ``at``."""
    registry = registry_of(source.context)
    models = registry.models()
    store = await open_store(source)
    keys = await SubjectKeys.open(source.keys_url)
    try:
        recorded = [e for e in up_to(await store.read_stream(stream), at) if e.type in models]
        found = await keys.keys(subjects_of(registry, recorded))
        return [decode(registry, e, found) for e in recorded]
    finally:
        await keys.close()
        await store.close()


def _staff_event(event: RecordedEvent) -> bool:
    return event.stream.startswith("staff-") and event.type in Staff.handles


def _department_event(event: RecordedEvent) -> bool:
    return event.stream.startswith("department-")


MEMBERSHIP = frozenset(
    model.event_type
    for model in (
        CompanyCreated,
        CompanyRenamed,
        CompanyMemberAdded,
        CompanyMemberRemoved,
        CompanyManagerAssigned,
        CompanyDeleted,
    )
)


def _membership_or_erasure(event: RecordedEvent) -> bool:
    # Contacts and equipment are left out: membership needs none of their (sealed) fields.
    return event.type in MEMBERSHIP or event.type == ClientErased.event_type


async def everyone_at(identity: Source, departments: Source, at: datetime) -> list[StaffRights]:
    """Every staff member's rights at ``at``."""
    staff_events = await replay(identity, at, _staff_event)
    department_events = await replay(departments, at, _department_event)
    return everyone(staff_events, department_events)


async def staff_rights_at(
    identity: Source, departments: Source, staff: str, at: datetime
) -> StaffRights:
    """One member's rights at ``at``; ``staff`` is their id or login."""
    for member in await everyone_at(identity, departments, at):
        if staff in (member.staff_id, member.login):
            return member
    return rights_of(staff, None, {})


async def ticket_viewers_at(
    tickets: Source,
    identity: Source,
    departments: Source,
    clients: Source,
    ticket_id: str,
    at: datetime,
) -> TicketViewers:
    """Who could see ticket ``ticket_id`` at ``at``."""
    ticket = ticket_from(await replay_stream(tickets, ticket_stream(ticket_id), at))
    if not ticket.exists:
        return TicketViewers(ticket_id=ticket_id, exists=False)
    staff = await everyone_at(identity, departments, at)
    facts = await replay(clients, at, _membership_or_erasure)
    erased = [e.client_id for e in facts if isinstance(e, ClientErased)]
    return ticket_viewers(ticket, staff, companies_from(facts), erased)


async def client_at(clients: Source, client_id: str, at: datetime) -> ClientState:
    """Client ``client_id`` as it was at ``at``."""
    events = await replay_stream(clients, client_stream(client_id), at)
    membership = await replay(clients, at, lambda e: e.type in MEMBERSHIP)
    return client_state(client_id, events, companies_from(membership))
