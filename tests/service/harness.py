"""What a service-layer test runs on: the in-memory event store, a SQLite read-model
database in a temp dir, the service's projections following the store, and other
contexts' facts handed to its consumers directly (no HTTP, no broker).

``running`` starts a context's projections as a service does (one
``ProjectionGroup`` following the store live); ``settled`` waits until every
read model has applied what the store holds, which is what a read with
``?min_position`` waits for over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from shared.access.control import Access, Principal
from shared.domain.events import NewEvent, RecordedEvent
from shared.eventstore import EventStore
from shared.eventstore.memory import MemoryEventStore
from shared.projections.runner import Projection, ProjectionGroup, ProjectionRunner
from shared.readmodel.database import ReadModelDB, kernel_metadata

Consumer = Callable[[AsyncConnection, RecordedEvent], Awaitable[Any]]


@dataclass
class Harness:
    store: MemoryEventStore
    db: ReadModelDB
    runners: list[ProjectionRunner]
    following: asyncio.Task[None]

    async def settled(self) -> None:
        """Every read model has applied the store's head (fails if the group died)."""
        head = await self.store.head_position()
        for runner in self.runners:
            if self.following.done():
                self.following.result()  # raises what stopped the projections
            assert await runner.wait_for(head, timeout=10), runner.projection.name


async def throwaway_read_models(path: Path) -> ReadModelDB:
    """What ``ReadModelDB.open("sqlite:///…")`` makes, without waiting for the disk
    (no fsync, the journal in memory): the file is thrown away after the test, and
    creating a service's tables takes a tenth of the time."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 30})

    @sqlalchemy_event.listens_for(engine.sync_engine, "connect")
    def _no_fsync(connection: Any, _record: Any) -> None:
        connection.execute("PRAGMA synchronous = OFF")
        connection.execute("PRAGMA journal_mode = MEMORY")

    db = ReadModelDB(engine)
    await db.create_tables(kernel_metadata, add_new_columns=True)
    return db


@contextlib.asynccontextmanager
async def running(directory: Path, projections: Sequence[Projection]) -> AsyncIterator[Harness]:
    """A context's store and read models, its projections following the store."""
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    store = MemoryEventStore()
    db = await throwaway_read_models(directory / "read.db")
    runners = [ProjectionRunner(store, db, p) for p in projections]
    for runner in runners:
        await runner.start()  # the tables exist before the application reads them
    following = asyncio.create_task(ProjectionGroup(store, db, runners).run())
    try:
        yield Harness(store, db, runners, following)
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        await store.close()
        await db.close()


@dataclass
class Facts:
    """Another context's store, delivered to a consumer of this one in order, each event
    in its own transaction, as ``shared.messaging.consumer`` does from the topic."""

    db: ReadModelDB
    consumer: Consumer
    source: EventStore = field(default_factory=MemoryEventStore)
    position: int = 0

    async def publish(self, stream: str, *facts: NewEvent) -> None:
        await self.source.append(stream, list(facts))
        await self.deliver()

    async def deliver(self) -> None:
        while page := await self.source.read_all(self.position):
            for event in page:
                async with self.db.transaction() as conn:
                    await self.consumer(conn, event)
            self.position = page[-1].position

    async def redeliver(self) -> None:
        """Everything again from the start (a consumer must not act twice)."""
        self.position = 0
        await self.deliver()


def staff(
    staff_id: str,
    rights: Sequence[str] = (),
    departments: Sequence[str] = (),
    *,
    full_access: bool = False,
) -> Principal:
    access = Access(
        principal_id=staff_id,
        kind="staff",
        login=staff_id,
        disabled=False,
        full_access=full_access,
        rights=frozenset(rights),
        departments=tuple(departments),
    )
    return Principal(staff_id, "staff", f"session-{staff_id}", None, access)


def client(
    client_id: str, *, company_id: str | None = None, company_manager: bool = False
) -> Principal:
    access = Access(
        principal_id=client_id,
        kind="client",
        login=client_id,
        disabled=False,
        company_id=company_id,
        company_manager=company_manager,
    )
    return Principal(client_id, "client", f"session-{client_id}", None, access)
