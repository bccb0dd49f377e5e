"""A consumer with an inbox: redelivered events change nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.consumer import CONSUMER_LAG, Handler, InboxConsumer
from shared.events import NewEvent, RecordedEvent
from shared.eventstore import open_event_store
from shared.kafka import ensure_topic
from shared.readmodel import ReadModelDB
from shared.relay import message_headers

metadata = MetaData()
# Deliberately no unique key: a second application would show as a second row.
received = Table("received", metadata, Column("event_id", String(36)), Column("n", Integer))


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[ReadModelDB]:
    opened = await ReadModelDB.open(postgres_url)
    await opened.create_tables(metadata)
    yield opened
    await opened.close()


async def record(conn: AsyncConnection, event: RecordedEvent) -> None:
    await conn.execute(received.insert().values(event_id=str(event.event_id), n=event.data["n"]))


async def some_events(postgres_url: str, count: int) -> list[RecordedEvent]:
    store = await open_event_store(postgres_url)
    try:
        for n in range(count):
            await store.append(
                f"client-{n % 4}", [NewEvent(type="ClientRegistered", data={"n": n})]
            )
        return await store.read_all(0, 1000)
    finally:
        await store.close()


async def produce(bootstrap: str, topic: str, events: list[RecordedEvent]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                topic,
                key=event.stream.encode(),
                value=event.to_json(),
                headers=message_headers(event),
            )
    finally:
        await producer.stop()


async def rows(db: ReadModelDB) -> list[tuple[str, int]]:
    async with db.engine.connect() as conn:
        return [
            (r.event_id, r.n) for r in await conn.execute(select(received).order_by(received.c.n))
        ]


async def consume_until(consumer: InboxConsumer, seen: int, timeout: float = 40) -> None:
    task = asyncio.create_task(consumer.run())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while consumer.handled + consumer.skipped < seen:
            if task.done():
                task.result()  # surfaces the consumer's failure
            assert loop.time() < deadline, f"only {consumer.handled + consumer.skipped} of {seen}"
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_redelivered_events_are_applied_once(
    postgres_url: str, db: ReadModelDB, kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}clients.events"
    await ensure_topic(kafka_bootstrap, topic)
    events = await some_events(postgres_url, 12)
    # The relay's at-least-once in action: the same events reach the topic twice.
    await produce(kafka_bootstrap, topic, events)
    await produce(kafka_bootstrap, topic, events[:5])

    first = InboxConsumer(f"{topic_prefix}tickets.clients", kafka_bootstrap, [topic], db, record)
    await consume_until(first, seen=17)
    assert (first.handled, first.skipped) == (12, 5)
    assert await rows(db) == [(str(e.event_id), e.data["n"]) for e in events]

    # A new group (lost offsets, or a fresh broker) reads everything again: still once.
    again_group = InboxConsumer(
        first.name, kafka_bootstrap, [topic], db, record, group_id=f"{topic_prefix}new-group"
    )
    await consume_until(again_group, seen=17)
    assert again_group.handled == 0 and again_group.skipped == 17
    async with db.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(received))).scalar() == 12


async def test_one_consumer_routes_each_topic_to_its_own_handlers_and_inboxes(
    postgres_url: str, db: ReadModelDB, kafka_bootstrap: str, topic_prefix: str
) -> None:
    clients, tickets = f"{topic_prefix}clients.events", f"{topic_prefix}tickets.events"
    events = await some_events(postgres_url, 6)
    await produce(kafka_bootstrap, clients, events[:4])
    await produce(kafka_bootstrap, tickets, events[4:])
    seen: dict[str, list[int]] = {"names": [], "tickets": []}

    def keep(into: str) -> Handler:
        async def handler(conn: AsyncConnection, event: RecordedEvent) -> None:
            seen[into].append(event.data["n"])

        return handler

    consumer = InboxConsumer(f"{topic_prefix}svc.clients", kafka_bootstrap, [clients], db, record)
    # A second route on the same topic has an inbox of its own: it sees every event too.
    consumer.add_route(f"{topic_prefix}svc.names", [clients], keep("names"))
    consumer.add_route(f"{topic_prefix}svc.tickets", [tickets], keep("tickets"))
    assert consumer.topics == sorted([clients, tickets])
    await consume_until(consumer, seen=4 + 4 + 2)
    assert [n for _, n in await rows(db)] == [0, 1, 2, 3]
    assert sorted(seen["names"]) == [0, 1, 2, 3]
    assert sorted(seen["tickets"]) == [4, 5]


async def test_consumer_lag_is_measured_per_topic(
    postgres_url: str, db: ReadModelDB, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """``consumer_lag_messages``: what is on the broker and not taken yet, after each poll."""
    topic = f"{topic_prefix}clients.events"
    await ensure_topic(kafka_bootstrap, topic)
    await produce(kafka_bootstrap, topic, await some_events(postgres_url, 8))
    group = f"{topic_prefix}lagging"
    CONSUMER_LAG.labels(group, topic).set(-1)  # not measured yet

    def current() -> float | None:
        labels = {"group": group, "topic": topic}
        return REGISTRY.get_sample_value("consumer_lag_messages", labels)

    observed: list[float | None] = []

    async def watch(conn: AsyncConnection, event: RecordedEvent) -> None:
        observed.append(current())
        await record(conn, event)

    one_at_a_time = InboxConsumer(
        group, kafka_bootstrap, [topic], db, watch, group_id=group, max_records=1
    )
    await consume_until(one_at_a_time, seen=8)
    # Measured after each poll of one message: behind at first, none at the end.
    assert max(v or 0 for v in observed) > 0
    assert current() == 0
