"""A stand-in for another context in tests: its own store, relayed to its real topic."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from shared.eventstore import EventStore, open_event_store
from shared.messaging.relay import Relay
from shared.readmodel.database import ReadModelDB


@contextlib.asynccontextmanager
async def publishing_context(
    context: str, directory: Path, bootstrap: str, topic_prefix: str
) -> AsyncIterator[EventStore]:
    """A SQLite store whose events a running relay publishes to ``<prefix><context>.events``."""
    store = await open_event_store(f"sqlite:///{directory}/{context}.db")
    db = await ReadModelDB.open(f"sqlite:///{directory}/{context}-read.db")
    relay = Relay(store, db, bootstrap, f"{topic_prefix}{context}.events")
    running = asyncio.create_task(relay.run())
    try:
        await asyncio.wait_for(relay.ready.wait(), 30)
        yield store
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await db.close()
        await store.close()
