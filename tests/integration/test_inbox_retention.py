"""The inbox remembers handled events for a retention, then forgets them, in chunks."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from devtools import devbroker
from shared.domain.events import Actor, RecordedEvent
from shared.messaging.consumer import InboxConsumer, prune_inbox
from shared.readmodel.database import ReadModelDB, inbox
from tests.integration.test_service_runtime import ROOT, service_env, wait_ready

RETENTION = timedelta(days=14)


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'read.db'}"
    postgres: str = request.getfixturevalue("postgres_url")
    return postgres


def event(n: int) -> RecordedEvent:
    return RecordedEvent(
        position=n, stream=f"client-{n}", stream_version=1, event_id=uuid.uuid4(),
        type="ClientRegistered", schema_version=1, occurred_at=datetime.now(UTC),
        correlation_id=uuid.uuid4(), causation_id=None, actor=Actor("system", "system"),
        data={"n": n},
    )  # fmt: skip


async def entries(db: ReadModelDB) -> dict[str, datetime | None]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(select(inbox.c.event_id, inbox.c.handled_at))
        return {r.event_id: r.handled_at for r in rows}


async def age(db: ReadModelDB, events: list[RecordedEvent], by: timedelta) -> None:
    async with db.transaction() as conn:
        for e in events:
            await conn.execute(
                update(inbox)
                .where(inbox.c.event_id == str(e.event_id))
                .values(handled_at=datetime.now(UTC) - by)
            )


async def test_entries_older_than_the_retention_go_and_newer_ones_still_stop_redelivery(
    db_url: str,
) -> None:
    handled: list[int] = []

    async def handler(_: object, e: RecordedEvent) -> None:
        handled.append(e.data["n"])

    db = await ReadModelDB.open(db_url)
    try:
        consumer = InboxConsumer("tickets.clients", "127.0.0.1:1", ["clients.events"], db, handler)
        events = [event(n) for n in range(7)]
        await consumer.handle(events)
        old, recent = events[:5], events[5:]
        await age(db, old, RETENTION + timedelta(hours=1))
        await age(db, recent, RETENTION - timedelta(hours=1))

        # Two at a time: three transactions for five entries.
        removed = await prune_inbox(db, datetime.now(UTC) - RETENTION, chunk=2)

        assert removed == 5
        assert set(await entries(db)) == {str(e.event_id) for e in recent}
        handled.clear()
        await consumer.handle(recent)  # redelivered within the retention: skipped
        assert handled == [] and consumer.skipped == 2
        assert await prune_inbox(db, datetime.now(UTC) - RETENTION) == 0
    finally:
        await db.close()


async def test_an_inbox_made_before_the_retention_gains_its_column_and_loses_nothing(
    db_url: str,
) -> None:
    events = [event(n) for n in range(3)]
    db = await ReadModelDB.open(db_url)
    try:
        async with db.transaction() as conn:  # the table as versions before made it
            await conn.execute(text("DROP TABLE inbox"))
            await conn.execute(
                text(
                    "CREATE TABLE inbox (consumer VARCHAR(200) NOT NULL, "
                    "event_id VARCHAR(36) NOT NULL, PRIMARY KEY (consumer, event_id))"
                )
            )
            for e in events:
                await conn.execute(
                    text("INSERT INTO inbox VALUES ('tickets.clients', :id)"),
                    {"id": str(e.event_id)},
                )
    finally:
        await db.close()

    db = await ReadModelDB.open(db_url)  # a service's start after the upgrade
    try:
        assert await entries(db) == {str(e.event_id): None for e in events}
        # Pruning stamps them instead of removing them: they are kept one retention.
        assert await prune_inbox(db, datetime.now(UTC) - RETENTION) == 0
        stamped = await entries(db)
        assert set(stamped) == {str(e.event_id) for e in events}
        assert all(
            at is not None and datetime.now(UTC) - at < timedelta(minutes=1)
            for at in stamped.values()
        )
        handled: list[int] = []

        async def handler(_: object, e: RecordedEvent) -> None:
            handled.append(e.data["n"])

        consumer = InboxConsumer("tickets.clients", "127.0.0.1:1", ["clients.events"], db, handler)
        await consumer.handle(events)
        assert handled == []
    finally:
        await db.close()


async def test_a_running_service_prunes_its_inbox(
    postgres_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    old, recent = event(1), event(2)
    db = await ReadModelDB.open(postgres_url)
    try:
        async with db.transaction() as conn:
            for e, handled_at in ((old, 20), (recent, 2)):
                await conn.execute(
                    inbox.insert().values(
                        consumer="tickets.clients",
                        event_id=str(e.event_id),
                        handled_at=datetime.now(UTC) - timedelta(days=handled_at),
                    )
                )
        port = devbroker.free_port()
        env = service_env(postgres_url, kafka_bootstrap, topic_prefix, port)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.tickets", env=env, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            await wait_ready(f"http://127.0.0.1:{port}")
            deadline = time.monotonic() + 30
            while str(old.event_id) in await entries(db):
                assert time.monotonic() < deadline, "the 20-day-old entry was never pruned"
                await asyncio.sleep(0.2)
            assert str(recent.event_id) in await entries(db)
        finally:
            process.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(process.communicate(), 20)
        assert b'"message": "inbox.pruned"' in output, output
    finally:
        await db.close()
