"""Read models of other contexts' facts (copies), and filling one again from its topics.

A service keeps some tables from other contexts' topics: tickets keeps the
departments, staff names and clients it needs, identity the departments'
rights, clients the staff names. They are not projections of the service's own
log, so ``rebuild`` cannot make them again; their topics can, since a topic
keeps every event (``shared.messaging.kafka.TOPIC_CONFIG``).

A ``TopicCopy`` names such a read model: the contexts it follows, its tables,
and ``apply``, the part of a consumer's handler that writes those tables and
nothing else (no appends, no mail). ``refill`` drops the tables and applies the
topics from their start up to where the service's consumer group stands (the
offsets kept with its rows, ``shared.messaging.consumer``), all in one transaction, so
the copy comes back as it was (or, should the refill fail, stays as it was)
and the service, started again, goes on from there. It runs while the
service is stopped (``shared.cli refill`` holds the service's leases), and a
service's consumer waits for a refill that runs (the lease ``refill_lease``).

A fact the consumer parked (``dead_letters``, ``shared.messaging.consumer``) was
never applied to the copy, so a refill leaves it out too: the copy comes back
as the consumer had it, and ``dead-letters retry`` still applies it later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import Table, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.domain.events import RecordedEvent
from shared.messaging.consumer import trusted_offsets
from shared.messaging.kafka import partitions_of
from shared.messaging.kafka_clients import consumer_options
from shared.names import refill_marks, topic_of
from shared.readmodel.database import ReadModelDB, dead_letters, inbox

BATCH = 500
IDLE_POLLS = 10  # empty polls of a second before a refill stops waiting for a partition

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TopicCopy:
    """A read model a service keeps from other contexts' topics."""

    name: str
    contexts: tuple[str, ...]
    tables: tuple[Table, ...]
    # Writes ``tables`` only: a refill runs it again over old events.
    apply: Callable[[AsyncConnection, RecordedEvent], Awaitable[object]]


async def refill(
    copy: TopicCopy,
    db: ReadModelDB,
    bootstrap: str,
    group_id: str,
    prefix: str = "",
    progress: Callable[[int, int], None] | None = None,
    *,
    admit: Callable[[RecordedEvent], bool],
) -> int:
    """Drop ``copy``'s tables and apply its topics again, from their start up to where
    ``group_id`` stands; the number of events applied. ``progress(done, total)`` is
    told the offsets gone through. Only the events ``admit`` lets through are applied
    (``shared.messaging.signatures.FactVerifier.admit``: identity's facts must verify)."""
    topics = [topic_of(context, prefix) for context in copy.contexts]
    consumer = AIOKafkaConsumer(
        **consumer_options(bootstrap), group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        until = await _where_the_group_stands(db, bootstrap, group_id, topics, consumer)
        parked = await _parked(db, group_id)
        # One transaction: a refill that fails or is stopped leaves the copy as it was.
        async with db.transaction() as conn:
            for table in copy.tables:
                await conn.run_sync(table.drop, checkfirst=True)
            for table in copy.tables:
                await conn.run_sync(table.create)
            return await _apply(copy, db, conn, consumer, until, progress, parked, admit)
    finally:
        await consumer.stop()


async def _where_the_group_stands(
    db: ReadModelDB,
    bootstrap: str,
    group_id: str,
    topics: Sequence[str],
    consumer: AIOKafkaConsumer,
) -> dict[TopicPartition, int]:
    """Per partition, the group's next offset: as kept with its rows (when the broker
    backs it, ``trusted_offsets``), else as committed to Kafka (a service from before
    the offsets were kept), else none (nothing to do)."""
    existing = await consumer.topics()  # a topic nobody made yet holds nothing to apply
    every = [
        TopicPartition(t, p)
        for t in topics
        if t in existing
        for p in await partitions_of(consumer, t)
    ]
    stored = await trusted_offsets(db, bootstrap, group_id, every)
    committed = AIOKafkaConsumer(**consumer_options(bootstrap), group_id=group_id)
    await committed.start()
    try:
        until: dict[TopicPartition, int] = {}
        for tp in every:
            offset = stored.get(tp)
            if offset is None:
                offset = await committed.committed(tp)
            if offset:
                until[tp] = offset
        return until
    finally:
        await committed.stop()


async def _parked(db: ReadModelDB, group_id: str) -> set[tuple[str, int, int]]:
    """(topic, partition, offset) of the facts ``group_id`` parked: not in its copies."""
    async with db.reading() as conn:
        rows = await conn.execute(
            select(dead_letters.c.topic, dead_letters.c.partition, dead_letters.c.offset).where(
                dead_letters.c.group_id == group_id
            )
        )
        return {(str(t), int(p), int(o)) for t, p, o in rows}


async def _apply(
    copy: TopicCopy,
    db: ReadModelDB,
    conn: AsyncConnection,
    consumer: AIOKafkaConsumer,
    until: dict[TopicPartition, int],
    progress: Callable[[int, int], None] | None,
    parked: set[tuple[str, int, int]],
    admit: Callable[[RecordedEvent], bool],
) -> int:
    # The same event may be on a topic twice (a relay's at-least-once): an inbox of
    # the refill's own, emptied before and after, applies it once.
    marks = refill_marks(copy.name)
    await conn.execute(delete(inbox).where(inbox.c.consumer == marks))
    total, done, applied = sum(until.values()), 0, 0
    if progress is not None:
        progress(0, total)
    left = dict(until)
    if left:
        consumer.assign(list(left))
        await consumer.seek_to_beginning(*left)
    idle = 0
    while left:
        batches = await consumer.getmany(*left, timeout_ms=1000, max_records=BATCH)
        idle = 0 if batches else idle + 1
        if idle == IDLE_POLLS:  # the topic ends before the group's offset: a broker that
            log.warning("copies.topic_ends_early", copy=copy.name, partitions=str(left))
            break  # lost messages; nothing more will come
        for tp, messages in batches.items():
            end = left.get(tp)
            if end is None:
                continue
            wanted = [m for m in messages if m.offset < end]
            if not wanted:
                continue
            for message in wanted:
                if (tp.topic, tp.partition, message.offset) in parked:
                    continue
                event = RecordedEvent.from_json(message.value)
                marked = await conn.execute(
                    db.insert_ignoring_duplicates(
                        inbox, consumer=marks, event_id=str(event.event_id)
                    )
                )
                if marked.rowcount and admit(event):
                    await copy.apply(conn, event)
                    applied += 1
            done += len(wanted)
        for tp, end in list(left.items()):
            if await consumer.position(tp) >= end:  # past its last wanted offset
                del left[tp]
                consumer.pause(tp)
        if progress is not None:
            progress(min(done, total), total)
    await conn.execute(delete(inbox).where(inbox.c.consumer == marks))
    return applied
