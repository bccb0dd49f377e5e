"""Every replica follows all of ``identity.events`` for its access copy.

A consumer group splits a topic's partitions among the replicas of a service,
and each replica would see only its share: the in-memory copy of the others
would miss a revocation for good. So the access copy is fed by a consumer
without a group, assigned every partition of the topic, in every replica.

Where the copy stands is kept per partition in the read-model database, beside
the rows and in the same transaction, as the next offset to read. Replicas
sharing that database all write it; a replica writes rows only for events past
the stored offset (the offset row is locked while it does), so a replica that
lags never puts an older state back. A starting replica reads the offsets
first and the rows after: the rows are at least as new as the offsets, and
replaying from there ends in the newest state because every access event
carries a principal's whole state (``AccessCopy.handle``).

Only facts that carry identity's valid signature reach the copy
(``shared.messaging.signatures.FactVerifier``); the others are reported and
passed over. The copy never goes back to an older version of a principal: the
rows and the dicts keep the stream version of the fact they hold.

A fact the copy fails on is held, never parked (unlike the kernel's consumers,
``shared.messaging.consumer``, and the notifier's stream, which park a fact that
keeps failing in ``dead_letters`` and go on). Parking an access fact would skip
it and apply the later ones: a revocation, a disabled member, a department that
lost a right would be passed over and the rights it took away would stay in
place, silently. Holding keeps the copy at the last state it could apply, and
says so: the partition is rewound to the failing fact and paused, tried again
after a pause that doubles up to ten seconds (the other partitions go on), and
``/ready`` names it under ``problems["access:<topic>[<partition>]"]`` with the
failure's scrubbed reason (``failure_reason``: no quoted values) until it gets
through. The service stays ready (its other parts work, and a replica turned away
would not help: every replica reads the same fact); the operator fixes the cause
(a column too small, a database down) and the copy catches up by itself. A
message that cannot even be read holds its partition the same way.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.access.control import AccessCopy
from shared.domain.events import RecordedEvent
from shared.messaging.consumer import failure_reason
from shared.messaging.kafka import ensure_topic, partitions_of
from shared.messaging.kafka_clients import consumer_options, pace_fetches
from shared.messaging.signatures import FactVerifier
from shared.observability.supervision import FIRST_PAUSE, LONGEST_PAUSE
from shared.readmodel.database import ReadModelDB

log = structlog.get_logger(__name__)

feed_metadata = MetaData()

offsets = Table(
    "access_feed_offsets",
    feed_metadata,
    Column("topic", String(255), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
)


class AccessFeed:
    """Keeps an ``AccessCopy`` current from every partition of identity's topic."""

    def __init__(
        self,
        name: str,
        bootstrap: str,
        topic: str,
        db: ReadModelDB,
        copy: AccessCopy,
        verifier: FactVerifier,
        problems: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.bootstrap = bootstrap
        self.topic = topic
        self.db = db
        self.copy = copy
        self.verifier = verifier
        self.ready = asyncio.Event()
        self.handled = 0
        # Per partition, the next offset this replica's dicts have not seen yet.
        self.positions: dict[int, int] = {}
        self.problems = problems if problems is not None else {}
        # Held partitions: the next pause after a failure, and when the current one ends.
        self.pauses: dict[TopicPartition, float] = {}
        self.until: dict[TopicPartition, float] = {}

    async def load(self) -> None:
        """Fill the copy from the rows and resume where they stand (offsets read first)."""
        await self.db.create_tables(feed_metadata)
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(
                select(offsets.c.partition, offsets.c.next_offset).where(
                    offsets.c.topic == self.topic
                )
            )
            self.positions = {int(p): int(o) for p, o in rows}
            await conn.commit()
            await self.copy.load(conn)

    async def run(self) -> None:
        """Follow the topic from ``positions`` (``load`` first; a restart resumes there)."""
        await ensure_topic(self.bootstrap, self.topic)
        consumer = AIOKafkaConsumer(
            # The broker's fetch wait (shared.messaging.kafka_clients): a long poll on Apache
            # Kafka, which answers as soon as a revocation arrives; 10 ms on Tansu, 100 once
            # quiet (a revocation after a quiet second: 10-20 ms later on average, 51 at most).
            **consumer_options(self.bootstrap),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            await consumer.start()  # inside the try: a stop during start-up still closes it
            pace_fetches(consumer, self.bootstrap)
            partitions = await partitions_of(consumer, self.topic)
            assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            for tp in assigned:
                if tp.partition in self.positions:
                    consumer.seek(tp, self.positions[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
            self.ready.set()
            while True:
                self.resume_due(consumer)
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
                for tp, messages in batches.items():
                    await self.take(consumer, tp, messages)
        finally:
            self.ready.clear()
            await consumer.stop()

    async def take(self, consumer: Any, tp: TopicPartition, messages: list[Any]) -> None:
        """Apply one partition's messages, or hold the partition at the first of them."""
        try:
            events = [(m.offset, RecordedEvent.from_json(m.value)) for m in messages]
            await self.handle(tp.partition, events)
        except Exception as error:
            self.hold(consumer, tp, messages[0].offset, error)
            return
        if self.pauses.pop(tp, None) is not None:
            self.problems.pop(self.problem(tp), None)
            log.info("access.feed_through", topic=tp.topic, partition=tp.partition)

    def hold(self, consumer: Any, tp: TopicPartition, offset: int, error: Exception) -> None:
        """Rewind ``tp`` to ``offset`` and pause it; named in ``problems`` until through."""
        pause = self.pauses.get(tp, FIRST_PAUSE)
        self.pauses[tp] = min(pause * 2, LONGEST_PAUSE)
        consumer.seek(tp, offset)
        consumer.pause(tp)
        self.until[tp] = time.monotonic() + pause
        reason = failure_reason(error)
        self.problems[self.problem(tp)] = (
            f"access facts held at offset {offset} (not parked: a skipped revocation "
            f"would leave rights in place): {reason}"
        )
        log.error(
            "access.feed_held", topic=tp.topic, partition=tp.partition, offset=offset,
            error=reason, retry_in=pause,
        )  # fmt: skip

    def resume_due(self, consumer: Any) -> None:
        """Resume the held partitions whose pause is over."""
        now = time.monotonic()
        for tp, until in list(self.until.items()):
            if until <= now:
                del self.until[tp]
                consumer.resume(tp)

    @staticmethod
    def problem(tp: TopicPartition) -> str:
        return f"access:{tp.topic}[{tp.partition}]"

    async def handle(self, partition: int, events: list[tuple[int, RecordedEvent]]) -> None:
        """Rows for the events past the stored offset, then the dicts for all of them."""
        if not events:
            return
        # A fact identity did not sign is no fact: reported by the verifier, then passed
        # over like any other event that is not for the copy.
        decoded = [
            (offset, event, self.copy.decode(event) if self.verifier.admit(event) else None)
            for offset, event in events
        ]
        async with self.db.transaction() as conn:
            stored = await _lock_offset(conn, self.db, self.topic, partition)
            for offset, event, payload in decoded:
                if payload is not None and offset >= stored:
                    await self.copy.store(conn, payload, event.stream_version)
            last = events[-1][0] + 1
            if last > stored:
                await conn.execute(
                    offsets.update()
                    .where(offsets.c.topic == self.topic, offsets.c.partition == partition)
                    .values(next_offset=last)
                )
        # The dicts are this replica's own: they follow every event, in order.
        for _, event, payload in decoded:
            if payload is not None:
                self.copy.apply(payload, event.stream_version)
        self.positions[partition] = events[-1][0] + 1
        self.handled += len(events)


async def _lock_offset(conn: AsyncConnection, db: ReadModelDB, topic: str, partition: int) -> int:
    """The stored next offset of a partition, its row locked until the transaction ends."""
    await conn.execute(
        db.insert_ignoring_duplicates(offsets, topic=topic, partition=partition, next_offset=0)
    )
    query = select(offsets.c.next_offset).where(
        offsets.c.topic == topic, offsets.c.partition == partition
    )
    if db.dialect == "postgresql":
        query = query.with_for_update()
    return int((await conn.execute(query)).scalar_one())
