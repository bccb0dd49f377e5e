"""A consumer with an inbox: redelivered events change nothing."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.domain.events import NewEvent, RecordedEvent
from shared.eventstore import open_event_store
from shared.messaging.consumer import (
    CONSUMER_LAG,
    DEAD_LETTER_PROBLEM,
    Handler,
    InboxConsumer,
    prune_inbox,
)
from shared.messaging.kafka import ensure_topic
from shared.messaging.relay import message_headers
from shared.readmodel.database import ReadModelDB, consumer_offsets, dead_letters

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


async def produce(bootstrap: str, topic: str, events: list[RecordedEvent]) -> list[int]:
    """Send ``events`` as the relay does; the partition each landed on."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    partitions = []
    try:
        for event in events:
            sent = await producer.send_and_wait(
                topic,
                key=event.stream.encode(),
                value=event.to_json(),
                headers=message_headers(event),
            )
            partitions.append(sent.partition)
    finally:
        await producer.stop()
    return partitions


async def rows(db: ReadModelDB) -> list[tuple[str, int]]:
    async with db.engine.connect() as conn:
        return [
            (r.event_id, r.n) for r in await conn.execute(select(received).order_by(received.c.n))
        ]


async def consume_until(
    consumer: InboxConsumer,
    seen: int,
    timeout: float = 40,
    also: Callable[[], bool] = lambda: True,
) -> None:
    """Run ``consumer`` until it has handled or skipped ``seen`` events (and ``also``)."""
    task = asyncio.create_task(consumer.run())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while consumer.handled + consumer.skipped < seen or not also():
            if task.done():
                task.result()  # surfaces the consumer's failure
            done = consumer.handled + consumer.skipped
            assert loop.time() < deadline, f"{done} of {seen} events; also(): {also()}"
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


async def forget_committed_offsets(bootstrap: str, group: str, topic: str) -> None:
    """What Kafka does to a group idle past ``offsets.retention.minutes``: as if it had
    never committed (here: committed offsets set back to the start)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 40
        while not consumer.assignment():  # a member of the group, given the partitions
            assert loop.time() < deadline, "never given the partitions"
            await consumer.getmany(timeout_ms=200)
        await consumer.commit({tp: 0 for tp in consumer.assignment()})
    finally:
        await consumer.stop()


async def twelve_consumed(
    postgres_url: str, db: ReadModelDB, kafka_bootstrap: str, topic_prefix: str
) -> tuple[str, str, list[RecordedEvent], InboxConsumer]:
    """Twelve events on a topic, handled by a group: (topic, group, events, consumer)."""
    topic = f"{topic_prefix}clients.events"
    await ensure_topic(kafka_bootstrap, topic)
    events = await some_events(postgres_url, 12)
    await produce(kafka_bootstrap, topic, events)
    group = f"{topic_prefix}tickets.inbound"
    first = InboxConsumer(f"{topic_prefix}tickets.clients", kafka_bootstrap, [topic], db, record,
                          group_id=group)  # fmt: skip
    await consume_until(first, seen=12)
    return topic, group, events, first


async def test_a_group_whose_kafka_offsets_are_gone_resumes_from_the_database(
    postgres_url: str, db: ReadModelDB, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """The read-model database keeps the group's offsets with the rows: neither a lost
    commit in Kafka nor a pruned inbox makes a consumer apply its topics a second time."""
    topic, group, events, first = await twelve_consumed(
        postgres_url, db, kafka_bootstrap, topic_prefix
    )
    assert await prune_inbox(db, datetime.now(UTC) + timedelta(seconds=1)) == 12

    await forget_committed_offsets(kafka_bootstrap, group, topic)
    more = (await some_events(postgres_url, 2))[-2:]  # two new events, n = 0 and 1
    await produce(kafka_bootstrap, topic, more)
    again = InboxConsumer(first.name, kafka_bootstrap, [topic], db, record, group_id=group)
    kept = again.stored_offsets

    async def slowly(partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        # A slow look-up at assignment (a loaded database): Kafka's offsets (0) arrive
        # first, and the consumer must not hand out what it fetches from there.
        await asyncio.sleep(2)
        return await kept(partitions)

    again.stored_offsets = slowly  # type: ignore[method-assign]
    await consume_until(again, seen=2)
    assert (again.handled, again.skipped) == (2, 0)
    assert sorted(n for _, n in await rows(db)) == sorted([e.data["n"] for e in events] + [0, 1])


async def test_kept_offsets_the_broker_no_longer_backs_are_not_followed(
    postgres_url: str, db: ReadModelDB, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """A broker that lost its topics (the embedded one, restarted) numbers them from 0
    again: kept offsets then point at other messages. The consumer goes by Kafka's
    offsets (none: from the start) and its inbox instead, and misses nothing."""
    topic, group, _, first = await twelve_consumed(postgres_url, db, kafka_bootstrap, topic_prefix)
    # Other events before the kept offsets now, and no offsets in Kafka.
    async with db.transaction() as conn:
        await conn.execute(
            update(consumer_offsets)
            .where(consumer_offsets.c.group_id == group)
            .values(last_event_id=str(uuid.uuid4()))
        )
    await forget_committed_offsets(kafka_bootstrap, group, topic)

    again = InboxConsumer(first.name, kafka_bootstrap, [topic], db, record, group_id=group)
    await consume_until(again, seen=12)
    assert (again.handled, again.skipped) == (0, 12)
    assert sorted(n for _, n in await rows(db)) == list(range(12))


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
    # Measured after each poll of one message (and its commit): none at the end...
    await consume_until(one_at_a_time, seen=8, also=lambda: current() == 0)
    # ...and behind at first.
    assert max(v or 0 for v in observed) > 0


async def test_a_failing_batch_holds_back_only_its_own_partition(
    postgres_url: str, db: ReadModelDB, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """The clients route fails on event 2: the other partitions and the tickets topic go
    on; event 6 (the same stream, so the same partition) waits behind it; once the cause
    is gone both are handled, once each and in their order."""
    clients, tickets = f"{topic_prefix}clients.events", f"{topic_prefix}tickets.events"
    events = await some_events(postgres_url, 8)  # event n is on stream client-{n % 4}
    broken = {"yes": True}
    tried: list[int] = []

    async def fragile(conn: AsyncConnection, event: RecordedEvent) -> None:
        tried.append(event.data["n"])
        if broken["yes"] and event.data["n"] == 2:
            raise RuntimeError("cannot take event 2")
        await record(conn, event)

    seen: list[int] = []

    async def keep(conn: AsyncConnection, event: RecordedEvent) -> None:
        seen.append(event.data["n"])

    problems: dict[str, str] = {}
    consumer = InboxConsumer(
        f"{topic_prefix}svc.clients", kafka_bootstrap, [clients], db, fragile,
        max_records=1, problems=problems,
    )  # fmt: skip
    consumer.add_route(f"{topic_prefix}svc.tickets", [tickets], keep)
    sent = [0, 1, 2, 3, 6]
    partitions = dict(
        zip(sent, await produce(kafka_bootstrap, clients, [events[n] for n in sent]), strict=True)
    )
    # Event 6 and any other sent after 2 to its partition wait behind it; the rest go on.
    behind = [n for n in sent if n > 2 and partitions[n] == partitions[2]]
    assert 6 in behind
    task = asyncio.create_task(consumer.run())
    try:
        await until(lambda: tried.count(2) >= 2)  # failed, paused, retried
        assert list(problems) == [f"consumer:{clients}[{partitions[2]}]"]
        assert (
            "RuntimeError: cannot take event 2" in problems[f"consumer:{clients}[{partitions[2]}]"]
        )
        await produce(kafka_bootstrap, tickets, [events[4], events[5], events[7]])
        await until(lambda: sorted(seen) == [4, 5, 7])  # the other topic goes on
        free = [n for n in sent if n != 2 and n not in behind]
        await until(lambda: consumer.handled == len(free) + 3)
        assert [n for _, n in await rows(db)] == free  # nothing from behind event 2
        assert not set(behind) & set(tried)
        broken["yes"] = False
        await until(lambda: consumer.handled == len(sent) + 3)
        assert [n for _, n in await rows(db)] == sent  # once each
        last_try_of_2 = len(tried) - 1 - tried[::-1].index(2)
        assert all(tried.index(n) > last_try_of_2 for n in behind)  # in their order
        assert problems == {}
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Callable[[], bool], timeout: float = 40) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_two_replicas_share_a_group_through_rebalances_and_apply_each_event_once(
    postgres_url: str, db: ReadModelDB, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Two replicas of a service: one group, one read-model database. A second member
    joining, and the first leaving, move partitions between them while events arrive;
    every event is applied once, by one of them, and both took part."""
    topic = f"{topic_prefix}clients.events"
    await ensure_topic(kafka_bootstrap, topic)
    events = await some_events(postgres_url, 60)
    group = f"{topic_prefix}clients.inbound"
    inbox_name = f"{topic_prefix}clients.copies"

    given: dict[int, list[TopicPartition]] = {}

    def replica(number: int) -> InboxConsumer:
        member = InboxConsumer(inbox_name, kafka_bootstrap, [topic], db, record, group_id=group)
        kept = member.stored_offsets

        async def noting(partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
            given[number] = list(partitions)  # called at each assignment of this member
            return await kept(partitions)

        member.stored_offsets = noting  # type: ignore[method-assign]
        return member

    first, second = replica(1), replica(2)
    first_task = asyncio.create_task(first.run())
    second_task: asyncio.Task[None] | None = None
    try:
        await produce(kafka_bootstrap, topic, events[:20])
        await until(lambda: first.handled == 20)
        second_task = asyncio.create_task(second.run())  # joins: the group rebalances
        await until(lambda: bool(given.get(2)))
        landed = await produce(kafka_bootstrap, topic, events[20:40])
        await until(lambda: first.handled + second.handled == 40)
        # The second member handled exactly what landed on the partitions it was given.
        its_share = sum(1 for p in landed if TopicPartition(topic, p) in given[2])
        assert second.handled == its_share
        first_task.cancel()  # leaves: its partitions move to the second
        with contextlib.suppress(asyncio.CancelledError):
            await first_task
        await produce(kafka_bootstrap, topic, events[40:])
        await until(lambda: first.handled + second.handled >= 60)
        # A moment for a stray second application (a batch handled twice across a
        # rebalance) to show; the row count below is the real check.
        await asyncio.sleep(1.0)
    finally:
        for task in (first_task, second_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    assert await rows(db) == [(str(e.event_id), e.data["n"]) for e in events]
    assert first.handled + second.handled == 60


async def parked_once_tried_again(db: ReadModelDB, timeout: float = 40) -> Any:
    """The one parked row, once the consumer has taken its retry (and failed again)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        async with db.engine.connect() as conn:
            (row,) = (await conn.execute(select(dead_letters))).mappings().all()
        if row["retry_requested_at"] is None:
            return row
        assert loop.time() < deadline, "the retry was never taken"
        await asyncio.sleep(0.1)


async def test_a_poison_fact_is_parked_and_later_facts_still_apply(
    postgres_url: str, db: ReadModelDB, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Event 2 fails every time (and a message that is not an event at all never can be
    read): after ``max_failures`` tries each is parked in ``dead_letters`` with where it
    is and why, without its content, and the facts behind them on their partitions apply.
    ``/ready``'s problems name the parked facts; a retry asked once the cause is gone
    applies event 2, once, and empties the table."""
    topic = f"{topic_prefix}clients.events"
    await ensure_topic(kafka_bootstrap, topic)
    events = await some_events(postgres_url, 8)
    broken = {"yes": True}
    tried: list[int] = []

    async def fragile(conn: AsyncConnection, event: RecordedEvent) -> None:
        tried.append(event.data["n"])
        if broken["yes"] and event.data["n"] == 2:
            # A database error's text quotes the row: none of it may be kept.
            raise RuntimeError("cannot take 'Ivan Petrov' [parameters: ('Ivan Petrov',)]")
        await record(conn, event)

    group = f"{topic_prefix}svc.inbound"
    problems: dict[str, str] = {}
    consumer = InboxConsumer(
        f"{topic_prefix}svc.clients", kafka_bootstrap, [topic], db, fragile,
        group_id=group, problems=problems, max_failures=3,
    )  # fmt: skip
    before = REGISTRY.get_sample_value("dead_letters_total", {"group": group}) or 0
    # Event 6 is on event 2's stream, so behind it on the same partition.
    partitions = await produce(kafka_bootstrap, topic, events[:7])
    assert partitions[6] == partitions[2]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        garbage = await producer.send_and_wait(topic, key=b"client-1", value=b"not an event")
    finally:
        await producer.stop()
    await produce(kafka_bootstrap, topic, [events[7]])  # client-3: behind nothing

    task = asyncio.create_task(consumer.run())
    try:
        await until(lambda: sorted(n for n in tried if n != 2) == [0, 1, 3, 4, 5, 6, 7])
        await until(lambda: consumer.parked == 2)
        assert tried.count(2) >= 3
        assert sorted(n for _, n in await rows(db)) == [0, 1, 3, 4, 5, 6, 7]
        async with db.engine.connect() as conn:
            parked = (
                (await conn.execute(select(dead_letters).order_by(dead_letters.c.offset)))
                .mappings()
                .all()
            )
        by_type = {row["event_type"]: row for row in parked}
        poison = by_type["ClientRegistered"]
        assert (poison["topic"], poison["partition"], poison["key"]) == (
            topic, partitions[2], events[2].stream,
        )  # fmt: skip
        assert poison["event_id"] == str(events[2].event_id)
        assert poison["group_id"] == group and poison["failures"] == 3
        assert poison["reason"].startswith("RuntimeError: cannot take")
        assert "Ivan" not in poison["reason"]
        unreadable = by_type[None]
        assert (unreadable["partition"], unreadable["offset"]) == (
            garbage.partition, garbage.offset,
        )  # fmt: skip
        assert unreadable["event_id"] is None
        assert "2 fact(s) parked" in problems[DEAD_LETTER_PROBLEM]
        assert not any(key.startswith("consumer:") for key in problems)  # nothing held
        assert REGISTRY.get_sample_value("dead_letters_total", {"group": group}) == before + 2
        assert REGISTRY.get_sample_value("dead_letters_parked", {"group": group}) == 2

        # The cause is gone; the operator asks for a retry (what `dead-letters retry` writes).
        broken["yes"] = False
        async with db.transaction() as conn:
            await conn.execute(
                update(dead_letters)
                .where(dead_letters.c.id == poison["id"])
                .values(retry_requested_at=datetime.now(UTC))
            )
        await until(lambda: consumer.retried == 1 and consumer.parked == 1)
        assert sorted(n for _, n in await rows(db)) == list(range(8))  # 2 applied, once
        # What cannot be read stays parked, with its problem, until dropped.
        async with db.transaction() as conn:
            await conn.execute(
                update(dead_letters)
                .where(dead_letters.c.id == unreadable["id"])
                .values(retry_requested_at=datetime.now(UTC))
            )
        left = await parked_once_tried_again(db)
        assert left["id"] == unreadable["id"] and left["failures"] == 4
        assert consumer.parked == 1
        async with db.transaction() as conn:  # what `dead-letters drop` writes
            await conn.execute(
                update(dead_letters)
                .where(dead_letters.c.id == left["id"])
                .values(dropped_at=datetime.now(UTC))
            )
        await until(lambda: DEAD_LETTER_PROBLEM not in problems)
        assert consumer.parked == 0
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
