"""Reading a whole topic in tests, straight from the broker, and putting forged facts on one."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from shared.access.control import StaffAccessChanged
from shared.access.control import registry as access_registry
from shared.domain.events import Actor, RecordedEvent
from shared.messaging.kafka import partitions_of
from shared.messaging.kafka_clients import consumer_options, producer_options


async def read_topic(
    bootstrap: str, topic: str, expect: int, timeout: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every message of ``topic`` (all partitions, from the start) once ``expect`` are there."""
    consumer = AIOKafkaConsumer(**consumer_options(bootstrap), enable_auto_commit=False)
    await consumer.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        partitions = [TopicPartition(topic, p) for p in await partitions_of(consumer, topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        messages: list[ConsumerRecord[bytes, bytes]] = []
        while len(messages) < expect and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                messages.extend(records)
        # Anything beyond ``expect`` (a duplicate) shows up here too.
        for records in (await consumer.getmany(timeout_ms=300)).values():
            messages.extend(records)
        return messages
    finally:
        await consumer.stop()


async def produce_raw(bootstrap: str, topic: str, *envelopes: RecordedEvent) -> None:
    """Straight onto the topic, as anyone who can reach the broker could."""
    producer = AIOKafkaProducer(**producer_options(bootstrap), acks="all")
    await producer.start()
    try:
        for envelope in envelopes:
            await producer.send_and_wait(topic, envelope.to_json(), key=envelope.stream.encode())
    finally:
        await producer.stop()


def access_fact_envelope(fact: StaffAccessChanged, version: int, position: int) -> RecordedEvent:
    """The fact as identity's relay would put it on the topic, but not by identity (unsigned).

    On the member's own stream (its partition, in order), at ``version``: far ahead of
    the real facts, a forgery that were taken would shadow every later real one.
    """
    encoded = access_registry.encode(fact)
    return RecordedEvent(
        position=position,
        stream=f"staff-{fact.staff_id}",
        stream_version=version,
        event_id=uuid.uuid4(),
        type=encoded.type,
        schema_version=encoded.schema_version,
        occurred_at=datetime.now(UTC),
        correlation_id=None,
        causation_id=None,
        actor=Actor(id="system", kind="system"),
        data=orjson.loads(orjson.dumps(encoded.data)),
    )
