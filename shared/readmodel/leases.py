"""One replica at a time runs each background job that must not run twice.

Several replicas of a service share one read-model database. Two projection
runners applying the same events to the same rows would apply them twice, and
two relays would publish everything twice. So each such job runs under a lease:

* PostgreSQL: a session advisory lock. All of a process's leases live on one
  dedicated connection, outside the read-model pool (a process with ten
  projections holds one connection for them, not ten, and never starves the
  pool its projections write through). The connection is pinged; when it is
  lost, the locks went with it, so every job holding one is stopped and
  retried (and re-takes its lease on a new connection).
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
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from shared.readmodel.database import ReadModelDB

PING_SECONDS = 5.0
RETRY_SECONDS = 1.0


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock``."""
    return zlib.crc32(name.encode()) - 2**31


class LeaseLost(Exception):
    """The connection holding the lease is gone; the job was stopped (and will be retried)."""


class LeaseBusy(Exception):
    """Another process holds the lease ``name`` (a running service, say)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"another process holds the lease {name}")
        self.name = name


Job = Callable[[], Coroutine[Any, Any, None]]


class Leases:
    """The leases of one process on one read-model database."""

    def __init__(self, db: ReadModelDB) -> None:
        self.db = db
        self._engine: AsyncEngine | None = None
        self._conn: AsyncConnection | None = None
        # Statements on the one connection go one at a time.
        self._io = asyncio.Lock()
        # Set when the current connection is lost; replaced with each new connection.
        self._lost = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    async def run(self, name: str, job: Job, standing_by: Job | None = None) -> None:
        """Run ``job`` while holding the lease ``name``; ``standing_by`` runs while waiting."""
        if self.db.dialect == "postgresql":
            await self._run_postgres(name, job, standing_by)
        else:
            await _run_with_file_lock(self.db, name, job, standing_by)

    @contextlib.asynccontextmanager
    async def holding_now(self, names: Sequence[str]) -> AsyncIterator[None]:
        """Hold every lease in ``names`` for the block, without waiting: ``LeaseBusy``
        names the first one another process holds (and none is held then).

        For work that must not run beside the jobs those leases guard, such as a
        rebuild of read models while their service runs; a service starting
        meanwhile stands by until the block ends.
        """
        if self.db.dialect != "postgresql":
            async with _file_locks(self.db, names):
                yield
            return
        taken: list[int] = []
        try:
            for name in names:
                key = lock_key(name)
                if not await self._try_lock(key):
                    raise LeaseBusy(name)
                taken.append(key)
            yield
        finally:
            for key in reversed(taken):
                with contextlib.suppress(Exception):
                    await self._unlock(key)

    async def close(self) -> None:
        """Drop the connection: every lock this process held is released with it."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watcher
        await self._drop()
        if self._engine is not None:
            await self._engine.dispose()

    async def _run_postgres(self, name: str, job: Job, standing_by: Job | None) -> None:
        key = lock_key(name)
        while not await self._try_lock(key):
            if standing_by is not None:
                await standing_by()
            await asyncio.sleep(RETRY_SECONDS)
        lost = self._lost
        working = asyncio.create_task(job())
        losing = asyncio.create_task(lost.wait())
        try:
            await asyncio.wait({working, losing}, return_when=asyncio.FIRST_COMPLETED)
            if lost.is_set():
                raise LeaseLost(name)
            working.result()
        finally:
            for task in (working, losing):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.gather(working, losing)
            if not lost.is_set():
                with contextlib.suppress(Exception):
                    await self._unlock(key)

    async def _try_lock(self, key: int) -> bool:
        return bool(await self._execute("SELECT pg_try_advisory_lock(:k)", key))

    async def _unlock(self, key: int) -> None:
        await self._execute("SELECT pg_advisory_unlock(:k)", key)

    async def _execute(self, sql: str, key: int | None = None) -> Any:
        async with self._io:
            conn = await self._connection()
            try:
                return (await conn.execute(text(sql), {"k": key})).scalar()
            except Exception:
                await self._lose()
                raise

    async def _connection(self) -> AsyncConnection:
        if self._conn is None:
            if self._engine is None:
                self._engine = create_async_engine(self.db.engine.url, poolclass=NullPool)
            # Autocommit: a lock outlives statements, and no transaction stays open.
            conn = await self._engine.connect()
            self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            self._lost = asyncio.Event()
            if self._watcher is None or self._watcher.done():
                self._watcher = asyncio.create_task(self._watch(), name="leases:ping")
        return self._conn

    async def _watch(self) -> None:
        while self._conn is not None:
            await asyncio.sleep(PING_SECONDS)
            with contextlib.suppress(Exception):
                await self._execute("SELECT 1")

    async def _lose(self) -> None:
        """The connection failed: its locks are gone; stop their jobs, reconnect on next use."""
        self._lost.set()
        await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


def _lock_file(db: ReadModelDB, name: str) -> Path:
    database = db.engine.url.database or "memory"
    return Path(f"{database}.lease-{name.replace(':', '-').replace('/', '-')}")


@contextlib.asynccontextmanager
async def _file_locks(db: ReadModelDB, names: Sequence[str]) -> AsyncIterator[None]:
    fds: list[int] = []
    try:
        for name in names:
            fd = os.open(_lock_file(db, name), os.O_RDWR | os.O_CREAT, 0o600)
            fds.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LeaseBusy(name) from None
        yield
    finally:
        for fd in fds:
            os.close(fd)  # closing releases the flock


async def _run_with_file_lock(
    db: ReadModelDB, name: str, job: Job, standing_by: Job | None
) -> None:
    fd = os.open(_lock_file(db, name), os.O_RDWR | os.O_CREAT, 0o600)
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
