"""Projections: read models fed from the service's own event store.

A projection applies events to its tables; the runner commits the rows and the
projection's checkpoint in one transaction, so a crash between applying and
committing loses the whole batch, and the restart applies it again from the
old checkpoint: never twice, never lost.

Commands answer with the global position of what they wrote; ``wait_for``
lets a read wait until a read model has reached it (read-your-writes).
A worker that looks for work in a read model and then waits for more
(``moved_since``) waits for a move past the position it noted *before* it
looked, so work that arrived while it looked ends the wait at once (no lost
wake-up).

A running service feeds all its projections through one ``ProjectionGroup``:
the log is read once per page, and the page goes to every projection in one
transaction with their checkpoints, all moved by one statement (instead of a
read, a transaction and a checkpoint per projection and page). A projection
that fails on a page while the others succeed leaves the group and retries on
its own, and one far
behind the others (a new read model) catches up on its own: neither holds the
others back.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

import structlog
from sqlalchemy import ColumnElement, MetaData, Table
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.domain.events import RecordedEvent
from shared.eventstore import EventStore
from shared.names import checkpoint_name, unfinished_rebuild_name
from shared.observability.supervision import problem_text, retry_forever
from shared.readmodel.database import (
    ReadModelDB,
    checkpoints,
    save_checkpoint,
    save_checkpoints,
)


class Projection(abc.ABC):
    """A read model: its tables and how one event changes them."""

    name: str
    metadata: MetaData
    # Tables it reads but does not own (kept by the service, never dropped by a rebuild).
    reads: tuple[MetaData, ...] = ()
    # Rough microseconds of CPU per event of the log when rebuilding (measured with
    # ``python -m bench.replay``): how a rebuild shares processes (``replay.plan``).
    rebuild_cost: float = 1.0
    # True when each row follows the events of one stream, or is a sum that events of
    # any stream add to in any order: then a rebuild may split the log by stream
    # across processes (``shared.projections.replay``). Not when a row reads another stream's rows.
    partitionable: bool = False
    # The event types it changes rows for, when known: a rebuild then reads only those.
    handles: frozenset[str] | None = None
    # Tables it only ever adds rows to (it never reads, updates or upserts them while
    # applying events): a rebuild on PostgreSQL fills them without their primary key
    # and adds it once, at the end, instead of keeping it up to date row by row.
    keyed_after_load: tuple[Table, ...] = ()

    @property
    def tables(self) -> list[Table]:
        return list(self.metadata.sorted_tables)

    @abc.abstractmethod
    async def apply(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        """Change the rows for one event, inside the runner's transaction."""

    async def apply_all(self, conn: AsyncConnection, events: list[RecordedEvent]) -> None:
        """Change the rows for a batch, in order, inside the runner's transaction.

        One event at a time by default; a busy read model overrides it to write
        a batch in a few statements instead of a few per event.
        """
        for event in events:
            await self.apply(conn, event)


def split_rebuild_rows(projection_name: str) -> ColumnElement[bool]:
    """The ``checkpoints`` rows of a split rebuild: its mark and its parts' checkpoints."""
    own = checkpoint_name(projection_name)
    return (checkpoints.c.name == unfinished_rebuild_name(projection_name)) | (
        checkpoints.c.name.startswith(own + "#", autoescape=True)
    )


async def clear_read_model(conn: AsyncConnection, projection: Projection) -> None:
    """Drop a projection's tables and every checkpoint row of it: its own, its
    partitions' and an unfinished rebuild's mark."""
    await conn.run_sync(projection.metadata.drop_all)
    await conn.execute(
        checkpoints.delete().where(
            (checkpoints.c.name == checkpoint_name(projection.name))
            | split_rebuild_rows(projection.name)
        )
    )


Progress = Callable[[int], None]

log = structlog.get_logger("projections")


class ProjectionRunner:
    """Feeds one projection from the store's global order and tracks its checkpoint."""

    def __init__(
        self,
        store: EventStore,
        db: ReadModelDB,
        projection: Projection,
        batch_size: int = 500,
    ) -> None:
        self.store = store
        self.db = db
        self.projection = projection
        self.batch_size = batch_size
        self.position = 0
        self._advanced = asyncio.Condition()

    @property
    def checkpoint_name(self) -> str:
        return checkpoint_name(self.projection.name)

    async def start(self, *, owner: bool = False) -> None:
        """Create the tables if missing and load the checkpoint.

        ``owner``: called by who runs the projection (under its lease). Then a
        read model a rebuild split by stream left unfinished (its processes stopped
        at different places, so no one position describes it) is dropped and built
        again from the start. Not before the lease: the rebuild may be running."""
        if owner:
            mark = await self.db.checkpoint(unfinished_rebuild_name(self.projection.name))
            if mark.marker is not None:
                log.warning("unfinished rebuild discarded", projection=self.projection.name)
                async with self.db.transaction() as conn:
                    await clear_read_model(conn, self.projection)
        for metadata in self.projection.reads:
            await self.db.create_tables(metadata)
        # A nullable column a later version declared is added to a table made before it
        # (the rows before it have nothing to say there), so no rebuild is needed.
        await self.db.create_tables(self.projection.metadata, add_new_columns=True)
        self.position = (await self.db.checkpoint(self.checkpoint_name)).position

    async def run(self) -> None:
        """Follow the store forever (a catch-up subscription that turns live)."""
        await self.start(owner=True)
        async for page in self.store.subscribe_pages(self.position, self.batch_size):
            await self.apply_batch(page)

    async def apply_batch(self, batch: list[RecordedEvent]) -> None:
        """Apply events and move the checkpoint, atomically."""
        if not batch:
            return
        async with self.db.transaction() as conn:
            await self.projection.apply_all(conn, batch)
            await save_checkpoint(conn, self.checkpoint_name, batch[-1].position)
        await self.advanced(batch[-1].position)

    def unapplied(self, page: list[RecordedEvent]) -> list[RecordedEvent]:
        """The events of ``page`` after this read model's position."""
        if not page or page[0].position > self.position:
            return page
        return [e for e in page if e.position > self.position]

    async def advanced(self, position: int) -> None:
        """Record a committed ``position`` and wake the readers waiting for it."""
        async with self._advanced:
            self.position = max(self.position, position)
            self._advanced.notify_all()

    async def catch_up(self, progress: Progress | None = None) -> int:
        """Apply everything the store holds now; returns how many events were applied."""
        await self.start(owner=True)
        applied = 0
        while page := await self.store.read_all(self.position, self.batch_size):
            await self.apply_batch(page)
            applied += len(page)
            if progress:
                progress(len(page))
        return applied

    async def rebuild(self, progress: Progress | None = None) -> int:
        """Drop the read model and replay the whole log into it."""
        async with self.db.transaction() as conn:
            await clear_read_model(conn, self.projection)
        self.position = 0
        return await self.catch_up(progress)

    async def wait_for(self, position: int, timeout: float = 5.0) -> bool:
        """Wait until the read model has applied ``position``; False on time-out."""
        deadline = time.monotonic() + timeout
        async with self._advanced:
            while self.position < position:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                try:
                    await asyncio.wait_for(self._advanced.wait(), remaining)
                except TimeoutError:
                    return False
        return True

    async def moved_since(self, seen: int, timeout: float) -> bool:
        """Wait until the read model has applied anything past ``seen``; False on time-out.

        ``seen`` is ``position`` as read *before* the caller's round of work (its
        query for due rows): a row that arrived during the round has already
        moved the position past it, so the wait ends at once. Waiting for the
        position at the time of the wait instead would miss that move and sleep
        the whole ``timeout`` with work waiting (the notifier's 1.1 s stalls).
        """
        return await self.wait_for(seen + 1, timeout)

    async def follow_checkpoint(self) -> None:
        """While another replica runs this projection, track how far it has got."""
        position = (await self.db.checkpoint(self.checkpoint_name)).position
        if position > self.position:
            async with self._advanced:
                self.position = position
                self._advanced.notify_all()


class ProjectionGroup:
    """Several projections of one store fed by one subscription (see the module docstring).

    Each keeps its own runner, checkpoint and position (``wait_for`` works per
    read model); the group starts from the lowest checkpoint and gives each only
    the events after its own. ``problems`` (the service's) names a read model
    that has left the group and what failed.
    """

    def __init__(
        self,
        store: EventStore,
        db: ReadModelDB,
        runners: Sequence[ProjectionRunner],
        batch_size: int = 500,
        problems: dict[str, str] | None = None,
    ) -> None:
        self.store = store
        self.db = db
        self.runners = list(runners)
        self.batch_size = batch_size
        self.problems = problems if problems is not None else {}
        self.members: list[ProjectionRunner] = []
        self._apart: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        """Follow the store forever; the read models that left run beside it.

        A read model more than a page behind the most advanced one (new, or
        rebuilt from an older log) catches up on its own runner instead: in the
        group, the others would wait for it.
        """
        for runner in self.runners:
            await runner.start(owner=True)
        lead = max((r.position for r in self.runners), default=0)
        self.members = [r for r in self.runners if r.position >= lead - self.batch_size]
        for runner in self.runners:
            if runner not in self.members:
                self._start_apart(runner)
        try:
            while self.members:
                after = min(r.position for r in self.members)
                async for page in self.store.subscribe_pages(after, self.batch_size):
                    if not await self._apply(page):
                        break  # a member left: start again from the others' lowest position
            await asyncio.gather(*self._apart.values())
        finally:
            for task in self._apart.values():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.gather(*self._apart.values())
            self._apart.clear()

    async def follow_checkpoints(self) -> None:
        """While another replica runs the group, track how far each read model has got."""
        for runner in self.runners:
            await runner.follow_checkpoint()

    async def _apply(self, page: list[RecordedEvent]) -> bool:
        """One page to every member in one transaction; False when a member had to leave."""
        end = page[-1].position
        try:
            async with self.db.transaction() as conn:
                moved = []
                for runner in self.members:
                    events = runner.unapplied(page)
                    if events:
                        await runner.projection.apply_all(conn, events)
                        moved.append(runner.checkpoint_name)
                await save_checkpoints(conn, moved, end)  # one statement for the group
        except Exception:
            return await self._apply_one_by_one(page)
        for runner in self.members:
            await runner.advanced(end)
        return True

    async def _apply_one_by_one(self, page: list[RecordedEvent]) -> bool:
        """After a failed page: each member in its own transaction. Those that fail while
        others succeed leave the group; if all fail (the database is down, say), raise."""
        failed: list[tuple[ProjectionRunner, Exception]] = []
        for runner in self.members:
            try:
                await runner.apply_batch(runner.unapplied(page))
            except Exception as exc:
                failed.append((runner, exc))
        if len(failed) == len(self.members):
            raise failed[0][1]
        for runner, error in failed:
            name = runner.projection.name
            self.members.remove(runner)
            self.problems[f"projection:{name}"] = problem_text(error)
            log.warning("projection.left_group", projection=name, error=str(error))
            self._start_apart(runner)
        return not failed

    def _start_apart(self, runner: ProjectionRunner) -> None:
        name = runner.projection.name
        self._apart[name] = asyncio.create_task(self._alone(runner), name=f"projection:{name}")

    async def _alone(self, runner: ProjectionRunner) -> None:
        """A read model that failed in the group: its own runner, retried until it works."""
        await retry_forever(f"projection:{runner.projection.name}", runner.run, self.problems)
