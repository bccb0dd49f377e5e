"""Kafka plumbing shared by the relay and the consumers: topic names, creation, offsets."""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

CONTEXTS = ("identity", "departments", "clients", "tickets", "notifier")


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


async def topic_message_count(bootstrap: str, topic: str) -> int | None:
    """Messages ever written to a topic (sum of end offsets); None when it does not exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            return None
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        for _ in range(50):
            if partitions:
                break
            await consumer.topics()  # refresh metadata
            await asyncio.sleep(0.1)
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return None
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return sum(ends.values())
    finally:
        await consumer.stop()


__all__ = ["CONTEXTS", "KafkaError", "ensure_topic", "topic_message_count", "topic_of"]
