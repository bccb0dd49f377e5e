"""Rebuilding read models from the log: every projection of a service in one pass.

``ProjectionRunner.rebuild`` replays the log into one projection; a service
with four read models would read its log four times. ``rebuild_all`` drops
them all, then reads each page once and applies it to every projection in one
transaction that also moves each one's checkpoint (so a crash mid-way leaves
every read model at the same, consistent position, and a restart of the
service simply continues from there). The next page is read while the current
one is applied: the store's database works while Python applies.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from shared.events import RecordedEvent
from shared.eventstore import EventStore
from shared.projections import Progress, Projection, checkpoint_name
from shared.readmodel import ReadModelDB, checkpoints, save_checkpoint

REBUILD_PAGE = 5_000


async def drop(db: ReadModelDB, projections: Sequence[Projection]) -> None:
    """Drop the projections' tables and checkpoints, then create the tables empty."""
    async with db.transaction() as conn:
        for projection in projections:
            await conn.run_sync(projection.metadata.drop_all)
            await conn.execute(
                checkpoints.delete().where(checkpoints.c.name == checkpoint_name(projection.name))
            )
    for projection in projections:
        for metadata in projection.reads:
            await db.create_tables(metadata)
        await db.create_tables(projection.metadata)


async def apply_page(
    db: ReadModelDB, projections: Sequence[Projection], page: list[RecordedEvent]
) -> None:
    """One page into every projection, checkpoints included, in one transaction."""
    async with db.transaction() as conn:
        for projection in projections:
            await projection.apply_all(conn, page)
            await save_checkpoint(conn, checkpoint_name(projection.name), page[-1].position)


async def rebuild_all(
    store: EventStore,
    db: ReadModelDB,
    projections: Sequence[Projection],
    progress: Progress | None = None,
    page_size: int = REBUILD_PAGE,
) -> int:
    """Drop ``projections`` and replay the whole log into them; returns the events applied."""
    await drop(db, projections)
    applied = 0
    reading = asyncio.create_task(store.read_all(0, page_size))
    try:
        while page := await reading:
            reading = asyncio.create_task(store.read_all(page[-1].position, page_size))
            await apply_page(db, projections, page)
            applied += len(page)
            if progress is not None:
                progress(len(page))
    finally:
        if not reading.done():
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reading
    return applied
