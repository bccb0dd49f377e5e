"""Kafka plumbing shared by the relay and the consumers: topic names, creation, offsets."""

from __future__ import annotations

import contextlib

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError


def topic_of(context: str, prefix: str = "") -> str:
    """``tickets`` → ``tickets.events`` (one topic per context, DESIGN §5)."""
    return f"{prefix}{context}.events"


async def ensure_topic(bootstrap: str, topic: str, partitions: int = 3) -> None:
    """Create the topic if it does not exist (idempotent, safe between replicas)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic in await admin.list_topics():
            return
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(
                [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
            )
    finally:
        await admin.close()


async def topic_exists(bootstrap: str, topic: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return topic in await admin.list_topics()
    finally:
        await admin.close()


async def message_at(
    bootstrap: str, topic: str, partition: int, offset: int
) -> ConsumerRecord[bytes, bytes] | None:
    """The message stored at an offset, or None when the broker does not have it.

    Used instead of end offsets, which some Kafka-protocol brokers (Tansu) count
    per record batch rather than per message.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        batch = await consumer.getmany(tp, timeout_ms=3000, max_records=1)
        records = batch.get(tp, [])
        return records[0] if records and records[0].offset == offset else None
    finally:
        await consumer.stop()


__all__ = ["KafkaError", "ensure_topic", "message_at", "topic_exists", "topic_of"]
