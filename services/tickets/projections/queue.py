"""The ticket queue read model (``ticket_queue``): tickets, their timelines, counts.

* ``tickets`` – one row per ticket with what lists filter and sort on.
  ``waiting_key`` is the moment the oldest unanswered client message arrived
  and ``due_key`` the moment a response is expected; both are a far-future
  sentinel when the ticket waits for nobody, so the sort columns are never
  NULL and sort the same way on PostgreSQL and SQLite.
* ``ticket_entries`` – the timeline of each ticket (messages, notes,
  transfers, closings, ratings), with ``visible_to_client``: internal notes,
  assignments and the transfer notices beyond the shown cap are for staff only.
* ``ticket_contacts`` – who wrote a ticket opened by a contact (an unknown
  sender's mail): the contact's id, address and name, kept after a link to a
  client (staff see who wrote; a reply by mail goes to the address).
* ``ticket_counts`` – tickets per (department, status), so a staff member's
  queue counts its total without counting rows (``X-Total-Count``).

Indexes are made for a staff member's first page: per department and status,
ordered by waiting time or by deadline (``services.tickets.projections.queries``
reads one department/status slice at a time with its index, then merges); the
tickets assigned to a member per status, carrying the department, so the queue's
counts of them read the index alone. On
PostgreSQL, GIN indexes over ``to_tsvector('simple', …)`` of subjects and entry
bodies serve text search (``api.search``); SQLite has none (search scans there).
Texts arrive sealed with the client's key (``shared.privacy.shredding``) and are
opened with the keys in this service's ``subject_keys``: after the client's
erasure they open to None, in a rebuild too. Otherwise rebuilt from the events alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

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
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.tickets.domain.events import (
    TICKET_EVENTS,
    TicketAssigned,
    TicketClosed,
    TicketEvent,
    TicketLinkedToClient,
    TicketMessagePosted,
    TicketOpened,
    TicketRated,
    TicketRatingRequested,
    TicketReopened,
    TicketTransferred,
    registry,
)
from services.tickets.domain.ticket import seen_by_client, timeline_kind
from shared.domain.attachments import AttachmentRecord, names_of
from shared.domain.events import RecordedEvent
from shared.privacy import shredding
from shared.projections.runner import Projection
from shared.readmodel.database import RowFold, UtcDateTime, add_to_rows, insert_rows

NEVER = datetime(9999, 12, 31, tzinfo=UTC)
"""The sort key of a ticket that waits for nobody: after every real moment."""

NO_DEPARTMENT = ""
"""``ticket_counts`` key of the "messages" queue (threads of messages to clients)."""

metadata = MetaData()

# What ``GET /tickets/search`` matches on PostgreSQL, word for word: an expression
# index serves only a query that uses the same expression.
SUBJECT_TSVECTOR = "to_tsvector('simple', coalesce(subject, ''))"
BODY_TSVECTOR = "to_tsvector('simple', coalesce(body, ''))"

tickets = Table(
    "tickets",
    metadata,
    Column("ticket_id", String(64), primary_key=True),
    Column("number", Integer, nullable=True),  # the short number (#1042)
    Column("client_id", String(64), nullable=False),
    Column("company_id", String(64), nullable=True),
    Column("project_id", String(64), nullable=True),
    Column("department_id", String(64), nullable=True),
    Column("category_id", String(64), nullable=True),
    Column("subject", Text, nullable=True),
    Column("origin", String(16), nullable=False),
    Column("message_ref", String(64), nullable=True),
    Column("replies_forbidden", Boolean, nullable=False),
    Column("paid", Boolean, nullable=False),
    Column("status", String(16), nullable=False),
    Column("assignee_id", String(64), nullable=True),
    Column("opened_at", UtcDateTime(), nullable=False),
    Column("opened_by", String(64), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("waiting_since", UtcDateTime(), nullable=True),
    Column("waiting_key", UtcDateTime(), nullable=False),
    Column("due_at", UtcDateTime(), nullable=True),
    Column("due_key", UtcDateTime(), nullable=False),
    Column("closed_at", UtcDateTime(), nullable=True),
    Column("close_reason", String(16), nullable=True),
    Column("messages", Integer, nullable=False),
    Column("last_message_at", UtcDateTime(), nullable=True),
    Column("rating", Integer, nullable=True),  # the client's score of the whole ticket
    Column("rating_requested", Boolean, nullable=False),
    Column("transfer_notices", Integer, nullable=False),  # shown to the client so far
    Column("version", Integer, nullable=False),
    Index("ix_tickets_dept_wait", "department_id", "status", "waiting_key", "ticket_id"),
    Index("ix_tickets_dept_due", "department_id", "status", "due_key", "ticket_id"),
    Index("ix_tickets_status_wait", "status", "waiting_key", "ticket_id"),
    Index("ix_tickets_status_due", "status", "due_key", "ticket_id"),
    # A caller's assigned tickets outside their departments: the page reads them in
    # ``waiting_key`` order per status, and the queue's counts (``totals_by_status``)
    # filter them by ``department_id``, which the index carries (INCLUDE on PostgreSQL)
    # so that count is an index-only scan instead of a heap read per assigned ticket.
    # A new name, so that a service's start builds it on a read model made before.
    Index(
        "ix_tickets_assignee_wait",
        "assignee_id",
        "status",
        "waiting_key",
        "ticket_id",
        postgresql_include=["department_id"],
    ),
    Index("ix_tickets_client", "client_id", "updated_at"),
    Index("ix_tickets_number", "number"),
    # Full-text search (``api.search``) on PostgreSQL: the very expression it matches.
    Index("ix_tickets_subject_fts", text(SUBJECT_TSVECTOR), postgresql_using="gin").ddl_if(
        dialect="postgresql"
    ),
)

ticket_entries = Table(
    "ticket_entries",
    metadata,
    Column("ticket_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("type", String(32), nullable=False),
    Column("message_id", String(64), nullable=True),
    Column("author_kind", String(16), nullable=True),
    Column("author_id", String(64), nullable=True),
    Column("impersonator_id", String(64), nullable=True),
    Column("body", Text, nullable=True),
    Column("visible_to_client", Boolean, nullable=False),
    Column("details", Text, nullable=False),  # JSON: what else the entry says
    # JSON: the message's files [{attachment_id, filename, content_type, size, sha256}]
    Column("attachments", Text, nullable=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("position", BigInteger, nullable=False),
    Index("ix_ticket_entries_body_fts", text(BODY_TSVECTOR), postgresql_using="gin").ddl_if(
        dialect="postgresql"
    ),
)

ticket_contacts = Table(
    "ticket_contacts",
    metadata,
    Column("ticket_id", String(64), primary_key=True),
    Column("contact_id", String(64), nullable=False),
    Column("email", Text, nullable=True),  # None once erased (sealed with the contact's key)
    Column("name", Text, nullable=True),
)

ticket_counts = Table(
    "ticket_counts",
    metadata,
    Column("department_id", String(64), primary_key=True),  # "" for the messages queue
    Column("status", String(16), primary_key=True),
    Column("count", BigInteger, nullable=False),
)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _files_json(records: list[AttachmentRecord], names: str | None) -> str:
    return _json(
        [
            {**record.model_dump(), "filename": name}
            for record, name in zip(records, names_of(names, len(records)), strict=True)
        ]
    )


_TICKET_MODELS = frozenset(registry.model(name) for name in TICKET_EVENTS)


def _dept_key(department_id: str | None) -> str:
    return NO_DEPARTMENT if department_id is None else department_id


class TicketQueue(Projection):
    """Tickets as queues and ticket pages show them."""

    name = "ticket_queue"
    rebuild_cost = 25
    partitionable = True  # a ticket's rows follow its stream; the counts are sums
    metadata = metadata
    keyed_after_load = (ticket_entries,)  # a timeline only grows
    reads = (shredding.metadata,)

    async def apply(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        await self.apply_all(conn, [event])

    async def apply_all(self, conn: AsyncConnection, events: list[RecordedEvent]) -> None:
        """A batch in a few statements: the keys and the tickets it touches read at once,
        the events folded into those rows in memory, each row written once at the end."""
        relevant = [e for e in events if e.type in TICKET_EVENTS]
        if not relevant:
            return
        keys = await shredding.keys_in(conn, shredding.subjects_of(registry, relevant))
        batch = _Batch()
        opened = {e.stream for e in relevant if e.type == "TicketOpened"}
        await batch.tickets.load(
            conn, {e.stream.removeprefix("ticket-") for e in relevant if e.stream not in opened}
        )
        for event in relevant:
            self._apply(event, keys, batch)
        await batch.flush(conn)

    def _apply(self, event: RecordedEvent, keys: dict[str, bytes], batch: _Batch) -> None:
        payload = cast(TicketEvent, shredding.open_event(registry, event, keys))
        # Dispatch by exact class (event models are final): ``isinstance`` on a pydantic
        # model goes through ABCMeta's Python-level check, a few per event of a rebuild.
        assert type(payload) in _TICKET_MODELS
        at = event.occurred_at
        version = event.stream_version
        entry: dict[str, Any] = {
            "ticket_id": event.stream.removeprefix("ticket-"),
            "version": version,
            "type": timeline_kind(payload),
            "message_id": None,
            "author_kind": event.actor.kind,
            "author_id": event.actor.id,
            "impersonator_id": event.actor.impersonator_id,
            "body": None,
            "visible_to_client": seen_by_client(payload),
            "details": {},
            "attachments": None,
            "at": at,
            "position": event.position,
        }
        if (type(payload) is TicketOpened or type(payload) is TicketMessagePosted) and (
            payload.attachments
        ):
            entry["attachments"] = _files_json(payload.attachments, payload.attachment_names)
        if type(payload) is TicketOpened:
            waiting = payload.status == "open"
            batch.tickets.add(
                dict(
                    ticket_id=payload.ticket_id,
                    number=payload.number,
                    client_id=payload.client_id,
                    company_id=payload.company_id,
                    project_id=payload.project_id,
                    department_id=payload.department_id,
                    category_id=payload.category_id,
                    subject=payload.subject,
                    origin=payload.origin,
                    message_ref=payload.message_ref,
                    replies_forbidden=payload.replies_forbidden,
                    paid=payload.paid,
                    status=payload.status,
                    assignee_id=payload.assignee_id,
                    opened_at=at,
                    opened_by=event.actor.id,
                    updated_at=at,
                    waiting_since=at if waiting else None,
                    waiting_key=at if waiting else NEVER,
                    due_at=payload.due_at,
                    due_key=payload.due_at or NEVER,
                    messages=1,
                    last_message_at=at,
                    rating_requested=False,
                    transfer_notices=0,
                    rating=None,
                    closed_at=None,
                    close_reason=None,
                    version=version,
                )
            )
            batch.count(payload.department_id, payload.status, +1)
            if payload.origin == "contact":
                batch.contacts.append(
                    {
                        "ticket_id": payload.ticket_id,
                        "contact_id": payload.client_id,
                        "email": payload.contact_email,
                        "name": payload.contact_name,
                    }
                )
            entry.update(
                message_id=payload.message_id,
                body=payload.body,
                author_kind="client" if payload.origin in ("client", "contact") else "staff",
                details={
                    "department_id": payload.department_id,
                    "category_id": payload.category_id,
                    "origin": payload.origin,
                    "message_ref": payload.message_ref,
                    "client_id": payload.client_id,
                },
            )
        else:
            row = batch.tickets.get(payload.ticket_id)
            if row is None:
                return  # cannot happen in one stream's order; never fail the projection
            values: dict[str, Any] = {"version": version, "updated_at": at}
            status: str = row["status"]
            department_id: str | None = row["department_id"]
            if type(payload) is TicketMessagePosted:
                entry.update(
                    message_id=payload.message_id,
                    body=payload.body,
                    author_kind=payload.author_kind,
                    author_id=payload.author_id,
                )
                if not payload.internal:
                    values.update(messages=row["messages"] + 1, last_message_at=at)
                    if payload.author_kind == "client":
                        if status != "open":
                            values.update(
                                waiting_since=at,
                                waiting_key=at,
                                due_at=payload.due_at,
                                due_key=payload.due_at or NEVER,
                            )
                        status = "open"
                    else:
                        status = "answered"
                        values.update(
                            waiting_since=None, waiting_key=NEVER, due_at=None, due_key=NEVER
                        )
            elif type(payload) is TicketLinkedToClient:
                values.update(
                    client_id=payload.client_id,
                    company_id=payload.company_id,
                    project_id=payload.project_id,
                )
                entry.update(
                    details={"client_id": payload.client_id, "contact_id": payload.contact_id}
                )
            elif type(payload) is TicketAssigned:
                values["assignee_id"] = payload.assignee_id
                entry.update(
                    details={
                        "assignee_id": payload.assignee_id,
                        "previous_id": payload.previous_id,
                    },
                )
            elif type(payload) is TicketTransferred:
                department_id = payload.to_department_id
                values.update(department_id=department_id, assignee_id=payload.to_staff_id)
                if payload.due_at is not None:
                    values.update(due_at=payload.due_at, due_key=payload.due_at)
                if payload.notice_visible_to_client:
                    values["transfer_notices"] = row["transfer_notices"] + 1
                entry.update(
                    details={
                        "from_department_id": payload.from_department_id,
                        "to_department_id": payload.to_department_id,
                        "from_staff_id": payload.from_staff_id,
                        "to_staff_id": payload.to_staff_id,
                    },
                )
            elif type(payload) is TicketClosed:
                status = "closed"
                values.update(
                    closed_at=at,
                    close_reason=payload.reason,
                    waiting_since=None,
                    waiting_key=NEVER,
                    due_at=None,
                    due_key=NEVER,
                )
                entry.update(details={"reason": payload.reason})
            elif type(payload) is TicketReopened:
                status = "open"
                values.update(
                    closed_at=None,
                    close_reason=None,
                    waiting_since=at,
                    waiting_key=at,
                    due_at=payload.due_at,
                    due_key=payload.due_at or NEVER,
                )
                entry.update(details={"reason": payload.reason})
            elif type(payload) is TicketRated:
                if payload.message_id is None:
                    values["rating"] = payload.score
                entry.update(
                    message_id=payload.message_id,
                    details={"score": payload.score, "comment": payload.comment},
                )
            elif type(payload) is TicketRatingRequested:
                values["rating_requested"] = True
                entry.update(message_id=payload.message_id)
            values["status"] = status
            if (department_id, status) != (row["department_id"], row["status"]):
                batch.count(row["department_id"], row["status"], -1)
                batch.count(department_id, status, +1)
            batch.tickets.change(payload.ticket_id, values)
        details = entry["details"]
        entry["details"] = _json(details) if details else "{}"
        batch.entries.append(entry)


@dataclass
class _Batch:
    """A batch's state: the ticket rows it touches (as they will be written), the
    timeline entries and the count changes, written by ``flush`` at its end."""

    tickets: RowFold = field(default_factory=lambda: RowFold(tickets))
    entries: list[dict[str, Any]] = field(default_factory=list)
    contacts: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def count(self, department_id: str | None, status: str, delta: int) -> None:
        key = (_dept_key(department_id), status)
        self.counts[key] = self.counts.get(key, 0) + delta

    async def flush(self, conn: AsyncConnection) -> None:
        await self.tickets.write(conn)
        await insert_rows(conn, ticket_entries, self.entries)
        if self.contacts:
            await insert_rows(conn, ticket_contacts, self.contacts)
        changes = [
            {"department_id": department_key, "status": status, "count": delta}
            for (department_key, status), delta in sorted(self.counts.items())
            if delta
        ]
        if changes:
            await add_to_rows(conn, ticket_counts, changes)
