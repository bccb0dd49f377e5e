"""The relay: publishes a service's store, in global order, to its topic ``<context>.events``.

At least once: a page of events is sent, the broker acknowledges every message
(``acks=all``), and only then is the checkpoint moved. A crash in between sends
the page again; consumers drop the copies by event id (``shared.messaging.consumer``).

Message key = stream id (Kafka keeps order per key, so per aggregate); headers
``event-type``, ``event-id`` and ``correlation-id`` (when the event has one);
value = the JSON envelope. A relay given a signing key (identity's: its facts
grant rights everywhere) signs every envelope it publishes
(``shared.messaging.signatures``); the log itself stays unsigned.

A broker that lost the topic (the embedded Tansu keeps topics in memory only)
is noticed at start: the topic is gone, or the last message the broker once
acknowledged is no longer at its offset. The relay then publishes its whole
log again.
"""

from __future__ import annotations

import asyncio

import structlog
from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import Counter, Gauge

from shared.domain.events import RecordedEvent
from shared.eventstore import EventStore
from shared.messaging.kafka import ensure_topic, message_at, topic_exists
from shared.messaging.kafka_clients import producer_options
from shared.messaging.signatures import sign
from shared.names import relay_checkpoint
from shared.readmodel.database import ReadModelDB, save_checkpoint

log = structlog.get_logger(__name__)

RELAYED = Counter("relay_events_published_total", "Events acknowledged by the broker", ["topic"])
RELAY_POSITION = Gauge("relay_position", "Last store position the broker acknowledged", ["topic"])


def message_headers(event: RecordedEvent) -> list[tuple[str, bytes]]:
    headers = [("event-type", event.type.encode()), ("event-id", str(event.event_id).encode())]
    if event.correlation_id is not None:  # lets a consumer trace without parsing the value
        headers.append(("correlation-id", str(event.correlation_id).encode()))
    return headers


class Relay:
    """Store → topic, at least once, checkpointed in the read-model database."""

    def __init__(
        self,
        store: EventStore,
        db: ReadModelDB,
        bootstrap: str,
        topic: str,
        partitions: int = 3,
        batch_size: int = 1000,
        signer: Ed25519PrivateKey | None = None,
    ) -> None:
        self.store = store
        self.db = db
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.batch_size = batch_size
        self.signer = signer
        self.position = 0
        self.published = 0
        self.marker: str | None = None
        self.standby = False
        self.ready = asyncio.Event()

    @property
    def checkpoint_name(self) -> str:
        return relay_checkpoint(self.topic)

    async def start(self) -> None:
        """Load the checkpoint; start over when the broker has lost what we published."""
        checkpoint = await self.db.checkpoint(self.checkpoint_name)
        self.position, self.published = checkpoint.position, checkpoint.published
        self.marker = checkpoint.marker
        if self.position and not await self._broker_still_has_our_log():
            log.warning("relay.broker_lost_messages", topic=self.topic, acknowledged=self.published)
            self.position, self.published, self.marker = 0, 0, None
            async with self.db.transaction() as conn:
                await save_checkpoint(conn, self.checkpoint_name, 0, 0, None)
        await ensure_topic(self.bootstrap, self.topic, self.partitions)

    async def _broker_still_has_our_log(self) -> bool:
        if not await topic_exists(self.bootstrap, self.topic):
            return False
        if not self.marker:
            return True
        partition, offset, event_id = self.marker.split(":", 2)
        message = await message_at(self.bootstrap, self.topic, int(partition), int(offset))
        return message is not None and dict(message.headers).get("event-id") == event_id.encode()

    async def stand_by(self) -> None:
        """Another replica publishes; this one is ready to take over."""
        self.standby = True
        self.ready.set()

    async def run(self) -> None:
        """Publish forever, following the store live."""
        self.standby = False
        await self.start()
        producer = self._producer()
        try:
            await producer.start()  # inside the try: a stop during start-up still closes it
            self.ready.set()
            async for page in self.store.subscribe_pages(self.position, self.batch_size):
                await self._publish(producer, page)
        finally:
            self.ready.clear()
            await producer.stop()

    async def publish_pending(self) -> int:
        """Publish what the store holds now and return how many events were sent."""
        await self.start()
        producer = self._producer()
        sent = 0
        try:
            await producer.start()
            while page := await self.store.read_all(self.position, self.batch_size):
                await self._publish(producer, page)
                sent += len(page)
        finally:
            await producer.stop()
        return sent

    def _producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            **producer_options(self.bootstrap),
            acks="all",
            # No linger: a lone event (the usual case) goes out at once instead of
            # after a timer. Batching still happens under load, since aiokafka has
            # one request in flight per broker and fills the next batch meanwhile.
            linger_ms=0,
            max_batch_size=256 * 1024,
            request_timeout_ms=30_000,
        )

    async def _publish(self, producer: AIOKafkaProducer, page: list[RecordedEvent]) -> None:
        if self.signer is not None:
            page = [sign(self.signer, event) for event in page]
        deliveries = [
            await producer.send(
                self.topic,
                key=event.stream.encode(),
                value=event.to_json(),
                headers=message_headers(event),
            )
            for event in page
        ]
        acknowledged = await asyncio.gather(*deliveries)  # every message acknowledged...
        last = acknowledged[-1]
        self.position = page[-1].position
        self.published += len(page)
        self.marker = f"{last.partition}:{last.offset}:{page[-1].event_id}"
        # ...before the checkpoint moves: one upsert, whole by itself, so committed alone
        # (a relay page's BEGIN and COMMIT were two of its three round trips).
        async with self.db.alone() as conn:
            await save_checkpoint(
                conn, self.checkpoint_name, self.position, self.published, self.marker
            )
        RELAYED.labels(self.topic).inc(len(page))
        RELAY_POSITION.labels(self.topic).set(self.position)
