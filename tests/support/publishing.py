"""A stand-in for another context in tests: its own store, relayed to its real topic.

The stand-in for identity signs what it publishes with the run's identity key
(``tests.support.keys``), as identity's relay does: services apply only signed facts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from shared.eventstore import EventStore, open_event_store
from shared.messaging.relay import Relay
from shared.readmodel.database import ReadModelDB
from tests.support.keys import identity_key


@contextlib.asynccontextmanager
async def publishing_context(
    context: str, directory: Path, bootstrap: str, topic_prefix: str
) -> AsyncIterator[EventStore]:
    """A SQLite store whose events a running relay publishes to ``<prefix><context>.events``."""
    store = await open_event_store(f"sqlite:///{directory}/{context}.db")
    db = await ReadModelDB.open(f"sqlite:///{directory}/{context}-read.db")
    signer = identity_key() if context == "identity" else None
    relay = Relay(store, db, bootstrap, f"{topic_prefix}{context}.events", signer=signer)
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
