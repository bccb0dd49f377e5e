"""One replica at a time runs each background job that must not run twice.

Several replicas of a service share one read-model database. Two projection
runners applying the same events to the same rows would apply them twice, and
two relays would publish everything twice. So each such job runs under a lease:

* PostgreSQL: a session advisory lock on a connection held for the job's life;
  the connection is pinged, and the job is stopped when it is lost (the lock
  went with it).
* SQLite: an exclusive ``flock`` on a file beside the database (the embedded
  default runs on one host).

A replica that does not hold the lease stands by and keeps trying.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import zlib
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from sqlalchemy import text

from shared.readmodel import ReadModelDB

PING_SECONDS = 5.0
RETRY_SECONDS = 1.0


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock``."""
    return zlib.crc32(name.encode()) - 2**31


class LeaseLost(Exception):
    """The connection holding the lease is gone; the job was stopped (and will be retried)."""


Job = Callable[[], Coroutine[Any, Any, None]]


async def run_leased(db: ReadModelDB, name: str, job: Job, standing_by: Job | None = None) -> None:
    """Run ``job`` while holding the lease ``name``; ``standing_by`` runs while waiting for it."""
    if db.dialect == "postgresql":
        await _run_postgres(db, name, job, standing_by)
    else:
        await _run_with_file_lock(db, name, job, standing_by)


async def _run_postgres(db: ReadModelDB, name: str, job: Job, standing_by: Job | None) -> None:
    key = lock_key(name)
    async with db.engine.connect() as conn:
        while not (
            await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
        ).scalar():
            await conn.rollback()  # no transaction left open between tries
            if standing_by is not None:
                await standing_by()
            await asyncio.sleep(RETRY_SECONDS)
        await conn.commit()

        async def watch() -> None:
            while True:
                await asyncio.sleep(PING_SECONDS)
                await conn.execute(text("SELECT 1"))
                await conn.commit()

        working = asyncio.create_task(job())
        watching = asyncio.create_task(watch())
        try:
            done, _ = await asyncio.wait({working, watching}, return_when=asyncio.FIRST_COMPLETED)
            if watching in done:
                # The connection failed, and the lock went with it: stop at once.
                working.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await working
                raise LeaseLost(name) from watching.exception()
            working.result()
        finally:
            for task in (working, watching):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.gather(working, watching)
            with contextlib.suppress(Exception):
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                await conn.commit()


async def _run_with_file_lock(
    db: ReadModelDB, name: str, job: Job, standing_by: Job | None
) -> None:
    database = db.engine.url.database or "memory"
    path = Path(f"{database}.lease-{name.replace(':', '-').replace('/', '-')}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if standing_by is not None:
                    await standing_by()
                await asyncio.sleep(RETRY_SECONDS)
        await job()
    finally:
        os.close(fd)  # closing releases the flock
