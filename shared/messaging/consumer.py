"""Consuming other contexts' topics, each event handled once.

Kafka delivers at least once (and the embedded broker may deliver a whole log
again after a restart). The handler's changes and the event id go into the
inbox table in one transaction, so a redelivered event is recognised and
skipped; offsets are committed to Kafka only after that transaction.

One consumer (one group member, one fetch loop) serves all of a service's
subscriptions: each is a *route* (its own inbox name, topics and handler), and
messages go to the routes of the topic they came from. On Tansu each idle
consumer costs a fetch every few milliseconds (``shared.messaging.kafka_clients``), so a
service keeps one, not one per subscription.

A batch that fails (a handler raises, a message cannot be read) holds back only
its own partition: the consumer rewinds that partition to the batch's first
message, pauses it, and retries it after a pause that doubles up to ten
seconds, while every other partition and topic goes on. Offsets never move
past an unhandled message. ``problems`` (the service's, shown by ``/ready``)
names the partition until it gets through.

Where a consumer stands is kept twice: in Kafka (committed after each batch,
for tools that show a group's lag) and in the read-model database, in the
batch's own transaction (``consumer_offsets``, per group and partition). A
member given a partition resumes from the database's offset: if Kafka forgot
the group's offsets (a group idle past the broker's ``offsets.retention.minutes``,
7 days by default), the consumer does not read its topics again from the start.

The inbox keeps an event id for a retention (``inbox_retention_days``, default
14), then ``prune_inbox`` removes it. What Kafka redelivers is recent: a batch
whose commit a crash or a rebalance cut off, or what a relay published again
after a crash between the broker's acknowledgement and its checkpoint.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from opentelemetry import trace
from prometheus_client import Counter, Gauge
from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.domain.events import RecordedEvent
from shared.messaging.kafka import ensure_topic, messages_at
from shared.messaging.kafka_clients import consumer_options
from shared.observability import causation, telemetry
from shared.observability.supervision import FIRST_PAUSE, LONGEST_PAUSE, problem_text
from shared.readmodel.database import ReadModelDB, consumer_offsets, dialect_insert, inbox

log = structlog.get_logger(__name__)

Handler = Callable[[AsyncConnection, RecordedEvent], Awaitable[None]]

CONSUMED = Counter("consumer_events_total", "Events taken from topics", ["consumer", "outcome"])
INBOX_PRUNED = Counter("inbox_pruned_total", "Inbox entries removed after their retention")
PRUNE_CHUNK = 5000  # entries per transaction: a prune never holds many row locks for long
PRUNE_EVERY = 3600.0  # seconds between two prunes of a running service
CONSUMER_LAG = Gauge(
    "consumer_lag_messages", "Messages on the broker not yet taken, per group", ["group", "topic"]
)


@dataclass(frozen=True)
class Route:
    """A subscription: the events of ``topics`` go to ``handler``, once per ``inbox`` name."""

    inbox: str
    topics: tuple[str, ...]
    handler: Handler


class InboxConsumer:
    """A Kafka consumer group member that hands each event to its route's handler once."""

    def __init__(
        self,
        name: str,
        bootstrap: str,
        topics: Sequence[str],
        db: ReadModelDB,
        handler: Handler,
        max_records: int = 500,
        group_id: str | None = None,
        problems: dict[str, str] | None = None,
    ) -> None:
        self.name = name  # the first route's inbox name
        self.group_id = group_id or name
        self.bootstrap = bootstrap
        self.db = db
        self.max_records = max_records
        self.routes: list[Route] = []
        self.handled = 0
        self.skipped = 0
        self.ready = asyncio.Event()
        self.tracer: trace.Tracer = trace.NoOpTracer()  # the service's, when traces are on
        self.problems = problems if problems is not None else {}
        self.add_route(name, topics, handler)

    def add_route(self, inbox: str, topics: Sequence[str], handler: Handler) -> None:
        """Also hand the events of ``topics`` to ``handler`` (before ``run``)."""
        self.routes.append(Route(inbox, tuple(topics), handler))

    @property
    def topics(self) -> list[str]:
        return sorted({topic for route in self.routes for topic in route.topics})

    async def run(self) -> None:
        for topic in self.topics:
            await ensure_topic(self.bootstrap, topic)
        consumer = AIOKafkaConsumer(
            # The broker's fetch wait (shared.messaging.kafka_clients): a long poll on Apache
            # Kafka, which answers as soon as a message arrives; 10 ms on Tansu.
            **consumer_options(self.bootstrap),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        held = _HeldPartitions(consumer, self.problems)
        try:
            await consumer.start()  # inside the try: a stop during start-up still closes it
            consumer.subscribe(self.topics, listener=_ResumeFromDatabase(self, consumer))
            self.ready.set()
            while True:
                held.resume_due()
                batches = await consumer.getmany(timeout_ms=500, max_records=self.max_records)
                for tp, messages in batches.items():
                    try:
                        events = [RecordedEvent.from_json(m.value) for m in messages]
                        await self.handle(events, tp.topic, (tp.partition, messages[-1].offset + 1))
                    except Exception as exc:
                        held.hold(tp, messages[0].offset, exc)
                    else:
                        held.through(tp)
                if batches:
                    await consumer.commit()
                await self._measure_lag(consumer)
        finally:
            self.ready.clear()
            await consumer.stop()

    async def _measure_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Messages on the broker this consumer has not taken yet, per topic."""
        behind: dict[str, int] = {}
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)  # None until a fetch of tp came back
            if highwater is None:
                continue
            position = await consumer.position(tp)
            behind[tp.topic] = behind.get(tp.topic, 0) + max(0, highwater - position)
        for topic, lag in behind.items():
            CONSUMER_LAG.labels(self.group_id, topic).set(lag)

    async def stored_offsets(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The next offsets this group's handled batches left in the database."""
        return await trusted_offsets(self.db, self.bootstrap, self.group_id, partitions)

    async def handle(
        self,
        events: list[RecordedEvent],
        topic: str | None = None,
        offset: tuple[int, int] | None = None,
    ) -> None:
        """Apply a batch of one topic in one transaction, skipping events already in the inbox.

        ``topic`` picks the routes (None: the first route's). ``offset`` is the
        batch's (partition, next offset), stored in the same transaction.
        """
        if not events:
            return
        routes = (
            [r for r in self.routes if topic in r.topics] if topic is not None else self.routes[:1]
        )
        async with self.db.transaction() as conn:
            if topic is not None and offset is not None:
                await self._store_offset(conn, topic, *offset, str(events[-1].event_id))
            for route in routes:
                for event in events:
                    marked = await conn.execute(
                        self.db.insert_ignoring_duplicates(
                            inbox, consumer=route.inbox, event_id=str(event.event_id)
                        )
                    )
                    if marked.rowcount == 0:
                        self.skipped += 1
                        CONSUMED.labels(route.inbox, "duplicate").inc()
                        continue
                    cause = causation.caused_by(event.event_id, event.correlation_id)
                    with (
                        causation.bound(cause),
                        telemetry.handling(self.tracer, route.inbox, event),
                    ):
                        await route.handler(conn, event)
                    self.handled += 1
                    CONSUMED.labels(route.inbox, "handled").inc()

    async def _store_offset(
        self, conn: AsyncConnection, topic: str, partition: int, next_offset: int, last: str
    ) -> None:
        """One upsert. Only forward: a member that lost the partition in a rebalance
        and still finishes a batch never moves the new owner's offset back."""
        row = dialect_insert(self.db.dialect, consumer_offsets).values(
            group_id=self.group_id,
            topic=topic,
            partition=partition,
            next_offset=next_offset,
            last_event_id=last,
        )
        await conn.execute(
            row.on_conflict_do_update(
                index_elements=[
                    consumer_offsets.c.group_id,
                    consumer_offsets.c.topic,
                    consumer_offsets.c.partition,
                ],
                set_={"next_offset": row.excluded.next_offset, "last_event_id": last},
                where=consumer_offsets.c.next_offset < row.excluded.next_offset,
            )
        )


class _ResumeFromDatabase(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions given to this member start at the database's offsets, where known."""

    def __init__(self, owner: InboxConsumer, consumer: AIOKafkaConsumer) -> None:
        self.owner = owner
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        # The new partitions are fetched from as soon as Kafka's offsets arrive, while
        # this still reads the database: paused before the first await, none of their
        # messages comes out of ``getmany`` before the seek.
        partitions = list(assigned)
        self.consumer.pause(*partitions)
        try:
            for tp, offset in (await self.owner.stored_offsets(partitions)).items():
                self.consumer.seek(tp, offset)
        finally:
            self.consumer.resume(*partitions)


class _HeldPartitions:
    """The partitions whose last batch failed: rewound, paused, resumed after a pause."""

    def __init__(self, consumer: AIOKafkaConsumer, problems: dict[str, str]) -> None:
        self.consumer = consumer
        self.problems = problems
        self.until: dict[TopicPartition, float] = {}
        self.pauses: dict[TopicPartition, float] = {}

    def hold(self, tp: TopicPartition, first_offset: int, error: Exception) -> None:
        pause = self.pauses.get(tp, FIRST_PAUSE)
        self.pauses[tp] = min(pause * 2, LONGEST_PAUSE)
        self.consumer.seek(tp, first_offset)
        self.consumer.pause(tp)
        self.until[tp] = time.monotonic() + pause
        self.problems[_problem(tp)] = problem_text(error)
        log.warning(
            "consumer.partition_held",
            topic=tp.topic,
            partition=tp.partition,
            offset=first_offset,
            error=self.problems[_problem(tp)],
            retry_in=pause,
        )

    def through(self, tp: TopicPartition) -> None:
        if self.pauses.pop(tp, None) is not None:
            self.problems.pop(_problem(tp), None)

    def resume_due(self) -> None:
        now = time.monotonic()
        assigned = self.consumer.assignment()
        for tp, until in list(self.until.items()):
            if until <= now:
                del self.until[tp]
                if tp in assigned:  # a rebalance may have moved it elsewhere meanwhile
                    self.consumer.resume(tp)


def _problem(tp: TopicPartition) -> str:
    return f"consumer:{tp.topic}[{tp.partition}]"


async def prune_inbox(db: ReadModelDB, before: datetime, chunk: int = PRUNE_CHUNK) -> int:
    """Remove the inbox entries handled before ``before``; how many went.

    Entries without a time (recorded before the column existed, or by an older
    replica during an upgrade) are stamped now rather than removed, so they
    are kept one retention from here. Deletes ``chunk`` entries per transaction.
    """
    async with db.transaction() as conn:
        await conn.execute(
            update(inbox).where(inbox.c.handled_at.is_(None)).values(handled_at=datetime.now(UTC))
        )
    removed = 0
    key = tuple_(inbox.c.consumer, inbox.c.event_id)
    while True:
        oldest = select(inbox.c.consumer, inbox.c.event_id).where(inbox.c.handled_at < before)
        async with db.transaction() as conn:
            result = await conn.execute(delete(inbox).where(key.in_(oldest.limit(chunk))))
        removed += result.rowcount
        if result.rowcount < chunk:
            break
    INBOX_PRUNED.inc(removed)
    return removed


async def keep_inbox_pruned(db: ReadModelDB, retention: timedelta) -> None:
    """Prune the inbox now and every ``PRUNE_EVERY`` seconds (a service's task)."""
    while True:
        removed = await prune_inbox(db, datetime.now(UTC) - retention)
        if removed:
            log.info("inbox.pruned", removed=removed, retention_days=retention.days)
        await asyncio.sleep(PRUNE_EVERY)


async def trusted_offsets(
    db: ReadModelDB, bootstrap: str, group_id: str, partitions: Sequence[TopicPartition]
) -> dict[TopicPartition, int]:
    """The group's next offsets kept in the database, for the partitions whose broker
    still holds, just before that offset, the last event handled there.

    A broker that lost its topics (the embedded one, restarted) numbers them from 0
    again, and the relays publish everything anew: there, a kept offset points at
    other messages, so the consumer goes by Kafka's offsets (and its inbox) instead.
    """
    wanted = {(tp.topic, tp.partition) for tp in partitions}
    async with db.reading() as conn:
        rows = await conn.execute(
            select(
                consumer_offsets.c.topic,
                consumer_offsets.c.partition,
                consumer_offsets.c.next_offset,
                consumer_offsets.c.last_event_id,
            ).where(consumer_offsets.c.group_id == group_id)
        )
        kept = {
            TopicPartition(topic, partition): (int(offset), last)
            for topic, partition, offset, last in rows
            if (topic, partition) in wanted and offset > 0
        }
    found = await messages_at(bootstrap, {tp: offset - 1 for tp, (offset, _) in kept.items()})
    trusted: dict[TopicPartition, int] = {}
    for tp, (offset, last) in kept.items():
        message = found.get(tp)
        if message is not None and _event_id(message.value) == last:
            trusted[tp] = offset
        else:
            log.warning(
                "consumer.offset_not_on_broker",
                group=group_id, topic=tp.topic, partition=tp.partition, offset=offset,
            )  # fmt: skip
    return trusted


def _event_id(value: bytes | None) -> str | None:
    try:
        return str(RecordedEvent.from_json(value or b"").event_id)
    except Exception:
        return None
