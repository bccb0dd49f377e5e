"""A projection process for the crash test.

Run as ``python -m tests.support.projection_worker STORE_URL DB_URL``.

With ``CRASH_AT_EVENT=N`` it SIGKILLs itself right after writing the rows of the
N-th event it applies, inside the runner's open transaction: after applying,
before committing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.domain.events import RecordedEvent
from shared.eventstore import open_event_store
from shared.projections.runner import Projection, ProjectionRunner
from shared.readmodel.database import ReadModelDB


class AppliedLog(Projection):
    """Not idempotent on purpose: applying an event twice leaves a second row and a bigger sum."""

    name = "applied_log"

    def __init__(self, crash_at: int | None) -> None:
        self.metadata = MetaData()
        self.log = Table(
            "applied_log",
            self.metadata,
            Column("event_id", String(36)),
            Column("position", BigInteger),
        )
        self.totals = Table(
            "applied_totals",
            self.metadata,
            Column("stream", String(100), primary_key=True),
            Column("amount", Integer, nullable=False),
        )
        self.crash_at = crash_at
        self.applied = 0

    async def apply(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        await conn.execute(
            self.log.insert().values(event_id=str(event.event_id), position=event.position)
        )
        t = self.totals
        changed = await conn.execute(
            t.update()
            .where(t.c.stream == event.stream)
            .values(amount=t.c.amount + event.data["amount"])
        )
        if changed.rowcount == 0:
            await conn.execute(t.insert().values(stream=event.stream, amount=event.data["amount"]))
        self.applied += 1
        if self.applied == self.crash_at:
            os.kill(os.getpid(), signal.SIGKILL)


async def main(store_url: str, db_url: str) -> None:
    crash_at = int(os.environ["CRASH_AT_EVENT"]) if os.environ.get("CRASH_AT_EVENT") else None
    store = await open_event_store(store_url)
    db = await ReadModelDB.open(db_url)
    runner = ProjectionRunner(store, db, AppliedLog(crash_at), batch_size=500)
    applied = await runner.catch_up()
    print(f"applied {applied} from position", runner.position)
    await db.close()
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
