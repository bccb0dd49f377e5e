"""A broker killed in the middle of traffic and started again: nothing lost, nothing twice.

The service's relay (store → topic, at least once) and its consumer (topic →
read model through the inbox) run as a service runs them, supervised, while a
writer keeps appending to the store. The broker, a real Apache Kafka, gets
SIGKILL halfway and comes back a few seconds later on the same port and log.
Producer requests in flight are retried or fail and are re-sent (the relay moves
its checkpoint only after the broker's acknowledgement); the consumer's fetches
fail and resume; what was handled but not committed comes again and the inbox
drops it. At the end the consumer's table (no unique key: a second application
would be a second row) holds every event the store holds, once each.

The broker is this test's own (killing the session's would break other tests),
always Apache Kafka: the embedded Tansu keeps topics in memory, so its restart
is the different case of a broker that lost everything (tests/integration/
test_consumer.py, ``shared.messaging.relay``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import Column, MetaData, String, Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from devtools.apache_kafka import ApacheKafka
from shared.domain.events import NewEvent, RecordedEvent
from shared.eventstore import EventStore, open_event_store
from shared.messaging.consumer import InboxConsumer
from shared.messaging.relay import Relay
from shared.observability.supervision import retry_forever
from shared.readmodel.database import ReadModelDB

pytestmark = [pytest.mark.bus, pytest.mark.slow, pytest.mark.timeout(240)]

metadata = MetaData()
applied = Table("applied", metadata, Column("event_id", String(36)))

EVENTS = 600
KILL_AFTER = 200  # events appended before the broker is killed
DOWN_SECONDS = 3.0


@pytest.fixture
def broker() -> Iterator[ApacheKafka]:
    with ApacheKafka() as started:
        yield started


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[EventStore]:
    opened = await open_event_store(postgres_url)
    yield opened
    await opened.close()


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[ReadModelDB]:
    opened = await ReadModelDB.open(postgres_url)
    await opened.create_tables(metadata)
    yield opened
    await opened.close()


async def apply(conn: AsyncConnection, event: RecordedEvent) -> None:
    await conn.execute(applied.insert().values(event_id=str(event.event_id)))


async def applied_rows(db: ReadModelDB) -> list[str]:
    async with db.engine.connect() as conn:
        return [row.event_id for row in await conn.execute(select(applied.c.event_id))]


async def test_a_broker_killed_mid_traffic_loses_nothing_and_applies_nothing_twice(
    broker: ApacheKafka, store: EventStore, db: ReadModelDB, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}clients.events"
    relay = Relay(store, db, broker.bootstrap, topic)
    consumer = InboxConsumer(
        f"{topic_prefix}tickets.clients", broker.bootstrap, [topic], db, apply,
        group_id=f"{topic_prefix}tickets.inbound", max_records=50,
    )  # fmt: skip
    problems: dict[str, str] = {}
    loop = asyncio.get_running_loop()
    tasks = [
        asyncio.create_task(retry_forever("relay", relay.run, problems)),
        asyncio.create_task(retry_forever("consumer", consumer.run, problems)),
    ]
    try:
        for n in range(EVENTS):
            await store.append(f"client-{n % 25}", [NewEvent(type="ClientNoted", data={"n": n})])
            if n == KILL_AFTER:
                # Traffic is flowing both ways when the broker dies.
                deadline = loop.time() + 60
                while consumer.handled < KILL_AFTER // 2:
                    assert loop.time() < deadline, f"only {consumer.handled} handled before"
                    await asyncio.sleep(0.05)
                broker.kill()
                killed_at = (relay.published, consumer.handled)
                restart = loop.run_in_executor(None, _start_after, broker, DOWN_SECONDS)
            await asyncio.sleep(0.01)  # the writer goes on while the broker is down
        await restart
        deadline = loop.time() + 90
        while len(await applied_rows(db)) < EVENTS:
            assert loop.time() < deadline, (
                f"{len(await applied_rows(db))} of {EVENTS} applied; problems: {problems}"
            )
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # room for a late second application to show
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    # The crash happened in the middle: some events were through, many were not.
    assert 0 < killed_at[1] < EVENTS and killed_at[0] < EVENTS
    rows = await applied_rows(db)
    stored = [str(e.event_id) for e in await store.read_all(0, EVENTS + 10)]
    assert len(stored) == EVENTS
    assert sorted(rows) == sorted(stored)  # every event, each once
    async with db.engine.connect() as conn:
        distinct = await conn.execute(select(func.count(func.distinct(applied.c.event_id))))
        assert distinct.scalar() == EVENTS
    assert relay.position == await store.head_position()


def _start_after(broker: ApacheKafka, seconds: float) -> None:
    import time

    time.sleep(seconds)
    broker.start()
