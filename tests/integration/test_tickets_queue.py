"""The queue read model and its queries, on SQLite and PostgreSQL: random histories,
every view checked against a plain filter-and-sort of all rows, and against the aggregates."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from services.tickets.domain.events import registry
from services.tickets.domain.ticket import Author, Ticket, stream_name
from services.tickets.projections.queries import (
    STATUSES,
    QueueFilter,
    Scope,
    Sort,
    page_query,
    total,
    totals_by_status,
    totals_statement,
)
from services.tickets.projections.queue import TicketQueue, ticket_counts, tickets
from shared.domain.events import Actor, DomainEvent
from shared.eventstore import EventStore, StreamState, open_event_store
from shared.projections.runner import ProjectionRunner
from shared.readmodel.database import ReadModelDB

DEPARTMENTS = ("d-a", "d-b", "d-c", "d-d")
STAFF = ("s-1", "s-2", "s-3")
NEVER = datetime(9999, 12, 31, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[EventStore, ReadModelDB]]:
    if request.param == "sqlite":
        store = await open_event_store(f"sqlite:///{tmp_path}/tickets.db")
        db = await ReadModelDB.open(f"sqlite:///{tmp_path}/tickets-read.db")
        yield store, db
    else:
        from tests.conftest import fresh_database

        async with fresh_database() as url:
            store = await open_event_store(url, namespace="tickets")
            db = await ReadModelDB.open(url)
            yield store, db
    await db.close()
    await store.close()


async def _history(store: EventStore, rnd: random.Random) -> dict[str, Ticket]:
    """About 120 tickets with random conversations, transfers, assignments and closings."""
    made: dict[str, Ticket] = {}
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    async def write(ticket_id: str, events: list[DomainEvent], actor: Actor) -> None:
        if events:
            version = made[ticket_id].version if ticket_id in made else 0
            await store.append(
                stream_name(ticket_id),
                [registry.encode(e, actor=actor) for e in events],
                version or StreamState.NO_STREAM,
            )
            recorded = await store.read_stream(stream_name(ticket_id))
            made[ticket_id] = Ticket.replayed(
                (registry.decode(r), r.occurred_at, r.actor) for r in recorded
            )
            made[ticket_id].version = recorded[-1].stream_version

    for n in range(120):
        ticket_id = str(uuid.UUID(int=rnd.getrandbits(128)))
        client_id = f"c-{rnd.randrange(15)}"
        if rnd.random() < 0.15:
            opened = Ticket.open(
                ticket_id, client_id=client_id, department_id=None, subject=None, body=None,
                origin="client_message", message_ref=f"m-{n}",
                assignee_id=rnd.choice((None, *STAFF)),
            )  # fmt: skip
        else:
            opened = Ticket.open(
                ticket_id, client_id=client_id, department_id=rnd.choice(DEPARTMENTS),
                subject=f"ticket {n}", body="help", due_at=now + timedelta(hours=rnd.randrange(99)),
            )  # fmt: skip
        await write(ticket_id, opened, Actor(client_id, "client"))
        for _ in range(rnd.randrange(5)):
            ticket = made[ticket_id]
            staff = Actor(rnd.choice(STAFF), "staff")
            choice = rnd.randrange(7)
            events: list[DomainEvent] = []
            if choice == 0 and ticket.status != "closed":
                events = ticket.post(Author("staff", staff.id), "answer")
            elif choice == 1 and not ticket.replies_forbidden:
                events = ticket.post(
                    Author("client", ticket.client_id), "more",
                    due_at=now + timedelta(hours=rnd.randrange(99)),
                )  # fmt: skip
            elif choice == 2 and ticket.status != "closed":
                events = ticket.transfer(
                    department_id=rnd.choice(DEPARTMENTS),
                    staff_id=rnd.choice((None, *STAFF)),
                    notices_shown=3,
                    due_at=now + timedelta(hours=rnd.randrange(99)),
                )
            elif choice == 3:
                events = ticket.assign(rnd.choice((None, *STAFF)))
            elif choice == 4:
                events = ticket.close("staff")
            elif choice == 5:
                events = ticket.reopen("staff", due_at=now)
            else:
                events = ticket.post(Author("staff", staff.id), "note", internal=True)
            await write(ticket_id, events, staff)
    return made


def _visible(row: dict[str, Any], scope: Scope) -> bool:
    if scope.clients is not None:
        return row["client_id"] in scope.clients
    if scope.everything or row["assignee_id"] == scope.assignee_id:
        return True
    if row["department_id"] is None:
        return scope.messages
    return row["department_id"] in scope.departments


def _matches(row: dict[str, Any], f: QueueFilter) -> bool:
    if f.status and row["status"] not in f.status:
        return False
    if f.department_id == "none" and row["department_id"] is not None:
        return False
    if f.department_id not in (None, "none") and row["department_id"] != f.department_id:
        return False
    if f.assignee_id == "none" and row["assignee_id"] is not None:
        return False
    if f.assignee_id not in (None, "none") and row["assignee_id"] != f.assignee_id:
        return False
    return f.client_id is None or row["client_id"] == f.client_id


_SORT_KEYS = {
    "waiting": ("waiting_key", False),
    "deadline": ("due_key", False),
    "updated": ("updated_at", False),
    "-updated": ("updated_at", True),
    "opened": ("opened_at", False),
    "-opened": ("opened_at", True),
}


async def test_every_view_is_what_a_plain_filter_and_sort_gives(
    stores: tuple[EventStore, ReadModelDB],
) -> None:
    store, db = stores
    rnd = random.Random(5)
    made = await _history(store, rnd)
    runner = ProjectionRunner(store, db, TicketQueue())
    await runner.catch_up()
    async with db.engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(select(tickets))]
        counts = {
            (r.department_id, r.status): r.count for r in await conn.execute(select(ticket_counts))
        }
    assert len(rows) == len(made) == 120
    by_id = {r["ticket_id"]: r for r in rows}
    for ticket_id, ticket in made.items():
        row = by_id[ticket_id]
        assert (row["status"], row["department_id"], row["assignee_id"]) == (
            ticket.status, ticket.department_id, ticket.assignee_id,
        ), ticket_id  # fmt: skip
        assert row["version"] == ticket.version
        assert (row["waiting_key"] == NEVER) == (ticket.status != "open")
    expected_counts: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row["department_id"] or "", row["status"])
        expected_counts[key] = expected_counts.get(key, 0) + 1
    assert {k: v for k, v in counts.items() if v} == expected_counts

    scopes = [
        Scope(everything=True),
        Scope(departments=("d-a",), assignee_id="s-1"),
        Scope(departments=("d-a", "d-c"), assignee_id="s-2", messages=True),
        Scope(departments=(), assignee_id="s-3"),
        Scope(departments=(), assignee_id="s-3", messages=True),
        Scope(clients=("c-1", "c-2")),
    ]
    filters = [
        QueueFilter(),
        QueueFilter(status=("open",)),
        QueueFilter(status=("open", "answered")),
        QueueFilter(department_id="d-a"),
        QueueFilter(department_id="d-b", status=("closed",)),
        QueueFilter(department_id="none"),
        QueueFilter(assignee_id="s-1"),
        QueueFilter(assignee_id="none", status=("open",)),
        QueueFilter(client_id="c-2"),
    ]
    sorts: list[Sort] = ["waiting", "deadline", "-updated", "opened"]
    async with db.engine.connect() as conn:
        for scope in scopes:
            for f in filters:
                wanted = [r for r in rows if _visible(r, scope) and _matches(r, f)]
                assert await total(conn, scope, f) == len(wanted), (scope, f)
                per_status = {s: sum(r["status"] == s for r in wanted) for s in STATUSES}
                assert await totals_by_status(conn, scope, f) == per_status, (scope, f)
                for sort in sorts:
                    key, descending = _SORT_KEYS[sort]
                    ordered = sorted(wanted, key=lambda r: r["ticket_id"])
                    ordered.sort(key=lambda r: r[key], reverse=descending)
                    for limit, offset in ((7, 0), (7, 7), (500, 0), (5, 1000)):
                        page = page_query(scope, f, sort, limit, offset)
                        assert page is not None
                        found = [r.ticket_id for r in await conn.execute(*page)]
                        expected = [r["ticket_id"] for r in ordered[offset : offset + limit]]
                        assert found == expected, (scope, f, sort, limit, offset)
    assert set(STATUSES) >= {r["status"] for r in rows}


async def test_the_counts_of_a_members_assigned_tickets_read_the_index_alone(
    tmp_path: Path,
) -> None:
    """The queue page's counts: the tickets assigned to the member outside their departments
    are filtered by department, which ``ix_tickets_assignee_wait`` carries, so PostgreSQL
    counts them by an index-only scan (no heap read per assigned ticket)."""
    from tests.conftest import fresh_database

    async with fresh_database() as url:
        store = await open_event_store(url, namespace="tickets")
        db = await ReadModelDB.open(url)
        try:
            await _history(store, random.Random(5))
            await ProjectionRunner(store, db, TicketQueue()).catch_up()
            async with db.engine.connect() as conn:
                # The visibility map an index-only scan needs (autovacuum's job in a service).
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("VACUUM ANALYZE tickets"))
            scope = Scope(departments=("d-a",), assignee_id="s-1")
            statement = totals_statement(scope, QueueFilter())
            assert statement is not None
            sql, params = statement
            async with db.engine.connect() as conn:
                # 120 rows: without these the planner would rather read the whole table.
                await conn.execute(text("SET enable_seqscan = off"))
                await conn.execute(text("SET enable_bitmapscan = off"))
                plan = "\n".join(
                    r[0] for r in await conn.execute(text("EXPLAIN " + sql.text), params)
                )
                counted = await totals_by_status(conn, scope, QueueFilter())
            assert "Index Only Scan using ix_tickets_assignee_wait" in plan, plan
            assert sum(counted.values()) > 0
        finally:
            await db.close()
            await store.close()


async def test_a_clients_erasure_is_handled_inside_the_consumers_transaction(
    tmp_path: Path,
) -> None:
    """On SQLite a second writer would wait for the consumer's own transaction: the key
    must be destroyed on the consumer's connection."""
    import asyncio

    from services.tickets.app.handlers import Tickets
    from services.tickets.app.ports import SupportSettings
    from shared.domain.events import RecordedEvent
    from shared.privacy.shredding import KeyRing

    class NoCatalog:
        async def settings(self) -> SupportSettings:
            return SupportSettings()

    store = await open_event_store(f"sqlite:///{tmp_path}/tickets.db")
    db = await ReadModelDB.open(f"sqlite:///{tmp_path}/tickets-read.db")
    try:
        keys = KeyRing(db)
        app = Tickets(store=store, db=db, catalog=NoCatalog(), keys=keys, staff=lambda _: None)  # type: ignore[arg-type]
        await app.start()
        await db.create_tables(TicketQueue.metadata)
        await keys.key_for_writing("c-1")
        erased = RecordedEvent(
            position=1, stream="client-c-1", stream_version=2, event_id=uuid.uuid4(),
            type="ClientErased", schema_version=1, occurred_at=datetime.now(UTC),
            correlation_id=None, causation_id=None, actor=Actor("admin", "staff"),
            data={"client_id": "c-1"},
        )  # fmt: skip
        async with db.transaction() as conn:
            await asyncio.wait_for(app.on_clients_event(conn, erased), 10)
        assert await keys.key("c-1") is None
    finally:
        await db.close()
        await store.close()
