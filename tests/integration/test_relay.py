"""The relay publishes the store's global order to its topic, at least once."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from devtools import devbroker
from shared.domain.events import NewEvent, RecordedEvent
from shared.eventstore import EventStore, open_event_store
from shared.messaging import relay as relay_module
from shared.messaging.relay import Relay
from shared.readmodel.database import ReadModelDB
from tests.kafka_util import read_topic


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[EventStore]:
    opened = await open_event_store(postgres_url)
    yield opened
    await opened.close()


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[ReadModelDB]:
    opened = await ReadModelDB.open(postgres_url)
    yield opened
    await opened.close()


async def fill(store: EventStore, streams: int, per_stream: int) -> None:
    for s in range(streams):
        await store.append(
            f"ticket-{s}",
            [
                NewEvent(
                    type="TicketOpened" if i == 0 else "TicketReplied",
                    data={"i": i},
                    correlation_id=uuid.uuid5(uuid.NAMESPACE_DNS, f"request-{s}")
                    if s % 2
                    else None,
                )
                for i in range(per_stream)
            ],
        )


async def test_relay_publishes_every_event_with_key_headers_and_envelope(
    store: EventStore, db: ReadModelDB, kafka_bootstrap: str, topic_prefix: str
) -> None:
    await fill(store, streams=20, per_stream=5)
    topic = f"{topic_prefix}tickets.events"
    relay = Relay(store, db, kafka_bootstrap, topic)
    assert await relay.publish_pending() == 100

    messages = await read_topic(kafka_bootstrap, topic, expect=100)
    assert len(messages) == 100
    stored = {e.event_id: e for e in await store.read_all(0, 1000)}
    for message in messages:
        event = RecordedEvent.from_json(message.value)
        assert stored[event.event_id] == event
        assert message.key == event.stream.encode()
        expected = {"event-type": event.type.encode(), "event-id": str(event.event_id).encode()}
        if event.correlation_id is not None:
            expected["correlation-id"] = str(event.correlation_id).encode()
        assert dict(message.headers) == expected
    # Per stream (= per key), the topic keeps the store's order.
    by_stream: dict[str, list[int]] = {}
    for message in sorted(messages, key=lambda m: (m.partition, m.offset)):
        event = RecordedEvent.from_json(message.value)
        by_stream.setdefault(event.stream, []).append(event.stream_version)
    assert all(v == [1, 2, 3, 4, 5] for v in by_stream.values())
    assert sum(1 for m in messages if dict(m.headers).get("correlation-id")) == 50
    # The checkpoint moved only after the acknowledgements; a second run sends nothing.
    checkpoint = await db.checkpoint(relay.checkpoint_name)
    assert (checkpoint.position, checkpoint.published) == (await store.head_position(), 100)
    assert await Relay(store, db, kafka_bootstrap, topic).publish_pending() == 0


async def test_a_running_relay_follows_the_store_live(
    store: EventStore, db: ReadModelDB, kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}clients.events"
    relay = Relay(store, db, kafka_bootstrap, topic)
    running = asyncio.create_task(relay.run())
    try:
        await asyncio.wait_for(relay.ready.wait(), 30)
        await fill(store, streams=3, per_stream=2)
        messages = await read_topic(kafka_bootstrap, topic, expect=6)
        assert sorted(RecordedEvent.from_json(m.value).position for m in messages) == [
            e.position for e in await store.read_all(0)
        ]
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def test_a_crash_before_the_checkpoint_publishes_the_page_again(
    store: EventStore,
    db: ReadModelDB,
    kafka_bootstrap: str,
    topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At least once: acknowledged but not checkpointed means sent again, never lost."""
    await fill(store, streams=4, per_stream=5)
    topic = f"{topic_prefix}departments.events"

    async def crash(*_: object, **__: object) -> None:
        raise RuntimeError("killed between the broker's ack and the checkpoint")

    monkeypatch.setattr(relay_module, "save_checkpoint", crash)
    with pytest.raises(RuntimeError):
        await Relay(store, db, kafka_bootstrap, topic).publish_pending()
    monkeypatch.undo()

    assert await Relay(store, db, kafka_bootstrap, topic).publish_pending() == 20
    messages = await read_topic(kafka_bootstrap, topic, expect=40)
    ids = [RecordedEvent.from_json(m.value).event_id for m in messages]
    assert len(ids) == 40 and len(set(ids)) == 20


async def test_a_fresh_broker_gets_the_whole_log_again(store: EventStore, db: ReadModelDB) -> None:
    """The embedded broker keeps topics in memory: after its restart the relay republishes."""
    await fill(store, streams=5, per_stream=3)
    port = devbroker.free_port()
    topic = "identity.events"
    with devbroker.running_tansu(port) as bootstrap:
        assert await Relay(store, db, bootstrap, topic).publish_pending() == 15
        assert await Relay(store, db, bootstrap, topic).publish_pending() == 0
    with devbroker.running_tansu(port) as bootstrap:
        assert await Relay(store, db, bootstrap, topic).publish_pending() == 15
        assert len(await read_topic(bootstrap, topic, expect=15)) == 15
