"""Reading a whole topic in tests, straight from the broker."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from shared.messaging.kafka import partitions_of
from shared.messaging.kafka_clients import consumer_options


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
