"""Kafka plumbing shared by the relay and the consumers: topic names, creation, offsets."""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from shared.messaging.kafka_clients import admin_options, consumer_options

log = structlog.get_logger(__name__)


TOPIC_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1"}
"""A context's topic keeps every event: a consumer that starts later (a new
service, a copy filled again) needs the context's whole history, and Kafka's
default (7 days) would drop it. Not compacted: a stream's events are changes,
not states."""


async def ensure_topic(bootstrap: str, topic: str, partitions: int = 3) -> None:
    """Create the topic, keeping every event, if it does not exist (idempotent, safe
    between replicas). One that exists and drops old events is logged, not changed:
    its retention is then an operator's choice."""
    admin = AIOKafkaAdminClient(**admin_options(bootstrap))
    await admin.start()
    try:
        if topic in await admin.list_topics():
            await _warn_of_limited_retention(admin, topic)
            return
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(
                [
                    NewTopic(
                        topic,
                        num_partitions=partitions,
                        replication_factor=1,
                        topic_configs=TOPIC_CONFIG,
                    )
                ]
            )
    finally:
        await admin.close()


async def topic_retention(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    """The topic's ``retention.*`` settings the broker reports (none: it reports none)."""
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs=None)
    found: dict[str, str] = {}
    for response in await admin.describe_configs([resource]):
        for _error, _message, _kind, _name, entries in response.resources:
            for entry in entries:
                if entry[0].startswith("retention.") and entry[1] is not None:
                    found[entry[0]] = entry[1]
    return found


async def _warn_of_limited_retention(admin: AIOKafkaAdminClient, topic: str) -> None:
    try:
        retention = await topic_retention(admin, topic)
    except KafkaError:
        return  # a broker that cannot describe configs: nothing to say
    limited = {k: v for k, v in retention.items() if k in TOPIC_CONFIG and v != "-1"}
    if limited:
        log.warning(
            "kafka.topic_drops_old_events",
            topic=topic,
            **{k.replace(".", "_"): v for k, v in limited.items()},
            fix=f"kafka-configs.sh --alter --entity-type topics --entity-name {topic} "
            "--add-config retention.ms=-1,retention.bytes=-1",
        )


async def topic_exists(bootstrap: str, topic: str) -> bool:
    admin = AIOKafkaAdminClient(**admin_options(bootstrap))
    await admin.start()
    try:
        return topic in await admin.list_topics()
    finally:
        await admin.close()


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    """The topic's partitions, once the consumer's metadata knows them (a few seconds)."""
    for _ in range(50):
        found = consumer.partitions_for_topic(topic)
        if found:
            return set(found)
        # aiokafka's first metadata request asks for an empty list of topics, which
        # Apache Kafka answers with none (Tansu with all), and it refreshes only every
        # few minutes: without a subscription, ask for every topic's metadata now.
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"no partitions known for {topic}")


async def message_at(
    bootstrap: str, topic: str, partition: int, offset: int
) -> ConsumerRecord[bytes, bytes] | None:
    """The message stored at an offset, or None when the broker does not have it.

    Used instead of end offsets, which some Kafka-protocol brokers (Tansu) count
    per record batch rather than per message.
    """
    tp = TopicPartition(topic, partition)
    return (await messages_at(bootstrap, {tp: offset})).get(tp)


async def messages_at(
    bootstrap: str, wanted: dict[TopicPartition, int], timeout: float = 3.0
) -> dict[TopicPartition, ConsumerRecord[bytes, bytes]]:
    """The message at each partition's offset, with one consumer; a partition whose
    broker does not have that offset is left out."""
    if not wanted:
        return {}
    consumer = AIOKafkaConsumer(**consumer_options(bootstrap), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(wanted))
        for tp, offset in wanted.items():
            consumer.seek(tp, offset)
        found: dict[TopicPartition, ConsumerRecord[bytes, bytes]] = {}
        pending = set(wanted)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for tp, records in batch.items():
                if records and records[0].offset == wanted[tp]:
                    found[tp] = records[0]
                pending.discard(tp)
                consumer.pause(tp)
        return found
    finally:
        await consumer.stop()


__all__ = [
    "KafkaError",
    "ensure_topic",
    "message_at",
    "messages_at",
    "partitions_of",
    "topic_exists",
]
