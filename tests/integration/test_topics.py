"""A context's topic keeps its whole history; one that does not is pointed out."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from structlog.testing import capture_logs

from shared.messaging.kafka import ensure_topic, topic_retention

WEEK_MS = str(7 * 24 * 3600 * 1000)


async def retention_of(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await topic_retention(admin, topic)
    finally:
        await admin.close()


async def test_a_topic_made_by_a_service_keeps_every_event(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}clients.events"
    await ensure_topic(kafka_bootstrap, topic)
    assert await retention_of(kafka_bootstrap, topic) == {
        "retention.ms": "-1",
        "retention.bytes": "-1",
    }


async def test_an_existing_topic_that_drops_old_events_is_logged_and_left_alone(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}departments.events"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:  # as a broker's defaults (or an operator) made it
        await admin.create_topics([NewTopic(topic, 3, 1, topic_configs={"retention.ms": WEEK_MS})])
    finally:
        await admin.close()

    with capture_logs() as logs:
        await ensure_topic(kafka_bootstrap, topic)

    warnings = [e for e in logs if e["event"] == "kafka.topic_drops_old_events"]
    assert len(warnings) == 1 and warnings[0]["topic"] == topic
    assert warnings[0]["retention_ms"] == WEEK_MS
    assert "retention.ms=-1" in warnings[0]["fix"]
    assert (await retention_of(kafka_bootstrap, topic))["retention.ms"] == WEEK_MS
