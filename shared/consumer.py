"""Consuming other contexts' topics, each event handled once.

Kafka delivers at least once (and the embedded broker may deliver a whole log
again after a restart). The handler's changes and the event id go into the
inbox table in one transaction, so a redelivered event is recognised and
skipped; offsets are committed to Kafka only after that transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import structlog
from aiokafka import AIOKafkaConsumer
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.events import RecordedEvent
from shared.kafka import ensure_topic
from shared.readmodel import ReadModelDB, inbox

log = structlog.get_logger(__name__)

Handler = Callable[[AsyncConnection, RecordedEvent], Awaitable[None]]

CONSUMED = Counter("consumer_events_total", "Events taken from topics", ["consumer", "outcome"])


class InboxConsumer:
    """A Kafka consumer group member that hands each event to ``handler`` exactly once."""

    def __init__(
        self,
        name: str,
        bootstrap: str,
        topics: Sequence[str],
        db: ReadModelDB,
        handler: Handler,
        max_records: int = 500,
        group_id: str | None = None,
    ) -> None:
        self.name = name  # the inbox's name: which events this consumer has handled
        self.group_id = group_id or name
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.db = db
        self.handler = handler
        self.max_records = max_records
        self.handled = 0
        self.skipped = 0
        self.ready = asyncio.Event()

    async def run(self) -> None:
        for topic in self.topics:
            await ensure_topic(self.bootstrap, topic)
        consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # The broker holds a fetch open up to this long when nothing is new;
            # the default 500 ms would be most of a revocation's allowed delay.
            fetch_max_wait_ms=10,
        )
        try:
            await consumer.start()  # inside the try: a stop during start-up still closes it
            self.ready.set()
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=self.max_records)
                for messages in batches.values():
                    await self.handle([RecordedEvent.from_json(m.value) for m in messages])
                if batches:
                    await consumer.commit()
        finally:
            self.ready.clear()
            await consumer.stop()

    async def handle(self, events: list[RecordedEvent]) -> None:
        """Apply a batch in one transaction, skipping events already in the inbox."""
        if not events:
            return
        async with self.db.transaction() as conn:
            for event in events:
                marked = await conn.execute(
                    self.db.insert_ignoring_duplicates(
                        inbox, consumer=self.name, event_id=str(event.event_id)
                    )
                )
                if marked.rowcount == 0:
                    self.skipped += 1
                    CONSUMED.labels(self.name, "duplicate").inc()
                    continue
                await self.handler(conn, event)
                self.handled += 1
                CONSUMED.labels(self.name, "handled").inc()
