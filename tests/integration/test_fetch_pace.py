"""A quiet consumer asks the broker seldom, and a fact after the quiet still comes
(``shared.messaging.kafka_clients.pace_fetches``), on the session's real broker.

On Tansu a consumer left at its 10 ms wait asks about a hundred times a second;
Apache Kafka holds each fetch until data comes or its wait ends. Either way a quiet
consumer must ask about ten times a second at most, and the first fact that comes
gives it the short wait back. Counting the fetch requests wraps the consumer's
client, under the pacing, so the count does not depend on what it counts.
"""

from __future__ import annotations

import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.protocol.fetch import FetchRequest

from shared.messaging.kafka import ensure_topic
from shared.messaging.kafka_clients import (
    IDLE_FETCH_WAIT_MS,
    QUIET_SECONDS,
    config_of,
    consumer_options,
    pace_fetches,
    producer_options,
)


def count_fetches(consumer: AIOKafkaConsumer) -> list[float]:
    """The moments the consumer sends a fetch request (appended as it sends them)."""
    sent: list[float] = []
    send = consumer._client.send

    async def counting(node_id: int, request: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(request, FetchRequest):
            sent.append(time.monotonic())
        return await send(node_id, request, *args, **kwargs)

    consumer._client.send = counting
    return sent


async def test_a_quiet_consumer_asks_seldom_and_the_next_fact_still_arrives(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}paced"
    await ensure_topic(kafka_bootstrap, topic)
    consumer = AIOKafkaConsumer(
        topic, **consumer_options(kafka_bootstrap), group_id=None, auto_offset_reset="latest"
    )
    producer = AIOKafkaProducer(**producer_options(kafka_bootstrap))
    await consumer.start()
    await producer.start()
    try:
        pace_fetches(consumer, kafka_bootstrap)
        sent = count_fetches(consumer)
        # Quiet past QUIET_SECONDS, then a second of it, counted.
        assert await consumer.getmany(timeout_ms=int(QUIET_SECONDS * 1000) + 300) == {}
        counted_from = time.monotonic()
        assert await consumer.getmany(timeout_ms=1000) == {}
        seconds = time.monotonic() - counted_from
        asked = sum(1 for moment in sent if moment >= counted_from)
        # About 1000 / IDLE_FETCH_WAIT_MS a second; a 10 ms wait would be ~100.
        assert asked / seconds <= 1.5 * 1000 / IDLE_FETCH_WAIT_MS, (asked, seconds)

        await producer.send_and_wait(topic, b"after the quiet")
        arrived: dict[Any, list[Any]] = {}
        deadline = time.monotonic() + 10
        while not arrived and time.monotonic() < deadline:
            arrived = await consumer.getmany(timeout_ms=500)
        assert [m.value for ms in arrived.values() for m in ms] == [b"after the quiet"]
        # The fact gave the consumer its short wait back.
        assert consumer._fetcher._fetch_max_wait_ms == config_of(kafka_bootstrap).fetch_wait_ms
    finally:
        await producer.stop()
        await consumer.stop()
