"""Two replicas of a service on one store and one read-model database.

Only one runs each projection and the relay (a lease); the other stands by,
follows the checkpoint (so ``?min_position`` works on both) and takes over when
the first stops. The kernel's event counts are a plain counter, so applying an
event twice would show.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from shared.domain.events import NewEvent
from shared.eventstore import open_event_store
from shared.readmodel.database import ReadModelDB
from shared.runtime.service import ServiceSpec, create_app
from shared.runtime.settings import ServiceSettings
from tests.http_util import serving
from tests.kafka_util import read_topic


@pytest.fixture
def make_replica(
    postgres_url: str, kafka_bootstrap: str, topic_prefix: str
) -> Callable[[], FastAPI]:
    settings = ServiceSettings(
        event_store_url=postgres_url,
        read_model_url=postgres_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
    )
    return lambda: create_app(ServiceSpec(name="clients"), settings)


async def counted(postgres_url: str) -> int:
    db = await ReadModelDB.open(postgres_url)
    async with db.engine.connect() as conn:
        value = (
            await conn.execute(text("SELECT coalesce(sum(count), 0) FROM event_type_counts"))
        ).scalar()
    await db.close()
    return int(value or 0)


async def positions(http: httpx.AsyncClient) -> tuple[int, dict[str, object]]:
    ready = (await http.get("/ready")).json()
    return int(ready["projections"]["event_type_counts"]), ready["relay"]


async def test_one_replica_works_the_other_follows_and_takes_over(
    make_replica: Callable[[], FastAPI],
    postgres_url: str,
    kafka_bootstrap: str,
    topic_prefix: str,
) -> None:
    store = await open_event_store(postgres_url)

    async def write(n: int) -> int:
        last = 0
        for i in range(n):
            last = (
                await store.append(f"client-{i}", [NewEvent(type="ClientNoted", data={})])
            ).position
        return last

    async with contextlib.AsyncExitStack() as first_replica:
        async with contextlib.AsyncExitStack() as second_replica:
            # Both start at the same moment: creating tables must not race.
            first, second = await asyncio.gather(
                first_replica.enter_async_context(serving(make_replica())),
                second_replica.enter_async_context(serving(make_replica())),
            )
            one = await first_replica.enter_async_context(httpx.AsyncClient(base_url=first))
            two = await second_replica.enter_async_context(httpx.AsyncClient(base_url=second))
            head = await write(50)
            for http in (one, two):  # both catch up: one applies, the other follows
                deadline = time.monotonic() + 30
                while (await positions(http))[0] < head:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
            relays = [(await positions(http))[1] for http in (one, two)]
            assert sorted(bool(r.get("standby")) for r in relays) == [False, True]
        # The second replica stopped; the first carries on alone.
        head = await write(25)
        deadline = time.monotonic() + 30
        while (await positions(one))[0] < head:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
    assert await counted(postgres_url) == 75, "an event was counted twice or not at all"

    # A new replica takes over from where the others stopped.
    async with serving(make_replica()) as third, httpx.AsyncClient(base_url=third) as three:
        head = await write(10)
        deadline = time.monotonic() + 30
        while (await positions(three))[0] < head:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
    assert await counted(postgres_url) == 85
    messages = await read_topic(kafka_bootstrap, f"{topic_prefix}clients.events", expect=85)
    assert len(messages) == 85, "the relay published something twice"
    await store.close()
