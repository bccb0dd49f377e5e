"""``ProjectionGroup``: one subscription feeding a service's read models (PostgreSQL).

Each read model gets every event once, from its own checkpoint; one that fails
on an event leaves the group while the others go on, and catches up on its own
once the cause is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import BigInteger, Column, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.domain.events import NewEvent, RecordedEvent
from shared.eventstore import EventStore, open_event_store
from shared.names import checkpoint_name
from shared.projections.builtin import EventTypeCounts
from shared.projections.runner import Projection, ProjectionGroup, ProjectionRunner
from shared.readmodel.database import ReadModelDB


class Ledger(Projection):
    """Every event it applies, once (the primary key refuses a second time);
    fails on ``Poison`` events while ``broken``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.metadata = MetaData()
        self.table = Table(
            f"{name}_rows",
            self.metadata,
            Column("event_id", String(36), primary_key=True),
            Column("position", BigInteger, nullable=False),
        )
        self.broken = False

    async def apply_all(self, conn: AsyncConnection, events: list[RecordedEvent]) -> None:
        if self.broken and any(e.type == "Poison" for e in events):
            raise RuntimeError("cannot read a Poison event")
        await conn.execute(
            self.table.insert(),
            [{"event_id": str(e.event_id), "position": e.position} for e in events],
        )

    async def apply(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        await self.apply_all(conn, [event])

    async def positions(self, db: ReadModelDB) -> list[int]:
        async with db.reading() as conn:
            return list((await conn.execute(select(self.table.c.position))).scalars())


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[EventStore]:
    opened = await open_event_store(postgres_url, pool_size=2)
    opened.poll_interval = 0.05
    yield opened
    await opened.close()


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[ReadModelDB]:
    opened = await ReadModelDB.open(postgres_url, pool_size=3)
    yield opened
    await opened.close()


async def append(store: EventStore, n: int, type_: str = "Noted") -> int:
    await store.append("log", [NewEvent(type=type_, data={"n": i}) for i in range(n)])
    return await store.head_position()


@contextlib.asynccontextmanager
async def running(group: ProjectionGroup) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(group.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_each_read_model_gets_each_event_once_from_its_own_checkpoint(
    store: EventStore, db: ReadModelDB
) -> None:
    ahead, behind = Ledger("ahead"), Ledger("behind")
    await append(store, 7)
    ahead_runner = ProjectionRunner(store, db, ahead)
    await ahead_runner.catch_up()  # ahead has applied 1-7 alone; behind has nothing
    head = await append(store, 5)
    runners = [
        ahead_runner,
        ProjectionRunner(store, db, behind),
        ProjectionRunner(store, db, EventTypeCounts()),
    ]
    group = ProjectionGroup(store, db, runners, batch_size=4)
    async with running(group):
        assert all(await asyncio.gather(*(r.wait_for(head) for r in runners)))
        head = await append(store, 3)  # live: one page for all three
        assert all(await asyncio.gather(*(r.wait_for(head) for r in runners)))
    assert sorted(await ahead.positions(db)) == list(range(1, head + 1))
    assert sorted(await behind.positions(db)) == list(range(1, head + 1))
    for runner in runners:
        assert (await db.checkpoint(runner.checkpoint_name)).position == head
    assert group.problems == {}


class SlowLedger(Ledger):
    """Takes its time over every page (a new read model with much to catch up)."""

    async def apply_all(self, conn: AsyncConnection, events: list[RecordedEvent]) -> None:
        await asyncio.sleep(0.2)
        await super().apply_all(conn, events)


async def test_a_read_model_far_behind_catches_up_alone_without_holding_back_the_others(
    store: EventStore, db: ReadModelDB
) -> None:
    current, new = Ledger("current"), SlowLedger("new")
    head = await append(store, 40)
    current_runner = ProjectionRunner(store, db, current)
    await current_runner.catch_up()  # the service ran with it; "new" was just added
    runners = [current_runner, ProjectionRunner(store, db, new)]
    group = ProjectionGroup(store, db, runners, batch_size=2)
    async with running(group):
        head = await append(store, 1)
        assert await current_runner.wait_for(head, timeout=1)  # not after 20 slow pages
        assert runners[1].position < head
        assert await runners[1].wait_for(head, timeout=20)
    assert sorted(await new.positions(db)) == list(range(1, head + 1))
    assert sorted(await current.positions(db)) == list(range(1, head + 1))


async def test_a_failing_read_model_leaves_the_group_and_catches_up_alone(
    store: EventStore, db: ReadModelDB
) -> None:
    healthy, flaky = Ledger("healthy"), Ledger("flaky")
    flaky.broken = True
    runners = [ProjectionRunner(store, db, healthy), ProjectionRunner(store, db, flaky)]
    problems: dict[str, str] = {}
    group = ProjectionGroup(store, db, runners, problems=problems)
    async with running(group) as task:
        assert await runners[1].wait_for(await append(store, 3))
        poison = await append(store, 1, "Poison")
        head = await append(store, 4)
        assert await runners[0].wait_for(head)  # not held back by the broken one
        assert not await runners[1].wait_for(poison, timeout=0.5)
        assert runners[1].position == poison - 1
        assert "RuntimeError: cannot read a Poison event" in problems["projection:flaky"]
        assert (await db.checkpoint(checkpoint_name("flaky"))).position == poison - 1
        flaky.broken = False  # fixed: its own runner's next retry gets through
        assert await runners[1].wait_for(head, timeout=10)
        head = await append(store, 2)
        assert all(await asyncio.gather(*(r.wait_for(head) for r in runners)))
        assert not task.done()
    for ledger in (healthy, flaky):
        assert sorted(await ledger.positions(db)) == list(range(1, head + 1))


async def test_when_every_read_model_fails_the_group_fails_for_its_supervisor(
    store: EventStore, db: ReadModelDB
) -> None:
    only = Ledger("only")
    only.broken = True
    group = ProjectionGroup(store, db, [ProjectionRunner(store, db, only)])
    await append(store, 1, "Poison")
    with pytest.raises(RuntimeError, match="Poison"):
        await asyncio.wait_for(group.run(), timeout=10)
    assert group.problems == {}
